package model

import (
	"math"
	"strconv"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
)

// Reason is one field's share of a score.
type Reason struct {
	Field        int // index into the encoder's learned fields
	Name         string
	Contribution float32
	// Probability is, for a categorical field, the probability the model
	// gave the observed category (for an unseen value, the probability of
	// the values not seen in training together); -1 for other fields.
	Probability float32
	// Unseen: the observed categorical value was not in the training
	// vocabulary.
	Unseen bool
}

// Scorer runs records through the encoder and the network in batches of up
// to Cap slots. Fill slots with SetRow or SetJSON, then call Score. The hot
// path allocates nothing; Observed and Expected, which format strings, do.
// A Scorer is not safe for concurrent use: use one per goroutine.
type Scorer struct {
	b       *Bundle
	s       *ae.Scorer
	d       *ae.Data
	scores  []float32
	contrib []float32
	// Per slot: learned fields missing and invalid, and each field's state.
	missing []int32
	invalid []int32
	states  []FieldState
	rows    [][]string // slot inputs, aliasing the caller's data
	msgs    [][]byte
	dec     *features.RowDecoder
	jsonRow [][]string
	nc, cf  int
	nf      int
	// Remembered columns: their raw values are copied per slot when a slot
	// is set, so that Raw needs no second decode of a JSON message.
	keep  []int
	arena [][]byte
	spans [][]int32
	// Per learned field: its schema column and whether it is categorical
	// (for classify and reasons).
	fieldSrc []int32
	fieldCat []bool
	catField []int32 // the categorical fields' indexes
	// logitOff: each learned field's first output (a categorical field's
	// logits follow the numeric columns, in field order: ae's layout).
	logitOff []int32
}

// Remember makes SetJSON and SetRow keep the raw values of schema columns
// cols (ids, keys, event times) so that Raw returns them cheaply.
func (s *Scorer) Remember(cols ...int) {
	s.keep = s.keep[:0]
	for _, c := range cols {
		if c >= 0 && c < len(s.b.Encoder.Schema.Fields) {
			s.keep = append(s.keep, c)
		}
	}
	s.arena = make([][]byte, len(s.scores))
	s.spans = make([][]int32, len(s.scores))
}

func (s *Scorer) remember(i int, row []string) {
	if len(s.keep) == 0 {
		return
	}
	a := s.arena[i][:0]
	sp := s.spans[i][:0]
	for _, c := range s.keep {
		var v string
		if c < len(row) {
			v = row[c]
		}
		sp = append(sp, int32(c), int32(len(a)))
		a = append(a, v...)
		sp = append(sp, int32(len(a)))
	}
	s.arena[i], s.spans[i] = a, sp
}

// NewScorer returns a scorer with batch slots.
func (b *Bundle) NewScorer(batch int) *Scorer {
	batch = max(batch, 1)
	nc, cf, nf := b.Encoder.Width()
	names := b.Encoder.Schema.Names()
	s := &Scorer{
		b: b, s: ae.NewScorer(b.Model, batch), d: ae.NewData(b.Model, batch),
		scores: make([]float32, batch), contrib: make([]float32, batch*nf), missing: make([]int32, batch), invalid: make([]int32, batch), states: make([]FieldState, batch*nf),
		rows: make([][]string, batch), msgs: make([][]byte, batch),
		dec: features.NewRowDecoder(names), jsonRow: make([][]string, batch),
		nc: nc, cf: cf, nf: nf,
	}
	for i := range s.jsonRow {
		s.jsonRow[i] = make([]string, len(names))
	}
	off := b.Encoder.NumCols
	for f := range b.Encoder.Fields {
		ef := &b.Encoder.Fields[f]
		s.fieldSrc = append(s.fieldSrc, int32(ef.Source))
		s.fieldCat = append(s.fieldCat, ef.Kind == features.Categorical)
		s.logitOff = append(s.logitOff, int32(off))
		if ef.Kind == features.Categorical {
			off += len(ef.Levels)
			s.catField = append(s.catField, int32(f))
		}
	}
	return s
}

// Bundle returns the scorer's model bundle.
func (s *Scorer) Bundle() *Bundle { return s.b }

// Cap is the number of slots.
func (s *Scorer) Cap() int { return len(s.scores) }

// SetRow encodes a record (values in schema order) into slot i. The row
// must stay unchanged until the slot is reused if Observed is called. It
// returns the number of learned fields whose values were invalid (see
// FieldState; numeric and timestamp ones are encoded as missing).
func (s *Scorer) SetRow(i int, row []string) int {
	return s.setRow(i, row, nil)
}

