package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/offline"
)

// runOffline is the offline walkthrough: fit on three weeks of the
// handbook data without labels, score the last week, evaluate.
func runOffline(ctx context.Context, data, cut, plot string, seed uint64, stdout io.Writer) error {
	dir, err := os.MkdirTemp("", "fraudstream-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	train, test := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv")
	nTrain, nTest, err := split(data, cut, train, test)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "== %s: %d transactions before %s to learn from (labels unused), %d to score\n", filepath.Base(data), nTrain, cut, nTest)

	fmt.Fprintln(stdout, "== trainer fit")
	modelPath := filepath.Join(dir, "model.bin")
	if _, err := offline.FitFile(ctx, offline.FitConfig{Input: train, Out: modelPath, AE: ae.Config{Seed: seed}}, nil, stdout); err != nil {
		return err
	}

	fmt.Fprintln(stdout, "== scorer score: the five strangest transactions of the last week")
	scores := filepath.Join(dir, "scores.csv")
	if err := offline.ScoreFile(ctx, offline.ScoreConfig{Model: modelPath, Input: test, Out: scores, TopK: 2, History: []string{train}}, nil, stdout, io.Discard); err != nil {
		return err
	}
	if err := top(scores, 5, stdout); err != nil {
		return err
	}

	fmt.Fprintln(stdout, "== scorer eval against the labels")
	_, err = offline.EvalFile(ctx, offline.EvalConfig{Model: modelPath, Input: test, Label: "label", Plot: plot, History: []string{train}}, nil, stdout, stdout)
	return err
}

// split writes rows before day to train and the rest to test.
func split(path, day, train, test string) (int, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("%w (the demo reads the shared public data; pass --data)", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	header, err := r.Read()
	if err != nil {
		return 0, 0, err
	}
	ti := -1
	for i, h := range header {
		if h == "TX_DATETIME" {
			ti = i
		}
	}
	if ti < 0 {
		return 0, 0, fmt.Errorf("%s has no TX_DATETIME column", path)
	}
	var outs [2]*csv.Writer
	var files [2]*os.File
	for i, p := range []string{train, test} {
		if files[i], err = os.Create(p); err != nil {
			return 0, 0, err
		}
		defer files[i].Close()
		outs[i] = csv.NewWriter(files[i])
		outs[i].Write(header)
	}
	var n [2]int
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		k := 0
		if rec[ti] >= day {
			k = 1
		}
		outs[k].Write(rec)
		n[k]++
	}
	for _, w := range outs {
		w.Flush()
		if err := w.Error(); err != nil {
			return 0, 0, err
		}
	}
	return n[0], n[1], nil
}

// top prints the k highest-scoring rows of a scores file.
func top(path string, k int, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return err
	}
	header, rows := recs[0], recs[1:]
	sort.SliceStable(rows, func(i, j int) bool {
		a, _ := strconv.ParseFloat(rows[i][0], 64)
		b, _ := strconv.ParseFloat(rows[j][0], 64)
		return a > b
	})
	for _, r := range rows[:min(k, len(rows))] {
		var parts []string
		id := ""
		if !strings.HasPrefix(header[1], "reason") {
			id = header[1] + " " + r[1] + ": "
		}
		col := map[string]string{}
		for i, h := range header {
			col[h] = r[i]
		}
		for k := 1; col[fmt.Sprintf("reason%d_field", k)] != ""; k++ {
			p := fmt.Sprintf("reason%d_", k)
			extra := ""
			if pr := col[p+"probability"]; pr != "" {
				extra += "; probability " + pr
			}
			if n := col[p+"note"]; n != "" {
				extra += "; " + n
			}
			parts = append(parts, fmt.Sprintf("%s=%s (expected %s%s; contribution %s)", col[p+"field"], col[p+"observed"], col[p+"expected"], extra, col[p+"contribution"]))
		}
		fmt.Fprintf(w, "  score %-8s %s%s\n", r[0], id, strings.Join(parts, "; "))
	}
	return nil
}
