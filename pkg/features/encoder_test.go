package features

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testEncoder(t testing.TB) *Encoder {
	s := &Schema{Fields: []Field{
		{Name: "id", Kind: ID},
		{Name: "amount", Kind: Numeric},
		{Name: "merchant", Kind: Categorical},
		{Name: "ts", Kind: Timestamp, Layout: time.RFC3339},
		{Name: "note", Kind: Ignored},
	}}
	var rows [][]string
	for i := range 1000 {
		m := []string{"m1", "m1", "m1", "m2", "m3"}[i%5]
		if i == 7 {
			m = "rare" // seen once: below MinCount
		}
		ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format(time.RFC3339) // 41 days
		rows = append(rows, []string{fmt.Sprint(i), fmt.Sprintf("%.2f", math.Exp(float64(i%100)/20)), m, ts, "x"})
	}
	e, err := FitEncoder(s, rows, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEncode(t *testing.T) {
	e := testEncoder(t)
	nc, cf, nf := e.Width()
	if nc != 5 || cf != 1 || nf != 3 {
		t.Fatalf("width %d %d %d", nc, cf, nf)
	}
	num := make([]float32, nc)
	cat := make([]int32, cf)
	miss := make([]bool, nf)
	cases := []struct {
		row      []string
		invalid  int
		miss     []bool
		level    int32
		checkNum func([]float32) error
	}{
		{[]string{"1", "12.5", "m1", "2024-01-06T06:00:00+00:00", "x"}, 0, []bool{false, false, false}, 2, func(n []float32) error {
			// 06:00 → sin(π/2)=1, cos=0; Saturday → weekday 6.
			if math.Abs(float64(n[1])-1) > 1e-6 || math.Abs(float64(n[2])) > 1e-6 {
				return fmt.Errorf("hour columns %v", n[1:3])
			}
			ds, dc := math.Sincos(2 * math.Pi * 6 / 7)
			if math.Abs(float64(n[3])-ds) > 1e-6 || math.Abs(float64(n[4])-dc) > 1e-6 {
				return fmt.Errorf("weekday columns %v", n[3:5])
			}
			return nil
		}},
		{[]string{"1", "", "", "", ""}, 0, []bool{true, true, true}, LevelMissing, nil},
		{[]string{"1", "NaN", "null", "not a time"}, 1, []bool{true, true, true}, LevelMissing, nil},
		{[]string{"1", "abc", "never-seen", "2024-01-01T10:00:00Z"}, 1, []bool{true, false, false}, LevelOther, nil},
		{[]string{"1", "3", "rare"}, 0, []bool{false, false, true}, LevelOther, nil},
		{[]string{"1"}, 0, []bool{true, true, true}, LevelMissing, nil}, // short row
		{[]string{"1", " 7 ", " m2 ", "2024-01-01T10:00:00Z"}, 0, []bool{false, false, false}, 3, nil},
	}
	for i, tc := range cases {
		inv := e.Encode(tc.row, num, cat, miss)
		if inv != tc.invalid {
			t.Errorf("case %d: invalid %d, want %d", i, inv, tc.invalid)
		}
		for f := range miss {
			if miss[f] != tc.miss[f] {
				t.Errorf("case %d: missing flags %v, want %v", i, miss, tc.miss)
				break
			}
		}
		if cat[0] != tc.level {
			t.Errorf("case %d: level %d, want %d", i, cat[0], tc.level)
		}
		if tc.checkNum != nil {
			if err := tc.checkNum(num); err != nil {
				t.Errorf("case %d: %v", i, err)
			}
		}
		for _, v := range num {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Errorf("case %d: non-finite encoding %v", i, num)
			}
		}
	}
}

func TestEncodeDecodeNumeric(t *testing.T) {
	e := testEncoder(t)
	num := make([]float32, 5)
	e.Encode([]string{"1", "42.5", "m1", "2024-01-01T10:00:00Z"}, num, make([]int32, 1), make([]bool, 3))
	if got := e.Decode(0, num[0:1], -1); got != "42.5" {
		t.Fatalf("decoded %q, want 42.5", got)
	}
	if got := e.Decode(1, nil, 3); got != "m2" {
		t.Fatalf("decoded level 3 as %q", got)
	}
	if got := e.Decode(2, num[1:5], -1); got != "Mon 10:00" {
		t.Fatalf("decoded time as %q", got)
	}
}

func TestEncodeAllocatesNothing(t *testing.T) {
	e := testEncoder(t)
	num, cat, miss := make([]float32, 5), make([]int32, 1), make([]bool, 3)
	row := []string{"1", "12.5", "m2", "2024-01-06T06:00:00Z", "x"}
	if a := testing.AllocsPerRun(1000, func() { e.Encode(row, num, cat, miss) }); a != 0 {
		t.Fatalf("%v allocations per record", a)
	}
}

func TestParseClock(t *testing.T) {
	cases := []struct {
		v, layout string
		hour      float64
		wd        int
		unix      int64
	}{
		{"2020-06-21 12:14:25", "2006-01-02 15:04:05", 12 + 14.0/60 + 25.0/3600, 0, 1592741665},
		{"2024-02-29T23:30:00Z", time.RFC3339, 23.5, 4, 1709249400},
		{"2024-02-29T23:30:00+02:00", time.RFC3339, 23.5, 4, 1709249400 - 7200},
		{"2024-02-29T23:30:00.250-05:00", time.RFC3339Nano, 23.5 + 0.25/3600, 4, 1709249400 + 5*3600},
		{"1371816865", "unix", 12 + 14.0/60 + 25.0/3600, 5, 1371816865},
		{"1371816865000", "unixms", 12 + 14.0/60 + 25.0/3600, 5, 1371816865},
		{"06/21/2020 12:14", "01/02/2006 15:04", 12 + 14.0/60, 0, 1592741640},
		{"1969-12-31", "2006-01-02", 0, 3, -86400},
	}
	for _, tc := range cases {
		c, ok := parseClock(tc.v, tc.layout)
		if !ok || math.Abs(c.hour-tc.hour) > 1e-9 || c.weekday != tc.wd || c.unix != tc.unix {
			t.Errorf("%s: got %+v ok=%v", tc.v, c, ok)
		}
		if tc.layout != "unix" && tc.layout != "unixms" {
			ref, _ := time.Parse(tc.layout, tc.v)
			if ref.Unix() != c.unix || int(ref.Weekday()) != c.weekday {
				t.Errorf("%s: disagrees with time.Parse (%v)", tc.v, ref)
			}
		}
	}
	for _, bad := range []string{"2024-13-01", "2024-01-01X10", "2024-01-01 25:00:00", "yesterday", "2024-01-01T10:00:00+0x:00",
		"2018-02-31", "2018-04-31", "2019-02-29", "2024-01-01T10:00:00+99:99", "2024-01-01T10:00:60Z"} {
		if _, ok := parseClock(bad, time.RFC3339); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	for _, bad := range []string{"Inf", "-Inf", "infinity", "NaN", "1e300"} {
		for _, l := range []string{"unix", "unixms"} {
			if _, ok := parseClock(bad, l); ok {
				t.Errorf("parsed %q as %s", bad, l)
			}
		}
	}
	if _, ok := parseClock("2020-02-29 10:00:00", "2006-01-02 15:04:05"); !ok {
		t.Error("rejected a leap day")
	}
}

func TestEncoderCheck(t *testing.T) {
	e := testEncoder(t)
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
	bad := *e
	bad.Fields = append([]EncodedField(nil), e.Fields...)
	bad.Fields[0].Scale = 0
	if err := bad.Check(); err == nil {
		t.Error("accepted a zero scale")
	}
	bad.Fields[0].Scale = 1e-310 // its inverse, which Encode multiplies by, is +Inf
	if err := bad.Check(); err == nil {
		t.Error("accepted a scale too small to invert")
	}
	bad.Fields[0].Scale = 1
	bad.Fields[0].Source = 99
	if err := bad.Check(); err == nil {
		t.Error("accepted a field pointing outside the schema")
	}
	bad.Fields[0].Source = e.Fields[0].Source
	for i, f := range bad.Fields {
		if f.Kind == Numeric {
			bad.Fields[i].HasRange, bad.Fields[i].Min, bad.Fields[i].Max = true, 10, 1
			if err := bad.Check(); err == nil {
				t.Error("accepted a training range whose min exceeds its max")
			}
			break
		}
	}
}

// TestParseDecimalMatchesStrconv: the fast path must agree with strconv
// bit for bit wherever it answers.
func TestParseDecimalMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	cases := []string{"0", "-0", "1", "12.50", "-3.14159", "+7", "123456789012345", "0.000001", ".5", "5.", "1e5", "abc", "1.2.3", "-", ".", "1234567890123456", "9007199254740993"}
	for range 20000 {
		d := rng.IntN(15) + 1
		v := strconv.FormatUint(rng.Uint64N(uint64(math.Pow10(d))), 10)
		if p := rng.IntN(len(v) + 1); p < len(v) {
			v = v[:p] + "." + v[p:]
		}
		if rng.IntN(2) == 0 {
			v = "-" + v
		}
		cases = append(cases, v)
	}
	for _, c := range cases {
		got, ok := parseDecimal(c)
		want, err := strconv.ParseFloat(c, 64)
		if ok && (err != nil || math.Float64bits(got) != math.Float64bits(want)) {
			t.Fatalf("%q: fast path %v, strconv %v (%v)", c, got, want, err)
		}
		if !ok && err == nil && len(c) < 16 && !strings.ContainsAny(c, "eE") && c != "." {
			t.Errorf("%q: fast path declined a plain decimal", c)
		}
	}
}

// TestNegativeAmountIsFarFromData: amounts are log-scaled because they were
// non-negative in training; a negative one must not be clamped onto zero.
func TestNegativeAmountIsFarFromData(t *testing.T) {
	s := &Schema{Fields: []Field{{Name: "amount", Kind: Numeric, Transform: TransformLog}}}
	var rows [][]string
	for i := range 500 {
		rows = append(rows, []string{fmt.Sprintf("%.2f", math.Exp(float64(i%100)/20))})
	}
	e, err := FitEncoder(s, rows, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	num, miss := make([]float32, 1), make([]bool, 1)
	enc := func(v string) float32 {
		e.Encode([]string{v}, num, nil, miss)
		return num[0]
	}
	if !e.Fields[0].Log {
		t.Fatal("amount should be log-scaled")
	}
	zero, neg, big := enc("0"), enc("-5000"), enc("-1e6")
	if !(neg < zero-3) || !(big < neg) {
		t.Fatalf("scaled 0 → %v, -5000 → %v, -1e6 → %v", zero, neg, big)
	}
	if got := e.Decode(0, []float32{neg}, -1); got != "-5000" {
		t.Fatalf("decoded %q", got)
	}
}

// TestTimestampCyclesNeedCoverage: the hour of day is learned only from
// training rows that cover most hours, the weekday only from rows that
// cover all seven days; an unlearned part encodes as a constant, so a new
// day (or hour) does not make every transaction look strange, and the
// reconstruction is described without it.
func TestTimestampCyclesNeedCoverage(t *testing.T) {
	s := &Schema{Fields: []Field{{Name: "ts", Kind: Timestamp, Layout: time.RFC3339}}}
	fit := func(span, step time.Duration) EncodedField {
		var rows [][]string
		start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		for at := start; at.Sub(start) < span; at = at.Add(step) {
			rows = append(rows, []string{at.Format(time.RFC3339)})
		}
		e, err := FitEncoder(s, rows, EncoderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return e.Fields[0]
	}
	for _, tc := range []struct {
		span, step        time.Duration
		noHour, noWeekday bool
	}{
		{5 * time.Minute, time.Second, true, true},
		{24 * time.Hour, time.Minute, false, true},
		{19 * time.Hour, time.Minute, true, true},
		{7 * 24 * time.Hour, time.Hour, false, false},
		{6 * 24 * time.Hour, time.Hour, false, true},
	} {
		f := fit(tc.span, tc.step)
		if f.NoHour != tc.noHour || f.NoWeekday != tc.noWeekday {
			t.Errorf("trained on %v: NoHour %v NoWeekday %v, want %v %v", tc.span, f.NoHour, f.NoWeekday, tc.noHour, tc.noWeekday)
		}
	}
	// One day of training: the weekday columns are constant, the hour's are not.
	var rows [][]string
	for h := range 24 {
		rows = append(rows, []string{time.Date(2024, 1, 1, h, 30, 0, 0, time.UTC).Format(time.RFC3339)})
	}
	e, err := FitEncoder(s, rows, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	num, miss := make([]float32, 4), make([]bool, 1)
	e.Encode([]string{"2024-01-03T06:00:00Z"}, num, nil, miss) // a Wednesday, unseen
	if num[2] != 0 || num[3] != 0 || math.Abs(float64(num[1])) > 1e-6 || math.Abs(float64(num[0])-1) > 1e-6 {
		t.Errorf("06:00 on an unseen weekday encodes as %v, want [1 ~0 0 0]", num)
	}
	if got := e.Decode(0, []float32{1, 0, 0.5, 0.5}, -1); got != "06:00" {
		t.Errorf("decoded %q, want 06:00 without a weekday", got)
	}
	// The flags travel with the encoder.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back Encoder
	if err := json.Unmarshal(b, &back); err != nil || !back.Fields[0].NoWeekday || back.Fields[0].NoHour {
		t.Fatalf("round trip: %v %+v", err, back.Fields)
	}
}

// FuzzParseDecimal: on any input the fast path accepts, it returns exactly
// strconv.ParseFloat's bits; and it accepts every plain decimal of at most
// 15 digits, so the fast path is not silently bypassed.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "-0", "+7", "12.50", ".5", "5.", "-.", "1.2.3", "123456789012345", "1234567890123456", "0.000000000000001", "9.99999999999999", "1e5", " 1", "1_0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // parseNumber answers the empty string before the fast path
		}
		got, ok := parseDecimal(s)
		want, err := strconv.ParseFloat(s, 64)
		if ok && (err != nil || math.Float64bits(got) != math.Float64bits(want)) {
			t.Fatalf("%q: fast path %v, strconv %v (%v)", s, got, want, err)
		}
		if !ok && plainDecimal(s) {
			t.Fatalf("%q: fast path declined a plain decimal", s)
		}
	})
}