// setRow encodes row into slot i; dec, when set, has just decoded row
// and gives the numbers it valued (Encoder.EncodeDecoded).
func (s *Scorer) setRow(i int, row []string, dec *features.RowDecoder) int {
	s.rows[i], s.msgs[i] = row, nil
	s.remember(i, row)
	num, cat, miss := s.d.Num[i*s.nc:(i+1)*s.nc], s.d.Cat[i*s.cf:(i+1)*s.cf], s.d.Miss[i*s.nf:(i+1)*s.nf]
	if dec != nil {
		s.b.Encoder.EncodeDecoded(dec, row, num, cat, miss)
	} else {
		s.b.Encoder.Encode(row, num, cat, miss)
	}
	s.classify(i, row)
	return int(s.invalid[i])
}

// SetJSON decodes a JSON object (a Kafka message value) and encodes it into
// slot i. msg must stay unchanged until the slot is reused if Observed is
// called. A malformed message returns an error and leaves the slot unusable.
// SetMaxKeys makes SetJSON refuse a record with more than n top-level keys
// (n <= 0: no limit, the default).
func (s *Scorer) SetMaxKeys(n int) { s.dec.MaxKeys = max(n, 0) }

func (s *Scorer) SetJSON(i int, msg []byte) (invalid int, err error) {
	row := s.jsonRow[i]
	if err := s.dec.Decode(msg, row); err != nil {
		return 0, err
	}
	s.setRow(i, row, s.dec)
	// Decoded strings may live in the decoder's scratch: keep the message
	// and decode again on demand instead.
	s.rows[i], s.msgs[i] = nil, msg
	return int(s.invalid[i]), nil
}

// Score scores slots [0, n) and returns their scores (valid until the next call).
func (s *Scorer) Score(n int) []float32 {
	s.s.Score(s.d, 0, n, s.scores[:n], s.contrib[:n*s.nf])
	return s.scores[:n]
}

// Invalid returns the number of invalid learned fields in slot i.
func (s *Scorer) Invalid(i int) int { return int(s.invalid[i]) }

// Contributions returns slot i's per-field shares of its score.
func (s *Scorer) Contributions(i int) []float32 { return s.contrib[i*s.nf : (i+1)*s.nf] }

// Reasons writes slot i's k largest contributions into dst[:0], largest
// first, leaving out fields that are no reason: a categorical field whose
// observed category is the model's most likely one (its contribution is
// the model's ordinary uncertainty, "channel=pos (expected pos)"), and
// fields that contribute nothing. Numeric and timestamp fields are kept:
// their error is a distance from the reconstruction (Expected describes
// the field masked instead, which can differ). It allocates nothing.
func (s *Scorer) Reasons(i, k int, dst []Reason) []Reason {
	dst = dst[:0]
	if k <= 0 {
		return dst
	}
	c := s.Contributions(i)
	// The k largest positive contributions, in the order largest first,
	// the earlier field first among equals, so that only those, and the
	// fields reason passes over, are described: describing every field
	// that was briefly among the k largest took a tenth of a message.
	// One pass keeps the k+1 largest, at most 8 (one field reason passes
	// over is common: a categorical at its expected value); should reason
	// pass over more, or k be 8 or more, the rest are taken one at a time
	// after the last.
	//
	// Each field is a key that orders as (contribution, earlier field)
	// does: a positive float's bits order as its value, and the field's
	// complement breaks ties. The keys pass through a sorted top list by
	// min and max, which compile to conditional moves: with branches the
	// random order of contributions mispredicted about one field in four.
	var top [8]uint64 // descending; 0: empty
	m := min(k+1, len(top))
	if m <= 4 {
		// k up to 3 (the scorers' default), in registers: the array's
		// stores and loads lengthened each field's chain of comparisons
		// (168 to 99 ns a record, BenchmarkReasons). The four largest hold
		// the m largest.
		var t0, t1, t2, t3 uint64
		for f, v := range c {
			var key uint64
			if v > 0 {
				key = topKey(v, f)
			}
			t0, key = max(t0, key), min(t0, key)
			t1, key = max(t1, key), min(t1, key)
			t2, key = max(t2, key), min(t2, key)
			t3 = max(t3, key)
		}
		top[0], top[1], top[2], top[3] = t0, t1, t2, t3
	} else {
		for f, v := range c {
			var key uint64
			if v > 0 { // not zero, negative or NaN
				key = topKey(v, f)
			}
			for p := range top[:m] {
				top[p], key = max(top[p], key), min(top[p], key)
			}
		}
	}
	n := 0
	for n < m && top[n] != 0 {
		f, v := fromKey(top[n])
		if r, ok := s.reason(i, f, v); ok {
			dst = append(dst, r)
			if len(dst) == k {
				return dst
			}
		}
		n++
	}
	if n < m {
		return dst // no positive contribution is left
	}
	lastF, lastV := fromKey(top[n-1])
	for len(dst) < k {
		best, bv := -1, float32(0)
		for f, v := range c {
			if v > bv && (v < lastV || v == lastV && f > lastF) {
				best, bv = f, v
			}
		}
		if best < 0 {
			break
		}
		lastF, lastV = best, bv
		if r, ok := s.reason(i, best, bv); ok {
			dst = append(dst, r)
		}
	}
	return dst
}

