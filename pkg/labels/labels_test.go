package labels

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := `{"transaction_id":"t1","label":"fraud","analyst":"ana","at":"2026-12-04T10:00:00Z","model_version":"7","note":"x","source":"case"}`
	l, err := Parse([]byte(good))
	if err != nil || l.TransactionID != "t1" || l.Label != Fraud || l.Analyst != "ana" || l.Source != "case" {
		t.Fatalf("%+v %v", l, err)
	}
	for value, want := range map[string]string{
		`not json`: "invalid character",
		`{"label":"fraud","at":"2026-12-04T10:00:00Z"}`:                                       "no transaction_id",
		`{"transaction_id":"t1","label":"maybe","at":"2026-12-04T10:00:00Z"}`:                 `"maybe" is not fraud`,
		`{"transaction_id":"t1","label":"fraud"}`:                                             "no time",
		`{"transaction_id":"t1","label":"fraud","at":"` + strings.Repeat("x", MaxSize) + `"}`: "larger than",
	} {
		if _, err := Parse([]byte(value)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40s: %v, want %q", value, err, want)
		}
	}
}

// TestLatestWins: relabelling keeps the latest decision by its time, even
// when an older one is read after it; bad records are counted.
func TestLatestWins(t *testing.T) {
	b := NewBook()
	b.Add([]byte(`{"transaction_id":"t1","label":"fraud","at":"2026-12-04T10:00:00Z"}`))
	b.Add([]byte(`{"transaction_id":"t2","label":"fraud","at":"2026-12-04T10:00:00Z"}`))
	b.Add([]byte(`{"transaction_id":"t1","label":"legitimate","at":"2026-12-04T11:00:00Z"}`))
	b.Add([]byte(`{"transaction_id":"t2","label":"legitimate","at":"2026-12-04T09:00:00Z"}`)) // older, read later
	b.Add([]byte(`{"transaction_id":"t3","label":"unsure","at":"2026-12-04T10:00:00Z"}`))
	b.Add([]byte(`garbage`))
	if b.Fraud("t1") || !b.Fraud("t2") || b.Fraud("t3") || b.Fraud("t4") {
		t.Errorf("fraud: t1 %v t2 %v t3 %v t4 %v", b.Fraud("t1"), b.Fraud("t2"), b.Fraud("t3"), b.Fraud("t4"))
	}
	if b.Len() != 3 || b.Bad != 1 {
		t.Errorf("%d labelled, %d bad", b.Len(), b.Bad)
	}
}
