package features

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// InferOptions tunes schema inference. Zero values select the defaults.
type InferOptions struct {
	// MaxSample is the number of rows examined; longer inputs are sampled
	// with an even stride that keeps their order. Default 100,000.
	MaxSample int
	// Ignore names fields to leave out whatever they look like (e.g. a label column).
	Ignore []string
}

var (
	// Label-like columns are left out: learning from them is not unsupervised.
	labelName = regexp.MustCompile(`(?i)^(label|labels|target|class|y|is_?fraud|fraud.*|.*_fraud.*|is_?flagged_?fraud|anomaly|is_?anomaly|outlier|attack|attack_?cat)$`)
	// Personal data identifies a person, not a behaviour: left out by default.
	piiName = regexp.MustCompile(`(?i)^(first|last|first_?name|last_?name|full_?name|name|surname|street|address|address\d|email|e_?mail|phone|phone_?number|ssn|dob|date_?of_?birth|birth_?date|passport|ip_?address)$`)
	// Identifier names: an id-like word as the whole name or as its last
	// separated part (card_id, CUSTOMER_ID, cc_num, account_number) or in
	// camel case (accountId). Entity words alone (card, merchant) and other
	// endings (card_type, mcc, entry_mode) are not enough: such columns are
	// judged by their values.
	idName      = regexp.MustCompile(`(?i)((^|[_\-. ])(id|ids|idx|uuid|guid|key|num|number|no|nr)$|^(index|orig_row|unnamed: ?\d+|cc_num|pan)$|uuid|guid)`)
	camelIDName = regexp.MustCompile(`[a-z0-9](Id|ID|Idx|Num|Number|No|Nr|Key)$`)
	// Postal and merchant category codes are codes, not quantities.
	zipName = regexp.MustCompile(`(?i)^(zip|zip_?code|postcode|postal_?code|post_?code|mcc|merchant_?category_?code)$`)
	// Names that suggest which id is the transaction and which the entity.
	txIDName   = regexp.MustCompile(`(?i)(trans|tx|txn|transaction).*(id|num|no)$|^(id|transaction_?id|trans_num)$`)
	keyName    = regexp.MustCompile(`(?i)(card|cc_num|customer|account|acct|user|client|name_?orig)`)
	nullTokens = []string{"na", "n/a", "nan", "null", "none", "-", "?", "nil"}
)

// IsNull reports whether a raw value means "missing".
func IsNull(v string) bool {
	if v == "" {
		return true
	}
	if len(v) > 6 {
		return false
	}
	// Every null token starts with one of these (after optional spaces).
	if c := v[0]; c != 'n' && c != 'N' && c != '-' && c != '?' && c != ' ' && c != '\t' {
		return false
	}
	v = strings.TrimSpace(v)
	for _, t := range nullTokens {
		if strings.EqualFold(v, t) { // no allocation, unlike ToLower
			return true
		}
	}
	return v == ""
}

// isIDName reports whether a column's name says it holds identifiers.
func isIDName(name string) bool { return idName.MatchString(name) || camelIDName.MatchString(name) }

type columnStats struct {
	nonEmpty int
	distinct map[string]int // counts per value; new values stop being added once capped
	capped   bool
	numeric  int // values that parse as finite floats
	integer  int // of those, integral
	maxAbs   float64
	times    int // values parsed by the candidate layout
	layout   string
	boolean  int
}

const distinctCap = 20000

// vocabLevels and vocabMinCount are the encoder's defaults (EncoderOptions):
// a categorical field keeps its 50 most frequent values seen at least twice,
// everything else is OTHER.
const (
	vocabLevels   = 50
	vocabMinCount = 2
	// minVocabShare is the share of a text column's values that the
	// encoder's vocabulary must cover for the column to be a category.
	// Below it the field is mostly OTHER, and the few rows that hit one of
	// its rare levels pay a large cross-entropy for it: the field becomes
	// the top reason of alerts without saying anything about behaviour
	// (card_id with 20,000 cards: 0.5-2% covered). The share is the mass of
	// the most frequent values, which converges as the sample grows instead
	// of shrinking with it like a distinct ratio does (19,877 distinct of
	// 100k rows is 20%, an "id" at 10k rows and a "category" at 100k). 10%
	// sits well between generated ids (merchant_id 3-5%) and real
	// categories with a long tail (Sparkov merchant 14%, city 18%, job 27%).
	minVocabShare = 0.10
)

