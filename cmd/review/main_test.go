package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSimulateJSON: review simulate ends with one JSON object holding the
// keys a check outside the project reads, consistent with each other, and
// --reviews-out names each reviewed record by its line in the input, which
// is out of time order and has a malformed record that is skipped.
func TestSimulateJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []string
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 12 * 144 { // 12 days, one every 10 minutes
		amount, label, kind := 20+rng.Float64()*30, 0, "none"
		if i%60 == 59 {
			amount, label, kind = 900, 1, []string{"big", "huge"}[(i/60)%2]
		}
		recs = append(recs, fmt.Sprintf("t%d,%s,c%d,%.2f,%s,%d", i, start.Add(time.Duration(i)*10*time.Minute).Format(time.RFC3339), rng.IntN(30), amount, kind, label))
	}
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	recs = slices.Insert(recs, 7, "t-bad,2024-01-05T00:00:00Z") // two fields: skipped
	lines := append([]string{"tx_id,event_time,card_id,amount,kind,label"}, recs...)
	path := filepath.Join(t.TempDir(), "tx.csv")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reviewsPath := filepath.Join(t.TempDir(), "reviews.csv")
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--input", path, "--label", "label", "--pattern", "kind", "--reviews-per-day", "5",
		"--label-delay", "48h", "--train-days", "3", "--epochs", "3", "--json", "--reviews-out", reviewsPath}, &out, &errs)
	if err != nil {
		t.Fatal(err, errs.String())
	}
	outLines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got map[string]float64
	if err := json.Unmarshal([]byte(outLines[len(outLines)-1]), &got); err != nil {
		t.Fatalf("last line %q: %v", outLines[len(outLines)-1], err)
	}
	for _, k := range []string{"reviews", "frauds_found_learned", "frauds_found_score_only", "precision_learned", "precision_score_only",
		"patterns_first_100_learned", "patterns_first_100_score_only"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %v", k, got)
		}
	}
	if got["reviews"] != 9*5 || got["frauds_found_score_only"] > got["reviews"] || got["patterns_first_100_score_only"] != 2 {
		t.Errorf("figures %v\n%s", got, out.String())
	}
	// --reviews-out lists every review of both runs: the records' lines in
	// the input, with their labels and days, as many as the figures count.
	rb, err := os.ReadFile(reviewsPath)
	if err != nil {
		t.Fatal(err)
	}
	rl := strings.Split(strings.TrimSpace(string(rb)), "\n")
	if rl[0] != "run,day,line,label" || len(rl) != 1+2*9*5 {
		t.Fatalf("reviews file: header %q, %d lines", rl[0], len(rl))
	}
	found := map[string]int{}
	for _, l := range rl[1:] {
		f := strings.Split(l, ",")
		if len(f) != 4 {
			t.Fatalf("reviews line %q", l)
		}
		line, err1 := strconv.Atoi(f[2])
		lab, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || line < 2 || line > len(lines) {
			t.Fatalf("reviews line %q: line %v, label %v", l, err1, err2)
		}
		cols := strings.Split(lines[line-1], ",")
		if len(cols) != 6 || cols[5] != f[3] || !strings.HasPrefix(cols[1], f[1]) {
			t.Fatalf("review %q: the input's line %d is %q", l, line, lines[line-1])
		}
		found[f[0]] += lab
	}
	if found["learned"] != int(got["frauds_found_learned"]) || found["score-only"] != int(got["frauds_found_score_only"]) {
		t.Errorf("reviews file counts %v frauds, the figures %v", found, got)
	}
	// A missing label column is named, and a failed run writes no
	// reviews file.
	failedPath := filepath.Join(t.TempDir(), "failed.csv")
	err = run(context.Background(), []string{"simulate", "--input", path, "--label", "is_fraud", "--reviews-out", failedPath}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), `no label column "is_fraud"`) {
		t.Errorf("missing label column: %v", err)
	}
	if _, err := os.Stat(failedPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run left a reviews file: %v", err)
	}
}
