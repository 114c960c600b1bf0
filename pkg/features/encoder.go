package features

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Categorical level indexes shared by every categorical field.
const (
	LevelMissing = 0 // the value was empty or null
	LevelOther   = 1 // a value outside the fitted vocabulary
)

// Columns per timestamp field: sin/cos of hour of day, sin/cos of day of week.
const timestampWidth = 4

// EncoderOptions tunes encoder fitting. Zero values select the defaults.
type EncoderOptions struct {
	// MaxLevels caps a categorical vocabulary (most frequent first). Default 50.
	MaxLevels int
	// MinCount is the number of occurrences a level needs to enter the
	// vocabulary. Default 2: a value seen once is OTHER.
	MinCount int
}

// EncodedField is the fitted state of one learned field.
type EncodedField struct {
	Name   string `json:"name"`
	Kind   Kind   `json:"kind"`
	Source int    `json:"source"` // index in the schema's fields
	Layout string `json:"layout,omitempty"`
	// Numeric: v' = (T(v) - Center) / Scale, T = sign(v)·log1p(|v|) when Log.
	Log    bool    `json:"log,omitempty"`
	Center float64 `json:"center,omitempty"`
	Scale  float64 `json:"scale,omitempty"`
	// Numeric: the smallest and largest value seen in training (original
	// units), when HasRange; bundles fitted before it was recorded lack it.
	HasRange bool    `json:"has_range,omitempty"`
	Min      float64 `json:"min,omitempty"`
	Max      float64 `json:"max,omitempty"`
	// Timestamp: the training data did not cover the hour-of-day or the
	// day-of-week cycle (fewer than MinHours distinct hours, fewer than 7
	// weekdays), so that part is encoded as a constant and not learned:
	// a day-long window makes every weekday after it look new, and a
	// minute-long one every later hour.
	NoHour    bool `json:"no_hour,omitempty"`
	NoWeekday bool `json:"no_weekday,omitempty"`
	// Categorical: Levels[0] is MISSING, Levels[1] is OTHER.
	Levels []string `json:"levels,omitempty"`
	// NumOff/NumWidth locate a numeric or timestamp field's columns; CatIdx a
	// categorical field's slot.
	NumOff   int `json:"num_off"`
	NumWidth int `json:"num_width"`
	CatIdx   int `json:"cat_idx"`

	index levelTable
}

// Encoder turns raw records into the dense form the autoencoder learns:
// NumCols scaled numbers, CatFields vocabulary indexes and a missing flag
// per learned field. It is safe for concurrent use once fitted.
type Encoder struct {
	Schema    Schema         `json:"schema"`
	Fields    []EncodedField `json:"fields"`
	NumCols   int            `json:"num_cols"`
	CatFields int            `json:"cat_fields"`

	plan []encStep // Fields as Encode reads them, built with the lookups
}

// encStep is what Encode needs of a field, a quarter of EncodedField's
// size, kinds as bytes rather than strings, and 1/Scale to multiply by.
type encStep struct {
	kind                   uint8
	log, noHour, noWeekday bool
	src, off               int32 // source column; NumOff, or CatIdx for a categorical
	center, inv            float64
	layout                 string
	index                  *levelTable
}

const (
	stepNumeric uint8 = iota
	stepTimestamp
	stepCategorical
)