// vocabShare is the share of non-empty values that the encoder's default
// vocabulary would cover.
func vocabShare(st *columnStats) float64 {
	if st.nonEmpty == 0 {
		return 0
	}
	counts := make([]int, 0, len(st.distinct))
	for _, n := range st.distinct {
		if n >= vocabMinCount {
			counts = append(counts, n)
		}
	}
	slices.Sort(counts)
	covered := 0
	for i := len(counts) - 1; i >= 0 && i >= len(counts)-vocabLevels; i-- {
		covered += counts[i]
	}
	return float64(covered) / float64(st.nonEmpty)
}

// InferSchema proposes a schema from a header and sample rows (rows may be
// ragged; missing cells count as empty). It never fails: every column gets a
// kind and a reason, which users review with `trainer schema`.
func InferSchema(names []string, rows [][]string, opt InferOptions) *Schema {
	if opt.MaxSample <= 0 {
		opt.MaxSample = 100000
	}
	stride := 1
	if len(rows) > opt.MaxSample {
		stride = (len(rows) + opt.MaxSample - 1) / opt.MaxSample
	}
	ignore := make(map[string]bool, len(opt.Ignore))
	for _, n := range opt.Ignore {
		ignore[strings.TrimSpace(n)] = true
	}
	stats := make([]columnStats, len(names))
	for i := range stats {
		stats[i] = columnStats{distinct: make(map[string]int)}
	}
	sampled := 0
	for r := 0; r < len(rows); r += stride {
		sampled++
		row := rows[r]
		for c := range names {
			if c >= len(row) || IsNull(row[c]) {
				continue
			}
			observe(&stats[c], strings.TrimSpace(row[c]))
		}
	}
	s := &Schema{Fields: make([]Field, len(names))}
	for c, name := range names {
		f := classify(name, &stats[c], sampled)
		if ignore[name] {
			f.Kind, f.Reason = Ignored, "ignored by request"
		}
		s.Fields[c] = f
	}
	markTimeCounters(s, rows, stride)
	assignRoles(s, stats)
	return s
}

func observe(st *columnStats, v string) {
	st.nonEmpty++
	if n, ok := st.distinct[v]; ok {
		st.distinct[v] = n + 1
	} else if !st.capped {
		st.distinct[v] = 1
		if len(st.distinct) > distinctCap {
			st.capped = true
		}
	}
	if x, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
		st.numeric++
		if x == math.Trunc(x) {
			st.integer++
		}
		st.maxAbs = math.Max(st.maxAbs, math.Abs(x))
	} else {
		switch strings.ToLower(v) {
		case "true", "false", "yes", "no", "t", "f", "y", "n":
			st.boolean++
		}
	}
	if st.numeric == 0 && st.times == st.nonEmpty-1 {
		// Timestamp candidates: every value so far parsed with one layout.
		if st.layout == "" {
			st.layout = detectLayout(v)
		}
		if st.layout != "" {
			if _, ok := parseClock(v, st.layout); ok {
				st.times++
			}
		}
	}
}

