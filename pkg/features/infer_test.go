package features

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
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
		{"TX_TIME_SECONDS", column(n, func(i int) string { return fmt.Sprint(i*37 + rng.IntN(30)) }), ID, ""},
		{"step", column(n, func(i int) string { return fmt.Sprint(i / 100) }), ID, ""},
		{"zip", column(n, func(int) string { return fmt.Sprint(10000 + rng.IntN(90)) }), Categorical, ""},
		{"ts_rfc3339", column(n, func(i int) string {
			return fmt.Sprintf("2024-03-%02dT%02d:%02d:00Z", 1+rng.IntN(28), rng.IntN(24), rng.IntN(60))
		}), Timestamp, "2006-01-02T15:04:05.999999999Z07:00"},
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
