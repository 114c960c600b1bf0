package offline

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A label column that is not there is one error that names it and lists
// the columns, not a line per record about an empty label.
func TestEvalNamesAMissingLabelColumn(t *testing.T) {
	ctx := context.Background()
	dir, modelPath, data := fitSmall(t, 6)
	var log bytes.Buffer
	_, err := EvalFile(ctx, EvalConfig{Model: modelPath, Input: data, Label: "is_fraud"}, nil, &bytes.Buffer{}, &log)
	if err == nil || !strings.Contains(err.Error(), `no column "is_fraud"`) || !strings.Contains(err.Error(), "tx_id, card_id, amount, category, country, event_time, label") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(log.String(), "is not 0/1") {
		t.Fatalf("per-record label complaints:\n%s", log.String())
	}
	// The same in JSON Lines: the missing key and the keys there are.
	jl := filepath.Join(dir, "tx.jsonl")
	os.WriteFile(jl, []byte(`{"tx_id":"a","amount":3.5,"category":"gas","label":0}`+"\n"+`{"tx_id":"b","amount":4,"category":"gas","label":1}`+"\n"), 0o644)
	log.Reset()
	_, err = EvalFile(ctx, EvalConfig{Model: modelPath, Input: jl, Label: "is_fraud"}, nil, &bytes.Buffer{}, &log)
	if err == nil || !strings.Contains(err.Error(), `no record has the key "is_fraud"`) || !strings.Contains(err.Error(), "amount, category, label, tx_id") {
		t.Fatalf("JSON Lines: error %v", err)
	}
	if strings.Contains(log.String(), "is not 0/1") {
		t.Fatalf("per-record label complaints:\n%s", log.String())
	}
}

// Labels of one class make ROC-AUC, AUPRC and recall undefined: an error,
// not a report of NaNs.
func TestEvalRefusesASingleClass(t *testing.T) {
	ctx := context.Background()
	dir, modelPath, data := fitSmall(t, 7)
	raw, _ := os.ReadFile(data)
	for _, c := range []struct{ label, want string }{{"0", "without positives"}, {"1", "without negatives"}} {
		var b strings.Builder
		for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			if i > 0 {
				line = line[:strings.LastIndexByte(line, ',')+1] + c.label
			}
			b.WriteString(line + "\n")
		}
		p := filepath.Join(dir, "one-class.csv")
		os.WriteFile(p, []byte(b.String()), 0o644)
		var out bytes.Buffer
		_, err := EvalFile(ctx, EvalConfig{Model: modelPath, Input: p, Label: "label"}, nil, &out, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("all labels %s: error %v, report:\n%s", c.label, err, out.String())
		}
		if strings.Contains(out.String(), "NaN") {
			t.Fatalf("NaN report:\n%s", out.String())
		}
	}
}

// Binary input (a gzip file, NUL bytes, invalid UTF-8 in the header) is
// refused with a message saying what is wrong, by every command.
func TestBinaryInputRefused(t *testing.T) {
	ctx := context.Background()
	dir, modelPath, data := fitSmall(t, 8)
	gz := []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 'x', 0xff, 0xfe, '\n', 'a', ',', 'b', '\n'}
	latinHeader := []byte("tx_id,montant\xe9,amount\n1,2,3\n")
	for name, content := range map[string][]byte{"gz": gz, "latin": latinHeader} {
		p := filepath.Join(dir, name+".csv")
		os.WriteFile(p, content, 0o644)
		err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: p}, nil, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "is not CSV or JSON Lines") {
			t.Errorf("score %s: error %v", name, err)
		}
		_, err = FitFile(ctx, FitConfig{Input: p, Out: filepath.Join(dir, "m2.bin"), AE: quickAE()}, nil, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "is not CSV or JSON Lines") {
			t.Errorf("fit %s: error %v", name, err)
		}
	}
	if err := checkText(gz); err == nil || !strings.Contains(err.Error(), "NUL byte at offset 3") {
		t.Errorf("gzip: %v", err)
	}
	// Text with other encodings after the header is data, not garbage.
	raw, _ := os.ReadFile(data)
	p := filepath.Join(dir, "latin-values.csv")
	os.WriteFile(p, append(raw, []byte("t99999,1,12.5,caf\xe9,FR,2024-05-01 10:00:00,0\n")...), 0o644)
	if err := ScoreFile(ctx, ScoreConfig{Model: modelPath, Input: p}, nil, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("a Latin-1 value after a UTF-8 header: %v", err)
	}
}

// Impute leaves missing timestamps empty and says so on the log.
func TestImputeReportsUnfilledTimestamps(t *testing.T) {
	ctx := context.Background()
	_, modelPath, _ := fitSmall(t, 9)
	in := "tx_id,card_id,amount,category,country,event_time,label\n" +
		"x1,1,,travel,FR,,0\n" +
		"x2,1,5,grocery,FR,not a time,0\n" +
		"x3,1,7.5,gas,FR,2024-05-01 10:00:00,0\n"
	var out, log bytes.Buffer
	if err := ImputeFile(ctx, ImputeConfig{Model: modelPath, Input: "-"}, strings.NewReader(in), &out, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "not filled: event_time was missing or unreadable in 2 records") {
		t.Fatalf("log:\n%s", log.String())
	}
	rows, _ := csv.NewReader(&out).ReadAll()
	if rows[1][5] != "" || rows[1][len(rows[1])-1] != "0" {
		t.Fatalf("a missing timestamp was filled or flagged: %v", rows[1])
	}
}