// FitEncoder fits scalers and vocabularies on rows (schema order).
func FitEncoder(s *Schema, rows [][]string, opt EncoderOptions) (*Encoder, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("features: no rows to fit the encoder on")
	}
	if opt.MaxLevels <= 0 {
		opt.MaxLevels = 50
	}
	if opt.MinCount <= 0 {
		opt.MinCount = 2
	}
	e := &Encoder{Schema: *s}
	e.Schema.Fields = slices.Clone(s.Fields)
	for i, f := range s.Fields {
		if !f.Kind.Learned() {
			continue
		}
		ef := EncodedField{Name: f.Name, Kind: f.Kind, Source: i, Layout: f.Layout}
		switch f.Kind {
		case Numeric:
			fitNumeric(&ef, f.Transform, rows, i)
			ef.NumOff, ef.NumWidth = e.NumCols, 1
			e.NumCols++
		case Timestamp:
			fitTimestamp(&ef, rows, i)
			ef.NumOff, ef.NumWidth = e.NumCols, timestampWidth
			e.NumCols += timestampWidth
		case Categorical:
			fitCategorical(&ef, rows, i, opt)
			ef.CatIdx = e.CatFields
			e.CatFields++
		}
		e.Fields = append(e.Fields, ef)
	}
	e.buildIndex()
	return e, nil
}

func fitNumeric(ef *EncodedField, transform string, rows [][]string, col int) {
	vals := make([]float64, 0, len(rows))
	for _, r := range rows {
		if col < len(r) {
			if v, ok := parseNumber(r[col]); ok {
				vals = append(vals, v)
			}
		}
	}
	if len(vals) == 0 {
		ef.Scale = 1
		return
	}
	slices.Sort(vals)
	ef.HasRange, ef.Min, ef.Max = true, vals[0], vals[len(vals)-1]
	switch transform {
	case TransformLog:
		ef.Log = vals[0] >= 0
	case TransformAuto:
		ef.Log = vals[0] >= 0 && heavyTailed(vals)
	}
	if ef.Log {
		for i, v := range vals {
			vals[i] = signedLog1p(v)
		}
	}
	ef.Center = quantile(vals, 0.5)
	ef.Scale = (quantile(vals, 0.75) - quantile(vals, 0.25)) / 1.349
	if !(ef.Scale > 1e-9) {
		// Mostly-constant columns (flags): fall back to the standard deviation.
		var m, ss float64
		for _, v := range vals {
			m += v
		}
		m /= float64(len(vals))
		for _, v := range vals {
			ss += (v - m) * (v - m)
		}
		ef.Scale = math.Sqrt(ss / float64(len(vals)))
	}
	if !(ef.Scale > 1e-9) {
		ef.Scale = 1
	}
}

// MinHours is the number of distinct hours of the day a timestamp field
// must show in training for its hour of day to be learned.
const MinHours = 20

// fitTimestamp learns a cycle only when the training rows cover it: at
// least MinHours distinct hours of the day, all seven weekdays.
func fitTimestamp(ef *EncodedField, rows [][]string, col int) {
	var hours [24]bool
	var days [7]bool
	for _, r := range rows {
		if col >= len(r) || IsNull(r[col]) {
			continue
		}
		c, ok := parseClock(strings.TrimSpace(r[col]), ef.Layout)
		if !ok {
			continue
		}
		hours[min(max(int(c.hour), 0), 23)] = true
		days[c.weekday%7] = true
	}
	nh, nd := 0, 0
	for _, h := range hours {
		if h {
			nh++
		}
	}
	for _, d := range days {
		if d {
			nd++
		}
	}
	ef.NoHour, ef.NoWeekday = nh < MinHours, nd < 7
}

// heavyTailed reports a right tail far longer than the body: amounts, counts.
func heavyTailed(sorted []float64) bool {
	q50, q99 := quantile(sorted, 0.5), quantile(sorted, 0.99)
	q25, q75 := quantile(sorted, 0.25), quantile(sorted, 0.75)
	iqr := q75 - q25
	if iqr <= 0 {
		return q99 > 0 && q50 >= 0 && q99 > 10*math.Max(q50, 1e-9)
	}
	return (q99-q50)/iqr > 4
}

// quantile of sorted values, linear interpolation.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo]*(1-frac) + sorted[lo+1]*frac
}