func classify(name string, st *columnStats, sampled int) Field {
	f := Field{Name: name}
	distinct := len(st.distinct)
	switch {
	case labelName.MatchString(name):
		f.Kind, f.Reason = Ignored, "looks like a label; learning from it would not be unsupervised"
	case st.nonEmpty == 0:
		f.Kind, f.Reason = Ignored, "always empty"
	case distinct == 1 && !st.capped:
		f.Kind, f.Reason = Ignored, "constant"
	case piiName.MatchString(name):
		f.Kind, f.Reason = Ignored, "personal data: identifies a person, not a behaviour"
	case st.numeric == st.nonEmpty:
		classifyNumeric(name, st, &f)
	case st.times == st.nonEmpty && st.layout != "":
		f.Kind, f.Layout, f.Reason = Timestamp, st.layout, "every value parses as a time"
		if st.layout == "2006-01-02" {
			f.Reason = "dates without a time of day: day of week only"
		}
	case st.numeric >= st.nonEmpty*95/100 && st.numeric > 0:
		classifyNumeric(name, st, &f)
		f.Reason += "; a few non-numeric values are read as missing"
	case st.boolean == st.nonEmpty:
		f.Kind, f.Reason = Categorical, "boolean"
	case distinct > vocabLevels && isIDName(name):
		f.Kind, f.Reason = ID, fmt.Sprintf("identifier name with more distinct values than a category keeps (%d)", vocabLevels)
	case distinct > vocabLevels && distinct*2 > st.nonEmpty:
		// Mostly distinct values: in a small sample the vocabulary share
		// cannot tell (too few repeats), the ratio can.
		f.Kind, f.Reason = ID, "high-cardinality text, mostly distinct values: an identifier, not a category"
	case distinct > vocabLevels && vocabShare(st) < minVocabShare:
		f.Kind, f.Reason = ID, fmt.Sprintf("high-cardinality text: the %d most frequent values cover only %.1f%% of the rows, an identifier, not a category", vocabLevels, 100*vocabShare(st))
	default:
		f.Kind, f.Reason = Categorical, "text with "+strconv.Itoa(distinct)+" distinct values"
		if st.capped {
			f.Reason = "text with many distinct values"
		}
	}
	_ = sampled
	return f
}

func classifyNumeric(name string, st *columnStats, f *Field) {
	distinct := len(st.distinct)
	integral := st.integer == st.numeric
	lname := strings.ToLower(name)
	switch {
	case zipName.MatchString(name):
		f.Kind, f.Reason = Categorical, "postal or category code"
	case integral && (strings.Contains(lname, "time") || strings.Contains(lname, "date") || lname == "ts" || strings.Contains(lname, "epoch")) && st.maxAbs >= 1e9 && st.maxAbs < 4e9:
		f.Kind, f.Layout, f.Reason = Timestamp, "unix", "integer Unix seconds"
	case integral && (strings.Contains(lname, "time") || lname == "ts" || strings.Contains(lname, "epoch")) && st.maxAbs >= 1e12 && st.maxAbs < 4e12:
		f.Kind, f.Layout, f.Reason = Timestamp, "unixms", "integer Unix milliseconds"
	case integral && st.maxAbs >= 1e11 && distinct > 50:
		f.Kind, f.Reason = ID, "long integer codes (card or account numbers)"
	case integral && isIDName(name) && distinct >= vocabLevels:
		f.Kind, f.Reason = ID, "identifier name with many integer values"
	default:
		f.Kind, f.Reason = Numeric, "numbers"
		if integral && distinct <= 2 {
			f.Reason = "0/1 flag"
		}
	}
}

// assignRoles names the transaction id, entity key and event time, by name
// and kind, when the schema has obvious candidates.
func assignRoles(s *Schema, stats []columnStats) {
	for i, f := range s.Fields {
		switch f.Kind {
		case ID:
			if s.IDField == "" && txIDName.MatchString(f.Name) {
				s.IDField = f.Name
			} else if s.KeyField == "" && keyName.MatchString(f.Name) {
				s.KeyField = f.Name
			}
		case Timestamp:
			if s.TimeField == "" && stats[i].layout != "2006-01-02" {
				s.TimeField = f.Name
			}
		}
	}
}

// Time counters. A column that moves with the event time (seconds or days
// since the start of the data, a global sequence number) takes values in
// training that scoring never sees again: learned as a number, every later
// record is out of range and the counter becomes the reason of every alert.
// Judging this by monotonicity in input order made the kind depend on the
// order (a time-sorted file against Kafka partitions interleaved) and
// dropped whatever column a file happened to be sorted by. Judging it
// against the event time depends only on the rows, not on their order.
const (
	// minCounterRows is the fewest rows with both a time and a value to judge on.
	minCounterRows = 20
	// minCounterOffMode is the fewest rows that differ from the most common
	// value: with fewer, a rare flag that happens to occur late would look
	// like a step counter (a day counter in a one-day window has two values,
	// each on many rows).
	minCounterOffMode = 5
	// minCounterGamma is the rank agreement with the event time
	// (Goodman-Kruskal gamma: 1 when the column never decreases as time
	// goes on, near 0 for a behaviour) from which a column is a time
	// counter; 0.98 tolerates a few late events.
	minCounterGamma = 0.98
)

