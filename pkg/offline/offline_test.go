package offline

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/ae"
)

// writeData writes n transactions as CSV with a few anomalies (huge
// amounts at 3am in a rare category) labelled 1, and returns the path and
// the anomalies' ids.
func writeData(t *testing.T, dir string, n int, seed uint64) (string, map[string]bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("tx_id,card_id,amount,category,country,event_time,label\n")
	anom := map[string]bool{}
	for i := range n {
		cat := []string{"grocery", "gas", "online", "travel"}[rng.IntN(4)]
		amt := math.Exp(2 + 0.5*rng.NormFloat64())
		if cat == "travel" {
			amt *= 8
		}
		h := 8 + rng.IntN(13)
		country := []string{"FR", "DE", "FR", "FR", "BE"}[rng.IntN(5)]
		label := 0
		if i%97 == 50 {
			amt, h, cat, label = 5000+rng.Float64()*1000, 3, "jewelry", 1
			anom[fmt.Sprintf("t%05d", i)] = true
		}
		fmt.Fprintf(&b, "t%05d,%d,%.2f,%s,%s,2024-05-%02d %02d:%02d:%02d,%d\n", i, 4000000000000000+rng.Int64N(1e12), amt, cat, country, 1+rng.IntN(28), h, rng.IntN(60), rng.IntN(60), label)
	}
	p := filepath.Join(dir, fmt.Sprintf("tx%d.csv", seed))
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, anom
}

func quickAE() ae.Config { return ae.Config{Seed: 1, Epochs: 12, Hidden: 32, Bottleneck: 8} }

func TestFitScoreEval(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	train, _ := writeData(t, dir, 4000, 1)
	test, anom := writeData(t, dir, 1500, 2)
	modelPath := filepath.Join(dir, "model.bin")
	var log bytes.Buffer
	b, err := FitFile(ctx, FitConfig{Input: train, Out: modelPath, Ignore: "label", AE: quickAE()}, nil, &log)
	if err != nil {
		t.Fatal(err, log.String())
	}
	if b.Encoder.Schema.Fields[6].Kind.Learned() {
		t.Fatal("the label was learned")
	}
	if !strings.Contains(log.String(), "epoch   1") {
		t.Fatalf("no progress on the log:\n%s", log.String())
	}

	// Score: one row per input row, in order; anomalies on top.
	var out bytes.Buffer
	if err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: test, Embed: true}, nil, &out, &log); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1501 || recs[0][0] != "score" || recs[0][1] != "tx_id" {
		t.Fatalf("%d output rows, header %v", len(recs), recs[0])
	}
	if !strings.Contains(strings.Join(recs[0], ","), "emb_7,error") {
		t.Fatalf("no embedding columns in %v", recs[0])
	}
	var anomScores, normal []float64
	for i, r := range recs[1:] {
		if want := fmt.Sprintf("t%05d", i); r[1] != want {
			t.Fatalf("row %d has id %s, want %s (order lost)", i, r[1], want)
		}
		s, err := strconv.ParseFloat(r[0], 64)
		if err != nil {
			t.Fatal(err)
		}
		if anom[r[1]] {
			anomScores = append(anomScores, s)
			if r[2] != "amount" && r[2] != "category" && r[2] != "event_time" {
				t.Errorf("anomaly %s: top reason %s", r[1], r[2])
			}
		} else {
			normal = append(normal, s)
		}
	}
	minAnom := math.Inf(1)
	for _, s := range anomScores {
		minAnom = min(minAnom, s)
	}
	above := 0
	for _, s := range normal {
		if s >= minAnom {
			above++
		}
	}
	if above > len(normal)/100 {
		t.Errorf("%d normal rows score above the weakest anomaly", above)
	}

	// Eval reports quality and draws the plot.
	var rep bytes.Buffer
	plot := filepath.Join(dir, "eval.png")
	r, err := EvalFile(ctx, EvalConfig{Model: modelPath, Input: test, Label: "label", Plot: plot}, nil, &rep, &log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Positives != len(anom) || r.AUPRC < 0.9 {
		t.Fatalf("eval: %d positives (want %d), AUPRC %.3f\n%s", r.Positives, len(anom), r.AUPRC, rep.String())
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatal(err)
	}
}