// plainDecimal: an optional sign, then 1-15 digits with at most one dot.
func plainDecimal(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] >= '0' && s[i] <= '9':
			digits++
		case s[i] == '.':
			dots++
		default:
			return false
		}
	}
	return digits >= 1 && digits <= 15 && dots <= 1
}

// TestParseDecimalRandomDecimals compares the fast path with strconv on a
// million random decimals of every length and dot position it accepts,
// with signs, leading and trailing zeros.
func TestParseDecimalRandomDecimals(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	buf := make([]byte, 0, 20)
	for range 1_000_000 {
		buf = buf[:0]
		switch rng.IntN(3) {
		case 0:
			buf = append(buf, '-')
		case 1:
			buf = append(buf, '+')
		}
		n := rng.IntN(15) + 1
		dot := rng.IntN(n + 2) // n+1: no dot
		for j := range n {
			if j == dot {
				buf = append(buf, '.')
			}
			buf = append(buf, byte('0'+rng.IntN(10)))
		}
		if dot == n {
			buf = append(buf, '.')
		}
		s := string(buf)
		got, ok := parseDecimal(s)
		want, err := strconv.ParseFloat(s, 64)
		if !ok || err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q: fast path %v (ok %v), strconv %v (%v)", s, got, ok, want, err)
		}
	}
}