func fitCategorical(ef *EncodedField, rows [][]string, col int, opt EncoderOptions) {
	counts := make(map[string]int)
	for _, r := range rows {
		if col < len(r) && !IsNull(r[col]) {
			counts[strings.TrimSpace(r[col])]++
		}
	}
	type lc struct {
		level string
		n     int
	}
	levels := make([]lc, 0, len(counts))
	for l, n := range counts {
		if n >= opt.MinCount {
			levels = append(levels, lc{l, n})
		}
	}
	slices.SortFunc(levels, func(a, b lc) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.level, b.level)
	})
	if len(levels) > opt.MaxLevels {
		levels = levels[:opt.MaxLevels]
	}
	ef.Levels = []string{"<MISSING>", "<OTHER>"}
	for _, l := range levels {
		ef.Levels = append(ef.Levels, l.level)
	}
}

func (e *Encoder) buildIndex() {
	e.plan = make([]encStep, len(e.Fields))
	for i := range e.Fields {
		f := &e.Fields[i]
		p := &e.plan[i]
		p.src, p.off, p.log, p.layout = int32(f.Source), int32(f.NumOff), f.Log, f.Layout
		switch f.Kind {
		case Numeric:
			p.kind, p.center, p.inv = stepNumeric, f.Center, 1/f.Scale
		case Timestamp:
			p.kind, p.noHour, p.noWeekday = stepTimestamp, f.NoHour, f.NoWeekday
		case Categorical:
			f.index = newLevelTable(f.Levels)
			p.kind, p.off, p.index = stepCategorical, int32(f.CatIdx), &f.index
		}
	}
}

// Check validates a decoded encoder (from a model bundle) and rebuilds its lookups.
func (e *Encoder) Check() error {
	if err := e.Schema.Validate(); err != nil {
		return err
	}
	num, cat := 0, 0
	for i, f := range e.Fields {
		if f.Source < 0 || f.Source >= len(e.Schema.Fields) || e.Schema.Fields[f.Source].Name != f.Name || e.Schema.Fields[f.Source].Kind != f.Kind {
			return fmt.Errorf("features: encoder field %d (%q) does not match the schema", i, f.Name)
		}
		switch f.Kind {
		case Numeric, Timestamp:
			want := 1
			if f.Kind == Timestamp {
				want = timestampWidth
			}
			if f.NumOff != num || f.NumWidth != want {
				return fmt.Errorf("features: encoder field %q has a bad column layout", f.Name)
			}
			if (f.Kind == Numeric && (!(f.Scale > 0) || math.IsInf(1/f.Scale, 0))) || math.IsNaN(f.Center) || math.IsInf(f.Center, 0) || math.IsInf(f.Scale, 0) {
				return fmt.Errorf("features: encoder field %q has a bad scaler", f.Name)
			}
			if f.HasRange && !(f.Min <= f.Max && !math.IsInf(f.Min, 0) && !math.IsInf(f.Max, 0)) {
				return fmt.Errorf("features: encoder field %q has a bad training range [%v, %v]", f.Name, f.Min, f.Max)
			}
			num += want
		case Categorical:
			if f.CatIdx != cat || len(f.Levels) < 2 {
				return fmt.Errorf("features: encoder field %q has a bad vocabulary", f.Name)
			}
			cat++
		default:
			return fmt.Errorf("features: encoder field %q has kind %q", f.Name, f.Kind)
		}
	}
	if num != e.NumCols || cat != e.CatFields || len(e.Fields) == 0 {
		return errors.New("features: encoder column counts do not match its fields")
	}
	e.buildIndex()
	return nil
}

// Width returns the sizes of the dense form: numeric columns, categorical
// fields and learned fields.
func (e *Encoder) Width() (numCols, catFields, fields int) {
	return e.NumCols, e.CatFields, len(e.Fields)
}

// Encode writes one record (values in schema order; a short row means
// missing trailing fields) into num (NumCols), cat (CatFields) and miss
// (one per learned field). It allocates nothing. It returns the number of
// non-empty values that could not be parsed; those are encoded as missing.
// The encoder must come from FitEncoder or have passed Check (which
// builds its lookups); Encode panics otherwise rather than encode nothing.
func (e *Encoder) Encode(row []string, num []float32, cat []int32, miss []bool) (invalid int) {
	return e.encode(row, nil, num, cat, miss)
}