// markTimeCounters turns numeric fields that move with the event time (the
// first timestamp with a time of day, the one assignRoles names) into ids.
// Without an event time nothing is marked: a counter cannot be told from a
// quantity by the order of the rows alone; name it as an id with --schema.
func markTimeCounters(s *Schema, rows [][]string, stride int) {
	ti := -1
	for i, f := range s.Fields {
		if f.Kind == Timestamp && f.Layout != "2006-01-02" {
			ti = i
			break
		}
	}
	if ti < 0 {
		return
	}
	layout := s.Fields[ti].Layout
	var times []float64 // per sampled row; NaN when absent
	for r := 0; r < len(rows); r += stride {
		t := math.NaN()
		if row := rows[r]; ti < len(row) && !IsNull(row[ti]) {
			if c, ok := parseClock(strings.TrimSpace(row[ti]), layout); ok {
				t = float64(c.unix)
			}
		}
		times = append(times, t)
	}
	var tv []timeValue
	for c := range s.Fields {
		f := &s.Fields[c]
		if f.Kind != Numeric {
			continue
		}
		tv = tv[:0]
		for i, r := 0, 0; r < len(rows); i, r = i+1, r+stride {
			row := rows[r]
			if math.IsNaN(times[i]) || c >= len(row) {
				continue
			}
			x, err := strconv.ParseFloat(strings.TrimSpace(row[c]), 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			tv = append(tv, timeValue{times[i], x})
		}
		if g, ok := timeGamma(tv); ok && math.Abs(g) >= minCounterGamma {
			f.Kind = ID
			f.Reason = fmt.Sprintf("moves with the event time %s (rank agreement %.3f): a time counter, out of range for every later record", s.Fields[ti].Name, g)
		}
	}
}

type timeValue struct{ t, v float64 }

// timeGamma returns the Goodman-Kruskal gamma of v against t, (C-D)/(C+D)
// over the pairs that differ in both (C concordant, D discordant), in
// O(n log n); ok is false when there is too little to judge. It sorts tv.
func timeGamma(tv []timeValue) (gamma float64, ok bool) {
	n := len(tv)
	if n < minCounterRows {
		return 0, false
	}
	slices.SortFunc(tv, func(a, b timeValue) int {
		if c := cmp.Compare(a.t, b.t); c != 0 {
			return c
		}
		return cmp.Compare(a.v, b.v)
	})
	// Pairs with equal times and different values count neither way.
	var tiedTime int64
	for i := 0; i < n; {
		j := i
		for j < n && tv[j].t == tv[i].t {
			j++
		}
		tiedTime += pairs(j - i)
		for k := i; k < j; {
			l := k
			for l < j && tv[l].v == tv[k].v {
				l++
			}
			tiedTime -= pairs(l - k)
			k = l
		}
		i = j
	}
	vs := make([]float64, n)
	for i := range tv {
		vs[i] = tv[i].v
	}
	// In time order (values ascending within a time), every inversion is a
	// discordant pair.
	discordant := inversions(vs, make([]float64, n))
	differ, mode := pairs(n), 0
	for i := 0; i < n; { // vs is sorted now
		j := i
		for j < n && vs[j] == vs[i] {
			j++
		}
		differ -= pairs(j - i)
		mode = max(mode, j-i)
		i = j
	}
	concordant := differ - tiedTime - discordant
	if n-mode < minCounterOffMode || concordant+discordant == 0 {
		return 0, false
	}
	return float64(concordant-discordant) / float64(concordant+discordant), true
}

func pairs(k int) int64 { return int64(k) * int64(k-1) / 2 }

// inversions sorts a (a merge sort, with buf of the same length as scratch)
// and returns the number of pairs i < j with a[i] > a[j].
func inversions(a, buf []float64) int64 {
	if len(a) < 2 {
		return 0
	}
	m := len(a) / 2
	inv := inversions(a[:m], buf[:m]) + inversions(a[m:], buf[m:])
	copy(buf, a)
	i, j, k := 0, m, 0
	for i < m && j < len(a) {
		if buf[j] < buf[i] {
			a[k] = buf[j]
			j++
			inv += int64(m - i)
		} else {
			a[k] = buf[i]
			i++
		}
		k++
	}
	k += copy(a[k:], buf[i:m])
	copy(a[k:], buf[j:])
	return inv
}