// BenchmarkParseDecimal: the amounts and 3-decimal values the card records carry.
func BenchmarkParseDecimal(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	vals := make([]string, 1024)
	for i := range vals {
		vals[i] = strconv.FormatFloat(math.Round(rng.NormFloat64()*3000)/1000, 'f', -1, 64)
	}
	var sum float64
	for i := 0; b.Loop(); i++ {
		x, _ := parseDecimal(vals[i&1023])
		sum += x
	}
	_ = sum
}

// TestEncodeMatchesFieldByField: Encode writes, for every numeric field,
// the bits of parseNumber, then the log, then (x-Center)/Scale, and counts
// the invalid values, whatever order it does the work in (a version that
// parsed a record's numbers before dividing any was measured; see the
// README's Speed section). Rows mix plain decimals, exponents, booleans,
// padded and null values and text, over 69 numeric fields.
func TestEncodeMatchesFieldByField(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	s := &Schema{}
	for i := range 69 {
		f := Field{Name: fmt.Sprintf("n%d", i), Kind: Numeric}
		if len(s.Fields)%3 == 0 {
			f.Transform = TransformLog
		}
		s.Fields = append(s.Fields, f)
		if i%9 == 0 {
			s.Fields = append(s.Fields, Field{Name: fmt.Sprintf("c%d", i), Kind: Categorical})
		}
	}
	value := func(col int) string {
		switch rng.IntN(12) {
		case 0:
			return ""
		case 1:
			return []string{"null", "N/A", "abc", "true", "no", " 7 ", "1e3", "2.5E-3", "NaN", "+Inf", "0x1p3", "1234567890123456789"}[rng.IntN(12)]
		case 2:
			return strconv.FormatFloat(math.Abs(rng.NormFloat64())*1e6, 'g', -1, 64)
		case 3:
			return fmt.Sprintf("c%d", rng.IntN(4))
		}
		v := math.Round(rng.NormFloat64()*math.Pow(10, float64(rng.IntN(6))-2)*1000) / 1000
		if col%3 == 0 {
			v = math.Abs(v) * 100 // non-negative: log-scaled in training
		} else if rng.IntN(50) == 0 {
			return "-" + strconv.FormatFloat(math.Abs(v), 'f', -1, 64) // and negative zero
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	rows := make([][]string, 2000)
	for r := range rows {
		rows[r] = make([]string, len(s.Fields)-rng.IntN(3)) // some short rows
		for c := range rows[r] {
			rows[r][c] = value(c)
		}
	}
	e, err := FitEncoder(s, rows, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := 0
	for _, f := range e.Fields {
		if f.Log {
			logs++
		}
	}
	if logs == 0 {
		t.Fatal("no log-scaled field: the test covers less than it says")
	}
	nc, cf, nf := e.Width()
	num, cat, miss := make([]float32, nc), make([]int32, cf), make([]bool, nf)
	for r, row := range rows {
		inv := e.Encode(row, num, cat, miss)
		wantInv := 0
		for fi, f := range e.Fields {
			if f.Kind != Numeric {
				continue
			}
			var v string
			if f.Source < len(row) {
				v = row[f.Source]
			}
			x, ok := parseNumber(v)
			if !ok {
				if !IsNull(v) {
					wantInv++
				}
				if !miss[fi] || num[f.NumOff] != 0 {
					t.Fatalf("row %d field %s %q: encoded %v (missing %v), want missing", r, f.Name, v, num[f.NumOff], miss[fi])
				}
				continue
			}
			if f.Log {
				x = signedLog1p(x)
			}
			want := float32(clampScaled((x - f.Center) / f.Scale))
			if miss[fi] || math.Float32bits(num[f.NumOff]) != math.Float32bits(want) {
				t.Fatalf("row %d field %s %q: encoded %v (missing %v), want %v", r, f.Name, v, num[f.NumOff], miss[fi], want)
			}
		}
		if inv != wantInv {
			t.Fatalf("row %d: %d invalid, want %d", r, inv, wantInv)
		}
	}
}

// TestDecodedEncoderNeedsCheck: an encoder decoded from JSON encodes only
// after Check has built its lookups (before, Encode refuses rather than
// write nothing), and then exactly as the fitted one does.
func TestDecodedEncoderNeedsCheck(t *testing.T) {
	e := testEncoder(t)
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var d Encoder
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	row := []string{"x", "-12.5", "m2", "2024-03-09T14:30:00Z", ""}
	num, cat, miss := make([]float32, e.NumCols), make([]int32, e.CatFields), make([]bool, len(e.Fields))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("an unchecked decoded encoder encoded a row")
			}
		}()
		d.Encode(row, num, cat, miss)
	}()
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	num2, cat2, miss2 := make([]float32, e.NumCols), make([]int32, e.CatFields), make([]bool, len(e.Fields))
	e.Encode(row, num, cat, miss)
	d.Encode(row, num2, cat2, miss2)
	if fmt.Sprint(num, cat, miss) != fmt.Sprint(num2, cat2, miss2) {
		t.Fatalf("decoded %v %v %v, fitted %v %v %v", num2, cat2, miss2, num, cat, miss)
	}
	if num[0] == 0 || cat[0] < 2 {
		t.Fatalf("the row encoded as nothing: %v %v", num, cat)
	}
}