// EncodeDecoded is Encode for a row that dec has just decoded: numbers dec
// computed while it read them are taken from it, not parsed again (the
// same values, bit for bit).
func (e *Encoder) EncodeDecoded(dec *RowDecoder, row []string, num []float32, cat []int32, miss []bool) (invalid int) {
	if len(dec.numOK) != len(row) {
		panic("features: EncodeDecoded: the row is not dec's")
	}
	return e.encode(row, dec, num, cat, miss)
}

func (e *Encoder) encode(row []string, dec *RowDecoder, num []float32, cat []int32, miss []bool) (invalid int) {
	if len(e.plan) != len(e.Fields) {
		panic("features: Encode on an encoder that was neither fitted nor checked (call Check after decoding one)")
	}
	for i := range e.plan {
		f := &e.plan[i]
		var v string
		if int(f.src) < len(row) {
			v = row[f.src]
		}
		// Parse first: IsNull is only needed when a value does not parse.
		switch f.kind {
		case stepNumeric:
			var x float64
			var ok bool
			if dec != nil && int(f.src) < len(row) && dec.numOK[f.src] {
				x, ok = dec.nums[f.src], true
			} else if x, ok = parseDecimal(v); !ok { // the usual case, without parseNumber's call
				x, ok = parseNumber(v)
			}
			if !ok {
				if !IsNull(v) {
					invalid++
				}
				num[f.off] = 0
				miss[i] = true
				continue
			}
			if f.log {
				x = signedLog1p(x)
			}
			num[f.off] = float32(clampScaled((x - f.center) * f.inv))
			miss[i] = false
		case stepTimestamp:
			c, ok := clock{}, false
			if v != "" {
				c, ok = parseClock(v, f.layout)
				if !ok {
					c, ok = parseClock(strings.TrimSpace(v), f.layout)
				}
			}
			cols := num[f.off : f.off+timestampWidth]
			if !ok {
				if !IsNull(v) {
					invalid++
				}
				clear(cols)
				miss[i] = true
				continue
			}
			hs, hc := hourSinCos(c.hour)
			ds, dc := weekdaySinCos(c.weekday)
			if f.noHour {
				hs, hc = 0, 0
			}
			if f.noWeekday {
				ds, dc = 0, 0
			}
			cols[0], cols[1], cols[2], cols[3] = float32(hs), float32(hc), float32(ds), float32(dc)
			miss[i] = false
		case stepCategorical:
			l, ok := f.index.lookup(v)
			if !ok {
				if IsNull(v) {
					cat[f.off] = LevelMissing
					miss[i] = true
					continue
				}
				l, ok = f.index.lookup(strings.TrimSpace(v))
			}
			if !ok {
				l = LevelOther
			}
			cat[f.off] = l
			miss[i] = false
		}
	}
	return invalid
}

// weekdayCycle holds sin and cos of 2π·d/7 for the seven weekdays, computed
// as Encode did per record (the same bits; a Sincos call was 1% of it).
var weekdayCycle = func() (t [7][2]float64) {
	for d := range t {
		t[d][0], t[d][1] = math.Sincos(2 * math.Pi * float64(d) / 7)
	}
	return t
}()

// hourCycle holds the sin and cos of each quarter hour's angle on the
// day's circle, and of 24:00.
var hourCycle = func() (t [97][2]float64) {
	for q := range t {
		t[q][0], t[q][1] = math.Sincos(2 * math.Pi * float64(q) / 96)
	}
	return t
}()