func TestScoreKeepsBadRowsAligned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	train, _ := writeData(t, dir, 2000, 3)
	modelPath := filepath.Join(dir, "model.bin")
	var log bytes.Buffer
	if _, err := FitFile(ctx, FitConfig{Input: train, Out: modelPath, Ignore: "label", AE: quickAE()}, nil, &log); err != nil {
		t.Fatal(err)
	}
	in := "tx_id,card_id,amount,category,country,event_time,label\n" +
		"a,1,12.5,gas,FR,2024-05-01 10:00:00,0\n" +
		"b,1,12.5,gas\n" + // too few fields
		"c,1,oops,gas,FR,not a time,0\n" + // unparseable values: missing, still scored
		"d,1,,,,,\n"
	var out bytes.Buffer
	log.Reset()
	if err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: "-"}, strings.NewReader(in), &out, &log); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d rows for 4 records", len(recs))
	}
	errCol := len(recs[0]) - 1
	if recs[2][0] != "NaN" || !strings.Contains(recs[2][errCol], "fields") || recs[1][errCol] != "" {
		t.Fatalf("bad record row: %v", recs[2])
	}
	for _, i := range []int{1, 3, 4} {
		if _, err := strconv.ParseFloat(recs[i][0], 64); err != nil || recs[i][0] == "NaN" {
			t.Fatalf("row %d: score %q", i, recs[i][0])
		}
	}
	if !strings.Contains(log.String(), "line 3") || !strings.Contains(log.String(), "1 bad records skipped") {
		t.Fatalf("log does not report the bad line:\n%s", log.String())
	}
	// A renamed column the model learned from is an error, not silent blanks.
	renamed := strings.Replace(in, "amount", "amt", 1)
	err = ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: "-"}, strings.NewReader(renamed), &bytes.Buffer{}, &log)
	if err == nil || !strings.Contains(err.Error(), "lacks amount") {
		t.Fatalf("renamed column: %v", err)
	}
}

func TestJSONLinesEverywhere(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	csvPath, _ := writeData(t, dir, 2500, 4)
	// Convert to JSON Lines with numbers as JSON numbers, keys reordered.
	f, _ := os.Open(csvPath)
	recs, _ := csv.NewReader(f).ReadAll()
	f.Close()
	var jl strings.Builder
	for _, r := range recs[1:] {
		amt, _ := strconv.ParseFloat(r[2], 64)
		line, _ := json.Marshal(map[string]any{"label": r[6], "amount": amt, "tx_id": r[0], "card_id": r[1], "category": r[3], "country": r[4], "event_time": r[5]})
		jl.Write(line)
		jl.WriteByte('\n')
	}
	jl.WriteString("{not json}\n")
	jsonPath := filepath.Join(dir, "tx.jsonl")
	os.WriteFile(jsonPath, []byte(jl.String()), 0o644)

	var log bytes.Buffer
	modelPath := filepath.Join(dir, "m.bin")
	if _, err := FitFile(ctx, FitConfig{Input: jsonPath, Out: modelPath, Ignore: "label", AE: quickAE()}, nil, &log); err != nil {
		t.Fatal(err, log.String())
	}
	if !strings.Contains(log.String(), "line 2501") {
		t.Fatalf("bad JSON line not reported:\n%s", log.String())
	}
	var out bytes.Buffer
	if err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: jsonPath}, nil, &out, &log); err != nil {
		t.Fatal(err)
	}
	rows, _ := csv.NewReader(&out).ReadAll()
	if len(rows) != 2502 || rows[2501][0] != "NaN" {
		t.Fatalf("%d rows; last %v", len(rows), rows[len(rows)-1])
	}
	// A key renamed in every record is flagged, not silently scored as missing.
	renamed := strings.ReplaceAll(jl.String(), `"amount"`, `"amt"`)
	log.Reset()
	if err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: "-"}, strings.NewReader(renamed), &bytes.Buffer{}, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `no record carried "amount"`) {
		t.Fatalf("renamed key not reported:\n%s", log.String())
	}
	// Impute: blank amounts are filled with plausible values and flagged.
	in := "tx_id,card_id,amount,category,country,event_time,label\n" +
		"x1,1,,travel,FR,2024-05-01 10:00:00,0\n" +
		"x2,1,,grocery,FR,2024-05-01 10:00:00,0\n" +
		"x3,1,7.5,,FR,2024-05-01 10:00:00,0\n"
	out.Reset()
	if err := ImputeFile(ctx, ImputeConfig{Model: modelPath, Input: "-"}, strings.NewReader(in), &out, &log); err != nil {
		t.Fatal(err)
	}
	filled, _ := csv.NewReader(&out).ReadAll()
	if len(filled) != 4 || filled[0][len(filled[0])-1] != "event_time_imputed" {
		t.Fatalf("impute output %v", filled)
	}
	col := func(name string) int {
		for i, h := range filled[0] {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s in %v", name, filled[0])
		return -1
	}
	travel, _ := strconv.ParseFloat(filled[1][col("amount")], 64)
	grocery, _ := strconv.ParseFloat(filled[2][col("amount")], 64)
	if !(travel > 2*grocery) || filled[1][col("amount_imputed")] != "1" || filled[3][col("category")] == "" ||
		filled[3][col("category_imputed")] != "1" || filled[1][col("category_imputed")] != "0" {
		t.Fatalf("imputed travel %v, grocery %v; rows %v", travel, grocery, filled)
	}
}