// TestParseTimeKeepsMilliseconds: event times keep their milliseconds on
// every path (ISO, other layouts through time.Parse, unix seconds and
// milliseconds), so transactions within one second are ordered by time;
// finer digits are dropped, as entity states keep milliseconds.
func TestParseTimeKeepsMilliseconds(t *testing.T) {
	base := time.Date(2026, 11, 1, 10, 0, 5, 0, time.UTC)
	for _, tc := range []struct {
		in, layout string
		want       time.Time
	}{
		{"2026-11-01T10:00:05.123456Z", time.RFC3339Nano, base.Add(123 * time.Millisecond)},
		{"2026-11-01 10:00:05.7", "2006-01-02 15:04:05.999999999", base.Add(700 * time.Millisecond)},
		{"2026-11-01T11:00:05.042+01:00", time.RFC3339Nano, base.Add(42 * time.Millisecond)},
		{"2026-11-01 10:00:05", "2006-01-02 15:04:05", base},
		{"11/01/2026 10:00:05.25", "01/02/2006 15:04:05", base.Add(250 * time.Millisecond)},
		{strconv.FormatInt(base.UnixMilli()+999, 10), "unixms", base.Add(999 * time.Millisecond)},
		{strconv.FormatInt(base.UnixMilli()+1, 10), "unixms", base.Add(time.Millisecond)},
		{fmt.Sprintf("%d.5", base.Unix()), "unix", base.Add(500 * time.Millisecond)},
		{"-0.25", "unix", time.UnixMilli(-250).UTC()},
		{fmt.Sprintf("%d.1236", base.Unix()), "unix", base.Add(123 * time.Millisecond)},
		{"2026-11-01T10:00:05.1236Z", time.RFC3339Nano, base.Add(123 * time.Millisecond)},
		{fmt.Sprintf("%d.123", base.Unix()), "unix", base.Add(123 * time.Millisecond)},
	} {
		got, ok := ParseTime(tc.in, tc.layout)
		if !ok || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q, %q) = %v %v, want %v", tc.in, tc.layout, got, ok, tc.want)
		}
	}
	// The hour of a time before 1970 with a fraction is that of the day it
	// falls in, not a negative one.
	if c, ok := parseClock("-0.25", "unix"); !ok || c.hour < 23.99 || c.weekday != 3 {
		t.Errorf("-0.25 s: hour %v weekday %d", c.hour, c.weekday)
	}
}

