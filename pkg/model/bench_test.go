package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
)

// benchSchema is a 30-field card transaction: ids, 21 numeric fields, 6
// categorical fields and a timestamp (27 learned fields, 30 in all).
func benchSchema() *features.Schema {
	s := &features.Schema{IDField: "tx_id", KeyField: "card_id", TimeField: "event_time"}
	s.Fields = append(s.Fields,
		features.Field{Name: "tx_id", Kind: features.ID},
		features.Field{Name: "card_id", Kind: features.ID},
		features.Field{Name: "event_time", Kind: features.Timestamp, Layout: "2006-01-02T15:04:05Z07:00"},
	)
	for i := range 21 {
		s.Fields = append(s.Fields, features.Field{Name: fmt.Sprintf("n%02d", i), Kind: features.Numeric})
	}
	for _, c := range benchCats {
		s.Fields = append(s.Fields, features.Field{Name: c.name, Kind: features.Categorical})
	}
	return s
}

var benchCats = []struct {
	name   string
	levels int
}{{"currency", 5}, {"mcc", 40}, {"country", 30}, {"channel", 4}, {"device", 8}, {"entry_mode", 6}}

func benchRecord(rng *rand.Rand, i int) map[string]any {
	r := map[string]any{
		"tx_id":      fmt.Sprintf("tx-%09d", i),
		"card_id":    fmt.Sprintf("card-%06d", rng.IntN(100000)),
		"event_time": fmt.Sprintf("2026-11-%02dT%02d:%02d:%02dZ", 1+rng.IntN(27), rng.IntN(24), rng.IntN(60), rng.IntN(60)),
	}
	base := rng.NormFloat64()
	for j := range 21 {
		v := base*float64(j%3) + rng.NormFloat64()
		if j == 0 {
			v = math.Round(math.Exp(3+v)*100) / 100 // an amount
		}
		r[fmt.Sprintf("n%02d", j)] = math.Round(v*1000) / 1000
	}
	for _, c := range benchCats {
		r[c.name] = fmt.Sprintf("%s_%d", c.name, rng.IntN(c.levels))
	}
	return r
}

// benchBundle fits a default-architecture model on synthetic data; weights
// do not change the cost of scoring.
func benchBundle(b testing.TB) (*Bundle, [][]string, [][]byte) {
	s := benchSchema()
	rng := rand.New(rand.NewPCG(1, 1))
	names := s.Names()
	var rows [][]string
	var msgs [][]byte
	for i := range 4096 {
		rec := benchRecord(rng, i)
		row := make([]string, len(names))
		for j, n := range names {
			row[j] = fmt.Sprint(rec[n])
		}
		rows = append(rows, row)
		m, _ := json.Marshal(rec)
		msgs = append(msgs, m)
	}
	bd, err := Fit(s, rows, FitOptions{AE: ae.Config{Seed: 1, Epochs: 1}})
	if err != nil {
		b.Fatal(err)
	}
	return bd, rows, msgs
}

// BenchmarkEncodeScoreBatch: encode + score in batches of 1024, per record.
func BenchmarkEncodeScoreBatch(b *testing.B) {
	bd, rows, _ := benchBundle(b)
	const batch = 1024
	sc := bd.NewScorer(batch)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for i := range batch {
			sc.SetRow(i, rows[(n+i)%len(rows)])
		}
		sc.Score(batch)
		n += batch
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
}

