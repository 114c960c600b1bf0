package offline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fitSmall fits a quick model on generated data and returns its path and
// the directory holding it.
func fitSmall(t *testing.T, seed uint64) (dir, modelPath, data string) {
	t.Helper()
	dir = t.TempDir()
	data, _ = writeData(t, dir, 2000, seed)
	modelPath = filepath.Join(dir, "model.bin")
	var log bytes.Buffer
	if _, err := FitFile(context.Background(), FitConfig{Input: data, Out: modelPath, Ignore: "label", AE: quickAE()}, nil, &log); err != nil {
		t.Fatal(err, log.String())
	}
	return dir, modelPath, data
}

// A missing, empty or header-only input is an error that leaves an existing
// output file as it was (it used to be replaced by a header-only file), and
// leaves no temporary file behind.
func TestOutputNotClobberedByABadInput(t *testing.T) {
	ctx := context.Background()
	dir, modelPath, data := fitSmall(t, 5)
	empty := filepath.Join(dir, "empty.csv")
	headerOnly := filepath.Join(dir, "header.csv")
	os.WriteFile(empty, nil, 0o644)
	os.WriteFile(headerOnly, []byte("tx_id,card_id,amount,category,country,event_time,label\n"), 0o644)
	keep := filepath.Join(dir, "keep.csv")
	const precious = "yesterday's scores\n"
	entries := func() int {
		es, _ := os.ReadDir(dir)
		return len(es)
	}
	for _, in := range []string{filepath.Join(dir, "missing.csv"), empty, headerOnly} {
		for _, cmd := range []string{"score", "impute", "eval"} {
			os.WriteFile(keep, []byte(precious), 0o644)
			before := entries()
			var err error
			var log bytes.Buffer
			switch cmd {
			case "score":
				err = ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: in, Out: keep}, nil, &bytes.Buffer{}, &log)
			case "impute":
				err = ImputeFile(ctx, ImputeConfig{Model: modelPath, Input: in, Out: keep}, nil, &bytes.Buffer{}, &log)
			case "eval":
				_, err = EvalFile(ctx, EvalConfig{Model: modelPath, Input: in, Label: "label", Plot: keep}, nil, &bytes.Buffer{}, &log)
			}
			if err == nil {
				t.Errorf("%s %s: no error", cmd, filepath.Base(in))
			}
			if got, _ := os.ReadFile(keep); string(got) != precious {
				t.Errorf("%s %s: the existing output was replaced by %q", cmd, filepath.Base(in), got)
			}
			if n := entries(); n != before {
				t.Errorf("%s %s: %d files in the directory after, %d before (a temporary file left?)", cmd, filepath.Base(in), n, before)
			}
		}
	}
	// A good input replaces the file, readable by others as before.
	os.WriteFile(keep, []byte(precious), 0o644)
	if err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: data, Out: keep}, nil, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(keep)
	if !strings.HasPrefix(string(got), "score,tx_id,") || strings.Count(string(got), "\n") != 2001 {
		t.Fatalf("output after a good run: %.80q… (%d lines)", got, strings.Count(string(got), "\n"))
	}
	if st, _ := os.Stat(keep); st.Mode().Perm() != 0o644 {
		t.Fatalf("output mode %v, want the file's previous 0644", st.Mode().Perm())
	}
}
