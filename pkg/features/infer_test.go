package features

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/generator"
)

// column builds n values with gen.
func column(n int, gen func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = gen(i)
	}
	return out
}

func TestInferKinds(t *testing.T) {
	const n = 2000
	rng := rand.New(rand.NewPCG(1, 1))
	// Event times in random order; counters are judged against them, not
	// against the order of the rows.
	march := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	at := make([]time.Time, n)
	for i := range at {
		at[i] = march.Add(time.Duration(rng.IntN(28*24*60)) * time.Minute)
	}
	cases := []struct {
		name   string
		values []string
		kind   Kind
		layout string
	}{
		{"amount", column(n, func(int) string { return strconv.FormatFloat(math.Exp(rng.NormFloat64()*1.5+3), 'f', 2, 64) }), Numeric, ""},
		{"amount_str_with_gaps", column(n, func(i int) string {
			if i%10 == 0 {
				return ""
			}
			return fmt.Sprintf("%.2f", rng.Float64()*100)
		}), Numeric, ""},
		{"amount_na", column(n, func(i int) string {
			if i%50 == 0 {
				return "N/A"
			}
			return fmt.Sprint(rng.IntN(500))
		}), Numeric, ""},
		{"amount_mostly_numbers", column(n, func(i int) string {
			if i%40 == 0 {
				return "unknown"
			}
			return fmt.Sprint(rng.IntN(500))
		}), Numeric, ""},
		{"category", column(n, func(int) string { return []string{"grocery", "travel", "gas", "online"}[rng.IntN(4)] }), Categorical, ""},
		{"is_online", column(n, func(int) string { return []string{"true", "false"}[rng.IntN(2)] }), Categorical, ""},
		{"flag", column(n, func(int) string { return fmt.Sprint(rng.IntN(2)) }), Numeric, ""},
		{"cc_num", column(n, func(int) string { return fmt.Sprint(4000000000000000 + rng.Int64N(1e15)) }), ID, ""},
		{"CUSTOMER_ID", column(n, func(int) string { return fmt.Sprint(rng.IntN(5000)) }), ID, ""},
		{"trans_num", column(n, func(int) string { return fmt.Sprintf("%016x", rng.Uint64()) }), ID, ""},
		{"first", column(n, func(int) string { return []string{"Ann", "Bob", "Cy"}[rng.IntN(3)] }), Ignored, ""},
		{"dob", column(n, func(int) string { return fmt.Sprintf("19%02d-0%d-1%d", 40+rng.IntN(50), 1+rng.IntN(9), rng.IntN(9)) }), Ignored, ""},
		{"label", column(n, func(int) string { return fmt.Sprint(rng.IntN(2)) }), Ignored, ""},
		{"TX_FRAUD_SCENARIO", column(n, func(int) string { return fmt.Sprint(rng.IntN(4)) }), Ignored, ""},
		{"Class", column(n, func(int) string { return fmt.Sprint(rng.IntN(2)) }), Ignored, ""},
		{"constant", column(n, func(int) string { return "EUR" }), Ignored, ""},
		{"empty", column(n, func(int) string { return "" }), Ignored, ""},
		{"TX_TIME_SECONDS", column(n, func(i int) string { return fmt.Sprint(int(at[i].Sub(march).Seconds())) }), ID, ""},
		{"step", column(n, func(i int) string { return fmt.Sprint(int(at[i].Sub(march).Hours())) }), ID, ""},
		{"TX_TIME_DAYS", column(n, func(i int) string { return fmt.Sprint(int(at[i].Sub(march).Hours() / 24)) }), ID, ""},
		// Never decreases in input order, unrelated to the event time: a
		// quantity, which the old file-order rule dropped as a "counter".
		{"sorted_amount", column(n, func(i int) string { return fmt.Sprint(i*3 + rng.IntN(3)) }), Numeric, ""},
		{"zip", column(n, func(int) string { return fmt.Sprint(10000 + rng.IntN(90)) }), Categorical, ""},
		{"ts_rfc3339", column(n, func(i int) string { return at[i].Format(time.RFC3339) }), Timestamp, "2006-01-02T15:04:05.999999999Z07:00"},
		{"ts_space", column(n, func(i int) string {
			return fmt.Sprintf("2020-06-%02d %02d:%02d:%02d", 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60))
		}), Timestamp, "2006-01-02 15:04:05.999999999"},
		{"unix_time", column(n, func(i int) string { return fmt.Sprint(1371816865 + rng.IntN(1e7)) }), Timestamp, "unix"},
		{"event_time_ms", column(n, func(i int) string { return fmt.Sprint(int64(1700000000000) + rng.Int64N(1e9)) }), Timestamp, "unixms"},
	}
	names := make([]string, len(cases))
	rows := make([][]string, n)
	for i := range rows {
		rows[i] = make([]string, len(cases))
	}
	for c, tc := range cases {
		names[c] = tc.name
		for i, v := range tc.values {
			rows[i][c] = v
		}
	}
	s := InferSchema(names, rows, InferOptions{})
	for c, tc := range cases {
		f := s.Fields[c]
		if f.Kind != tc.kind || f.Layout != tc.layout {
			t.Errorf("%s: got %s %q (%s), want %s %q", tc.name, f.Kind, f.Layout, f.Reason, tc.kind, tc.layout)
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.IDField != "trans_num" || s.KeyField != "cc_num" || s.TimeField != "ts_rfc3339" {
		t.Errorf("roles: id %q key %q time %q", s.IDField, s.KeyField, s.TimeField)
	}
}

func TestInferIgnoreOption(t *testing.T) {
	s := InferSchema([]string{"a", "b"}, [][]string{{"1", "x"}, {"2", "y"}, {"3", "x"}}, InferOptions{Ignore: []string{"b"}})
	if s.Fields[1].Kind != Ignored {
		t.Fatalf("b is %s", s.Fields[1].Kind)
	}
}

// TestInferSparkov checks inference on the real Sparkov sample, whose
// columns mix ids, personal data, timestamps, codes and text.
func TestInferSparkov(t *testing.T) {
	f, err := os.Open("../../../shared/data/sparkov_sample.csv")
	if err != nil {
		t.Skip("shared data not present:", err)
	}
	defer f.Close()
	tab, bad, err := ReadTable(f, CSV)
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	s := InferSchema(tab.Names, tab.Rows, InferOptions{})
	want := map[string]Kind{
		"orig_row": ID, "trans_date_trans_time": Timestamp, "cc_num": ID, "merchant": Categorical,
		"category": Categorical, "amt": Numeric, "first": Ignored, "last": Ignored, "gender": Categorical,
		"street": Ignored, "city": Categorical, "state": Categorical, "zip": Categorical, "lat": Numeric,
		"long": Numeric, "city_pop": Numeric, "job": Categorical, "dob": Ignored, "trans_num": ID,
		"unix_time": Timestamp, "merch_lat": Numeric, "merch_long": Numeric, "label": Ignored,
	}
	for _, fl := range s.Fields {
		if w, ok := want[fl.Name]; !ok || w != fl.Kind {
			t.Errorf("%s: got %s (%s), want %s", fl.Name, fl.Kind, fl.Reason, w)
		}
	}
	enc, err := FitEncoder(s, tab.Rows, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ef := range enc.Fields {
		if ef.Name == "amt" && !ef.Log {
			t.Error("amt is heavy-tailed and should be log-scaled")
		}
	}
}

func TestSchemaRoundTripAndErrors(t *testing.T) {
	s := &Schema{Fields: []Field{{Name: "amt", Kind: Numeric}, {Name: "t", Kind: Timestamp, Layout: "unix"}, {Name: "id", Kind: ID}}, IDField: "id"}
	var b strings.Builder
	if err := s.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSchema(strings.NewReader(b.String()))
	if err != nil || len(got.Fields) != 3 || got.Fields[1].Layout != "unix" || got.IDField != "id" {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	for _, bad := range []string{
		`{"fields":[]}`,
		`{"fields":[{"name":"a","kind":"numberish"}]}`,
		`{"fields":[{"name":"a","kind":"id"}]}`,
		`{"fields":[{"name":"a","kind":"numeric"},{"name":"a","kind":"numeric"}]}`,
		`{"fields":[{"name":"t","kind":"timestamp"}]}`,
		`{"fields":[{"name":"a","kind":"numeric","transform":"sqrt"}]}`,
		`{"fields":[{"name":"a","kind":"numeric"}],"key_field":"card"}`,
		`{"fields":[{"name":"a","kind":"numeric"}],"extra":1}`,
		`not json`,
	} {
		if _, err := ReadSchema(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadSchema accepted %s", bad)
		}
	}
}

// sameSchema reports the first difference in kinds, layouts and roles.
func sameSchema(a, b *Schema) error {
	if len(a.Fields) != len(b.Fields) {
		return fmt.Errorf("%d fields against %d", len(a.Fields), len(b.Fields))
	}
	for i, f := range a.Fields {
		g := b.Fields[i]
		if f.Name != g.Name || f.Kind != g.Kind || f.Layout != g.Layout || f.Transform != g.Transform {
			return fmt.Errorf("%s: %s %q (%s) against %s %s %q (%s)", f.Name, f.Kind, f.Layout, f.Reason, g.Name, g.Kind, g.Layout, g.Reason)
		}
	}
	if a.IDField != b.IDField || a.KeyField != b.KeyField || a.TimeField != b.TimeField {
		return fmt.Errorf("roles %q %q %q against %q %q %q", a.IDField, a.KeyField, a.TimeField, b.IDField, b.KeyField, b.TimeField)
	}
	return nil
}

// TestInferStableAcrossWindowSizes: the generator's stream, decoded from its
// Kafka messages as the trainer does, gives one schema at 10k and at 200k
// rows. The old 50%-distinct rule made card_id (20,000 cards) an id at 10k
// rows and a learned category at 100k+, where it became the top reason of
// most alerts.
func TestInferStableAcrossWindowSizes(t *testing.T) {
	g := generator.New(generator.Config{Seed: 7})
	start := time.Date(2024, 5, 6, 9, 0, 0, 0, time.UTC)
	msgs := make([][]byte, 200000)
	for i := range msgs {
		tx, _ := g.Next(start.Add(time.Duration(i) * 500 * time.Microsecond)) // 2,000 tx/s
		msgs[i] = tx.JSON()
	}
	infer := func(n int) *Schema {
		tab, bad, err := DecodeMessages(msgs[:n], nil, MessageOptions{})
		if err != nil || len(bad) != 0 {
			t.Fatal(err, bad)
		}
		return InferSchema(tab.Names, tab.Rows, InferOptions{})
	}
	small, large := infer(10000), infer(200000)
	if err := sameSchema(small, large); err != nil {
		t.Errorf("10k rows against 200k rows: %v", err)
	}
	want := map[string]Kind{
		"tx_id": ID, "card_id": ID, "merchant_id": ID, "mcc": Categorical, "amount": Numeric, "currency": Ignored,
		"country": Categorical, "channel": Categorical, "device": Categorical, "entry_mode": Categorical, "event_time": Timestamp,
	}
	for _, s := range []*Schema{small, large} {
		for _, f := range s.Fields {
			if f.Kind != want[f.Name] {
				t.Errorf("%s: %s (%s), want %s", f.Name, f.Kind, f.Reason, want[f.Name])
			}
		}
		if s.IDField != "tx_id" || s.KeyField != "card_id" || s.TimeField != "event_time" {
			t.Errorf("roles: id %q key %q time %q", s.IDField, s.KeyField, s.TimeField)
		}
	}
}

// TestInferHandbookOrderIndependent: the handbook's rows in file (time)
// order, shuffled, and as a Kafka window reads them (partitioned by
// customer, one partition after another) give the same kinds, and its
// TX_TIME_SECONDS / TX_TIME_DAYS counters are never learned as numbers. The
// old rule dropped them only when they never decreased in input order; when
// partitions interleaved they were numeric and the reason of every alert.
func TestInferHandbookOrderIndependent(t *testing.T) {
	f, err := os.Open("../../../shared/data/fraud_handbook_2018-04.csv")
	if err != nil {
		t.Skip("shared data not present:", err)
	}
	defer f.Close()
	tab, bad, err := ReadTable(f, CSV)
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	opt := InferOptions{Ignore: []string{"TX_FRAUD_SCENARIO"}}
	ordered := InferSchema(tab.Names, tab.Rows, opt)

	shuffled := slices.Clone(tab.Rows)
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	cust := slices.Index(tab.Names, "CUSTOMER_ID")
	parts := make([][][]string, 6)
	for _, r := range tab.Rows {
		k, _ := strconv.Atoi(r[cust])
		parts[k%6] = append(parts[k%6], r)
	}
	partitioned := slices.Concat(parts...)

	for _, tc := range []struct {
		name string
		rows [][]string
	}{{"shuffled", shuffled}, {"partitioned", partitioned}} {
		s := InferSchema(tab.Names, tc.rows, opt)
		if err := sameSchema(ordered, s); err != nil {
			t.Errorf("file order against %s: %v", tc.name, err)
		}
	}
	want := map[string]Kind{
		"TRANSACTION_ID": ID, "TX_DATETIME": Timestamp, "CUSTOMER_ID": ID, "TERMINAL_ID": ID, "TX_AMOUNT": Numeric,
		"TX_TIME_SECONDS": ID, "TX_TIME_DAYS": ID, "TX_FRAUD_SCENARIO": Ignored, "label": Ignored,
	}
	for _, f := range ordered.Fields {
		if f.Kind != want[f.Name] {
			t.Errorf("%s: %s (%s), want %s", f.Name, f.Kind, f.Reason, want[f.Name])
		}
	}
}

// TestInferIDNames: identifier names make ids of columns with more values
// than a category keeps, whatever their distinct ratio; entity words without
// an id ending, small *_type columns and codes stay categories, and a
// quantity whose name merely ends in "id" stays a number.
func TestInferIDNames(t *testing.T) {
	const n = 20000
	rng := rand.New(rand.NewPCG(5, 5))
	cases := []struct {
		name string
		gen  func(i int) string
		kind Kind
	}{
		// 600 merchants over 20k rows: 3% distinct, the top 50 cover ~8-9%.
		{"merchant_id", func(int) string { return fmt.Sprintf("m-%04d", rng.IntN(600)) }, ID},
		// 200 terminals: the top 50 cover about a third, a category by values alone.
		{"TERMINAL_ID", func(int) string { return fmt.Sprintf("T%d", rng.IntN(200)) }, ID},
		{"accountId", func(int) string { return fmt.Sprintf("acc%d", rng.IntN(300)) }, ID},
		{"card_number", func(int) string { return fmt.Sprint(rng.IntN(5000)) }, ID},
		{"card_type", func(int) string { return []string{"debit", "credit", "prepaid"}[rng.IntN(3)] }, Categorical},
		{"merchant_type", func(int) string { return fmt.Sprintf("type%d", rng.IntN(12)) }, Categorical},
		{"terminal_id_small", func(int) string { return fmt.Sprintf("T%d", rng.IntN(20)) }, Categorical},
		{"store_id", func(int) string { return fmt.Sprintf("s%d", rng.IntN(30)) }, Categorical},
		{"mcc", func(int) string { return fmt.Sprint(5000 + rng.IntN(120)) }, Categorical},
		{"entry_mode", func(int) string { return []string{"chip", "contactless", "ecom", "magstripe"}[rng.IntN(4)] }, Categorical},
		{"amount_paid", func(int) string { return fmt.Sprint(rng.IntN(900)) }, Numeric},
		// No id name: a long-tailed category whose top 50 cover most rows.
		{"city", func(int) string { return fmt.Sprintf("city%d", int(math.Exp(rng.Float64()*7))) }, Categorical},
		// No id name: 5,000 device hashes, the top 50 cover ~1%.
		{"device_hash", func(int) string { return fmt.Sprintf("%08x", rng.IntN(5000)*2654435761%(1<<32)) }, ID},
	}
	names := make([]string, len(cases))
	rows := make([][]string, n)
	for i := range rows {
		rows[i] = make([]string, len(cases))
		for c, tc := range cases {
			names[c] = tc.name
			rows[i][c] = tc.gen(i)
		}
	}
	s := InferSchema(names, rows, InferOptions{})
	for c, tc := range cases {
		if f := s.Fields[c]; f.Kind != tc.kind {
			t.Errorf("%s: got %s (%s), want %s", tc.name, f.Kind, f.Reason, tc.kind)
		}
	}
}

func TestTimeGamma(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	build := func(n int, v func(i int, t float64) float64) []timeValue {
		tv := make([]timeValue, n)
		for i := range tv {
			tm := float64(rng.IntN(n / 2)) // ties in time
			tv[i] = timeValue{tm, v(i, tm)}
		}
		return tv
	}
	for _, tc := range []struct {
		name     string
		tv       []timeValue
		min, max float64
		ok       bool
	}{
		{"counter", build(1000, func(_ int, t float64) float64 { return t * 7 }), 1, 1, true},
		{"countdown", build(1000, func(_ int, t float64) float64 { return -t }), -1, -1, true},
		{"day step", build(1000, func(_ int, t float64) float64 { return math.Floor(t / 300) }), 1, 1, true},
		{"jittered", build(1000, func(_ int, t float64) float64 { return t + rng.Float64()*3 }), 0.98, 1, true},
		{"random", build(1000, func(int, float64) float64 { return rng.NormFloat64() }), -0.1, 0.1, true},
		{"rare late flag", build(1000, func(_ int, t float64) float64 { return map[bool]float64{true: 1}[t > 498] }), 0, 0, false},
		{"too few", build(10, func(_ int, t float64) float64 { return t }), 0, 0, false},
	} {
		g, ok := timeGamma(tc.tv)
		if ok != tc.ok || g < tc.min || g > tc.max {
			t.Errorf("%s: gamma %.4f ok %v, want [%g, %g] ok %v", tc.name, g, ok, tc.min, tc.max, tc.ok)
		}
	}
	a := []float64{3, 1, 2, 3, 0}
	if inv := inversions(a, make([]float64, len(a))); inv != 6 || !slices.IsSorted(a) {
		t.Errorf("inversions = %d (%v), want 6 and sorted", inv, a)
	}
}