// BenchmarkEncodeScoreBatchNumeric30: the same for a record of 30 numeric
// fields given as strings, the shape the PyTorch peer is timed on.
func BenchmarkEncodeScoreBatchNumeric30(b *testing.B) {
	s := &features.Schema{}
	for i := range 30 {
		s.Fields = append(s.Fields, features.Field{Name: fmt.Sprintf("n%02d", i), Kind: features.Numeric})
	}
	rng := rand.New(rand.NewPCG(3, 3))
	rows := make([][]string, 4096)
	for r := range rows {
		base := rng.NormFloat64()
		rows[r] = make([]string, 30)
		for j := range 30 {
			rows[r][j] = strconv.FormatFloat(math.Round((base*float64(j%3)+rng.NormFloat64())*1000)/1000, 'f', -1, 64)
		}
	}
	bd, err := Fit(s, rows, FitOptions{AE: ae.Config{Seed: 1, Epochs: 1}})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1024
	sc := bd.NewScorer(batch)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for i := range batch {
			sc.SetRow(i, rows[(n+i)%len(rows)])
		}
		sc.Score(batch)
		n += batch
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkJSONOneAtATime: one Kafka message value at a time, JSON bytes to
// a score with its top three reasons: decode + encode + score, no batching.
func BenchmarkJSONOneAtATime(b *testing.B) {
	bd, _, msgs := benchBundle(b)
	sc := bd.NewScorer(1)
	reasons := make([]Reason, 0, 3)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := sc.SetJSON(0, msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		sc.Score(1)
		reasons = sc.Reasons(0, 3, reasons)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkReasons: the top 3 reasons of one scored record of the mixed
// card record (BenchmarkJSONOneAtATime's last step), per record.
func BenchmarkReasons(b *testing.B) {
	bd, rows, _ := benchBundle(b)
	const batch = 1024
	sc := bd.NewScorer(batch)
	for i := range batch {
		sc.SetRow(i, rows[i])
	}
	sc.Score(batch)
	reasons := make([]Reason, 0, 3)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		reasons = sc.Reasons(i%batch, 3, reasons)
		i++
	}
}

// TestScoringAllocatesNothing guards the hot paths' zero-allocation promise.
func TestScoringAllocatesNothing(t *testing.T) {
	bd := fitTest(t)
	sc := bd.NewScorer(64)
	row := []string{"1", "3.5", "m1", "2024-03-01 10:00:00", "FR"}
	msg := []byte(`{"tx":"1","amount":3.5,"merchant":"m1","ts":"2024-03-01 10:00:00","country":"FR"}`)
	reasons := make([]Reason, 0, 3)
	if a := testing.AllocsPerRun(200, func() {
		for i := range 64 {
			sc.SetRow(i, row)
		}
		sc.Score(64)
	}); a != 0 {
		t.Errorf("batch path: %v allocations", a)
	}
	if a := testing.AllocsPerRun(200, func() {
		if _, err := sc.SetJSON(0, msg); err != nil {
			t.Fatal(err)
		}
		sc.Score(1)
		reasons = sc.Reasons(0, 3, reasons)
	}); a != 0 {
		t.Errorf("message path: %v allocations", a)
	}
	if len(reasons) != 3 || reasons[0].Contribution < reasons[1].Contribution {
		t.Errorf("reasons %+v", reasons)
	}
}

// TestJSONEncodesAsRows: a message decoded from JSON (its numbers valued
// by the decoder while it reads them) encodes to the bits its fields give
// as strings, and scores the same; a number in a form the decoder leaves
// to the encoder's parse (an exponent, a long run of digits) too, and a
// repeated key whose last value is a string, a number or null.
func TestJSONEncodesAsRows(t *testing.T) {
	bd, rows, msgs := benchBundle(t)
	names := benchSchema().Names()
	odd := map[string]any{}
	if err := json.Unmarshal(msgs[0], &odd); err != nil {
		t.Fatal(err)
	}
	oddRow := slices.Clone(rows[0])
	for j, n := range names {
		switch n {
		case "n01":
			odd[n] = json.RawMessage("1.5e-3")
			oddRow[j] = "1.5e-3"
		case "n02":
			odd[n] = json.RawMessage("-12345678.123456789")
			oddRow[j] = "-12345678.123456789"
		}
	}
	oddMsg, err := json.Marshal(odd)
	if err != nil {
		t.Fatal(err)
	}
	rows, msgs = append(rows, oddRow), append(msgs, oddMsg)
	// A repeated key: the last value wins, whether or not an earlier one
	// was a number the decoder valued.
	for _, repeat := range []struct{ first, last string }{{`12.5`, `"abc"`}, {`"abc"`, `-7.25`}, {`3.5`, `null`}} {
		msg := append([]byte(`{"n00":`+repeat.first+`,`), oddMsg[1:]...)
		msg = append(msg[:len(msg)-1], []byte(`,"n00":`+repeat.last+`}`)...)
		row := slices.Clone(oddRow)
		row[slices.Index(names, "n00")] = strings.Trim(map[bool]string{true: "", false: repeat.last}[repeat.last == "null"], `"`)
		rows, msgs = append(rows, row), append(msgs, msg)
	}
	const batch = 64
	byRow, byJSON := bd.NewScorer(batch), bd.NewScorer(batch)
	for from := 0; from < len(rows); from += batch {
		n := min(batch, len(rows)-from)
		for k := range n {
			byRow.SetRow(k, rows[from+k])
			if _, err := byJSON.SetJSON(k, msgs[from+k]); err != nil {
				t.Fatal(err)
			}
		}
		for k := range n * byRow.nc {
			if a, b := byRow.d.Num[k], byJSON.d.Num[k]; math.Float32bits(a) != math.Float32bits(b) {
				t.Fatalf("record %d, input %d: %v from the row, %v from JSON", from+k/byRow.nc, k%byRow.nc, a, b)
			}
		}
		if !slices.Equal(byRow.d.Cat[:n*byRow.cf], byJSON.d.Cat[:n*byRow.cf]) || !slices.Equal(byRow.d.Miss[:n*byRow.nf], byJSON.d.Miss[:n*byRow.nf]) {
			t.Fatalf("records %d-%d: categories or missing fields differ", from, from+n)
		}
		if a, b := byRow.Score(n), byJSON.Score(n); !slices.Equal(a, b) {
			t.Fatalf("records %d-%d: scores differ", from, from+n)
		}
	}
}