// topKey orders positive contributions by value, then earlier field first.
func topKey(v float32, f int) uint64 {
	return uint64(math.Float32bits(v))<<32 | uint64(^uint32(f))
}

// fromKey is topKey's field and contribution.
func fromKey(key uint64) (int, float32) {
	return int(^uint32(key)), math.Float32frombits(uint32(key >> 32))
}

// Expected returns what the model expected of field f in slot i, in
// original units: for a numeric field a value within the range seen in
// training, and for a timestamp a weekday and time, each reconstructed with
// the field itself masked (ae.Scorer.ExpectedMasked), so that it is what the
// rest of the record leads the model to expect, not the network's
// extrapolation of a value far outside training (a 700 amount read back
// as 0); for a categorical field the reconstruction's most likely
// category (empty when the model expects the field to be missing,
// UnseenValue when it expects a value outside the training vocabulary).
// A numeric or timestamp field costs one row through the network: the
// pipeline describes only its alerts; scorer score describes every row.
func (s *Scorer) Expected(i, f int) string {
	ef := &s.b.Encoder.Fields[f]
	var num []float32
	var level int
	if ef.Kind == features.Categorical {
		num, level = s.s.Expected(i, f)
	} else {
		num, level = s.s.ExpectedMasked(s.d, i, f)
	}
	switch ef.Kind {
	case features.Categorical:
		switch level {
		case features.LevelMissing:
			// The network may prefer MISSING for an optional field; say so plainly.
			return ""
		case features.LevelOther:
			return UnseenValue
		}
	case features.Numeric:
		return strconv.FormatFloat(ef.InRange(ef.Unscale(float64(num[0]))), 'g', 6, 64)
	}
	return s.b.Encoder.Decode(f, num, level)
}

// Observed returns learned field f's raw value in slot i.
func (s *Scorer) Observed(i, f int) string {
	return s.Raw(i, s.b.Encoder.Fields[f].Source)
}

// Raw returns the raw value of schema column col in slot i.
func (s *Scorer) Raw(i, col int) string {
	if col < 0 || col >= len(s.b.Encoder.Schema.Fields) {
		return ""
	}
	if s.spans != nil {
		sp := s.spans[i]
		for k := 0; k+2 < len(sp); k += 3 {
			if int(sp[k]) == col {
				return string(s.arena[i][sp[k+1]:sp[k+2]])
			}
		}
	}
	if s.msgs[i] != nil {
		row := make([]string, len(s.b.Encoder.Schema.Fields))
		if s.dec.Decode(s.msgs[i], row) != nil {
			return ""
		}
		return strings.Clone(row[col])
	}
	if col < len(s.rows[i]) {
		return s.rows[i][col]
	}
	return ""
}

// Embed writes the bottleneck vectors of slots [0, n) into dst (n × Bottleneck).
func (s *Scorer) Embed(n int, dst []float32) {
	s.s.Embed(s.d, 0, n, dst)
}

// Impute fills the missing learned fields of slots [0, n) and returns, per
// slot, the field values in schema order with filled fields replaced, and
// which schema fields were filled. Timestamps are not imputed: an hour and
// weekday do not make a date.
func (s *Scorer) Impute(n, iters int) (rows [][]string, filled [][]bool) {
	s.s.Impute(s.d, 0, n, iters)
	enc := s.b.Encoder
	rows = make([][]string, n)
	filled = make([][]bool, n)
	for i := range n {
		var src []string
		if s.msgs[i] != nil {
			src = make([]string, len(enc.Schema.Fields))
			s.dec.Decode(s.msgs[i], src)
			for j := range src {
				src[j] = strings.Clone(src[j])
			}
		} else {
			src = append([]string(nil), s.rows[i]...)
		}
		out := make([]string, len(enc.Schema.Fields))
		copy(out, src)
		fl := make([]bool, len(enc.Schema.Fields))
		for f, ef := range enc.Fields {
			if !s.d.Miss[i*s.nf+f] || ef.Kind == features.Timestamp {
				continue
			}
			if ef.Kind == features.Categorical {
				out[ef.Source] = enc.Decode(f, nil, int(s.d.Cat[i*s.cf+ef.CatIdx]))
			} else {
				// Within the range seen in training, as Expected: an
				// imputed amount is never negative.
				out[ef.Source] = strconv.FormatFloat(ef.InRange(ef.Unscale(float64(s.d.Num[i*s.nc+ef.NumOff]))), 'g', 6, 64)
			}
			fl[ef.Source] = true
		}
		rows[i], filled[i] = out, fl
	}
	return rows, filled
}