// hourSinCos is math.Sincos(2π·hour/24) to within a few float64 ulps (the
// encoder keeps float32s of it) for hour in [0, 24]: the quarter hour's
// sin and cos from a table, turned by the rest of the angle (under π/48)
// through its Taylor series. math.Sincos branches on the angle's octant,
// which a message's random hour mispredicts.
func hourSinCos(hour float64) (sin, cos float64) {
	if !(hour >= 0 && hour <= 24) {
		return math.Sincos(2 * math.Pi * hour / 24)
	}
	q := int(hour * 4)
	d := (hour - float64(q)*0.25) * (math.Pi / 12)
	d2 := d * d
	sd := d * (1 - d2*(1.0/6)*(1-d2*(1.0/20)*(1-d2*(1.0/42))))
	cd := 1 - d2*0.5*(1-d2*(1.0/12)*(1-d2*(1.0/30)*(1-d2*(1.0/56))))
	s, c := hourCycle[q][0], hourCycle[q][1]
	return s*cd + c*sd, c*cd - s*sd
}

func weekdaySinCos(d int) (sin, cos float64) {
	if uint(d) < 7 {
		return weekdayCycle[d][0], weekdayCycle[d][1]
	}
	return math.Sincos(2 * math.Pi * float64(d) / 7)
}

func clampScaled(x float64) float64 {
	const lim = 1e6 // keeps float32 finite; real scores saturate long before
	if x > lim {
		return lim
	}
	if x < -lim {
		return -lim
	}
	return x
}

func parseNumber(v string) (float64, bool) {
	if v == "" {
		return 0, false
	}
	if x, ok := parseDecimal(v); ok {
		return x, true
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t := strings.TrimSpace(v)
		switch strings.ToLower(t) {
		case "true", "yes", "t", "y":
			return 1, true
		case "false", "no", "f", "n":
			return 0, true
		}
		if x, err = strconv.ParseFloat(t, 64); err != nil {
			return 0, false
		}
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

// Decode turns a field's reconstruction back into original units: the
// numeric value, the most likely category, or an hour and weekday.
// num holds the field's NumWidth predicted columns; level is the predicted
// categorical level.
func (e *Encoder) Decode(field int, num []float32, level int) string {
	f := &e.Fields[field]
	switch f.Kind {
	case Numeric:
		return strconv.FormatFloat(f.Unscale(float64(num[0])), 'g', 6, 64)
	case Timestamp:
		h := math.Atan2(float64(num[0]), float64(num[1])) / (2 * math.Pi) * 24
		if h < 0 {
			h += 24
		}
		d := math.Atan2(float64(num[2]), float64(num[3])) / (2 * math.Pi) * 7
		if d < 0 {
			d += 7
		}
		days := [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
		mins := int(math.Round(h*60)) % (24 * 60)
		switch {
		case f.NoHour && f.NoWeekday:
			return ""
		case f.NoHour:
			return days[int(math.Round(d))%7]
		case f.NoWeekday:
			return fmt.Sprintf("%02d:%02d", mins/60, mins%60)
		}
		return fmt.Sprintf("%s %02d:%02d", days[int(math.Round(d))%7], mins/60, mins%60)
	case Categorical:
		if level >= 0 && level < len(f.Levels) {
			return f.Levels[level]
		}
	}
	return ""
}

// Unscale maps a scaled numeric value back to original units.
func (f *EncodedField) Unscale(x float64) float64 {
	v := x*f.Scale + f.Center
	if f.Log {
		v = math.Copysign(math.Expm1(math.Abs(v)), v)
	}
	return v
}

// InRange clamps a numeric value in original units to the range seen in
// training, so that a reconstruction is never described as a value the
// field never took (a negative amount). Without a recorded range, a
// log-scaled field (non-negative in training) is clamped at zero.
func (f *EncodedField) InRange(v float64) float64 {
	switch {
	case f.HasRange:
		return min(max(v, f.Min), f.Max)
	case f.Log:
		return max(v, 0)
	}
	return v
}

// signedLog1p is log1p for non-negative values, mirrored for negative ones:
// a log-scaled field was non-negative in training, so a negative value at
// scoring time must land far from the data, not be clamped into it.
func signedLog1p(x float64) float64 {
	return math.Copysign(math.Log1p(math.Abs(x)), x)
}
