package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSimulateJSON: review simulate ends with one JSON object holding the
// keys a check outside the project reads, consistent with each other.
func TestSimulateJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("tx_id,event_time,card_id,amount,kind,label\n")
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 12 * 144 { // 12 days, one every 10 minutes
		amount, label, kind := 20+rng.Float64()*30, 0, "none"
		if i%60 == 59 {
			amount, label, kind = 900, 1, []string{"big", "huge"}[(i/60)%2]
		}
		fmt.Fprintf(&b, "t%d,%s,c%d,%.2f,%s,%d\n", i, start.Add(time.Duration(i)*10*time.Minute).Format(time.RFC3339), rng.IntN(30), amount, kind, label)
	}
	path := filepath.Join(t.TempDir(), "tx.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	reviewsPath := filepath.Join(t.TempDir(), "reviews.csv")
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--input", path, "--label", "label", "--pattern", "kind", "--reviews-per-day", "5",
		"--label-delay", "48h", "--train-days", "3", "--epochs", "3", "--json", "--reviews-out", reviewsPath}, &out, &errs)
	if err != nil {
		t.Fatal(err, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got map[string]float64
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
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
	// --reviews-out lists every review of both runs: the rows and labels
	// of the file, as many as the figures count.
	rb, err := os.ReadFile(reviewsPath)
	if err != nil {
		t.Fatal(err)
	}
	rl := strings.Split(strings.TrimSpace(string(rb)), "\n")
	if rl[0] != "run,day,row,label" || len(rl) != 1+2*9*5 {
		t.Fatalf("reviews file: header %q, %d lines", rl[0], len(rl))
	}
	data := strings.Split(strings.TrimSpace(b.String()), "\n")[1:]
	found := map[string]int{}
	for _, l := range rl[1:] {
		var run, day string
		var row, lab int
		f := strings.Split(l, ",")
		if len(f) != 4 {
			t.Fatalf("reviews line %q", l)
		}
		run, day = f[0], f[1]
		fmt.Sscan(f[2], &row)
		fmt.Sscan(f[3], &lab)
		cols := strings.Split(data[row], ",")
		if cols[5] != fmt.Sprint(lab) || !strings.HasPrefix(cols[1], day) {
			t.Fatalf("review %q: the file's row %d is %q", l, row, data[row])
		}
		found[run] += lab
	}
	if found["learned"] != int(got["frauds_found_learned"]) || found["score-only"] != int(got["frauds_found_score_only"]) {
		t.Errorf("reviews file counts %v frauds, the figures %v", found, got)
	}
	// A missing label column is named.
	err = run(context.Background(), []string{"simulate", "--input", path, "--label", "is_fraud"}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), `no label column "is_fraud"`) {
		t.Errorf("missing label column: %v", err)
	}
}