// TestHourSinCos: the table-and-series hour angle agrees with math.Sincos
// to within 2e-15 over the day (quarter-hour edges, 24:00, random
// times), and the float32s the encoder keeps are the same or, where the
// float64s straddle a float32 rounding edge, one float32 ulp apart (near
// zero, where both carry the angle's own rounding, within 1e-15).
func TestHourSinCos(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	hours := []float64{0, 0.25, 5.999999999, 6, 11.75, 12, 17.99999, 23.75, 23.999999, 24}
	for range 200000 {
		hours = append(hours, rng.Float64()*24)
	}
	same := 0
	for _, h := range hours {
		s, c := hourSinCos(h)
		ws, wc := math.Sincos(2 * math.Pi * h / 24)
		if math.Abs(s-ws) > 2e-15 || math.Abs(c-wc) > 2e-15 { // math.Sincos carries the rounding of 2π·hour/24, up to 4.4e-16
			t.Fatalf("hour %v: (%v, %v), math.Sincos (%v, %v)", h, s, c, ws, wc)
		}
		for _, p := range [][2]float64{{s, ws}, {c, wc}} {
			a, b := float32(p[0]), float32(p[1])
			if a == b {
				same++
			} else if math.Nextafter32(a, b) != b && math.Abs(float64(a-b)) > 1e-15 {
				t.Fatalf("hour %v: float32 %v, math.Sincos's %v", h, a, b)
			}
		}
	}
	if same < 2*len(hours)*9999/10000 {
		t.Errorf("only %d of %d float32s equal math.Sincos's", same, 2*len(hours))
	}
	// Outside the day (a caller's bug, not a timestamp) it is math.Sincos.
	for _, h := range []float64{-1, 25, math.NaN(), math.Inf(1)} {
		s, c := hourSinCos(h)
		ws, wc := math.Sincos(2 * math.Pi * h / 24)
		if !(s == ws || math.IsNaN(s) && math.IsNaN(ws)) || !(c == wc || math.IsNaN(c) && math.IsNaN(wc)) {
			t.Errorf("hour %v: (%v, %v), math.Sincos (%v, %v)", h, s, c, ws, wc)
		}
	}
}
