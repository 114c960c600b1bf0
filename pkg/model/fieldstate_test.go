package model

import (
	"slices"
	"testing"
)

// The wrong-typed record: text in a numeric field, a boolean as a
// time, an array and a number where categories were learned.
func TestFieldStates(t *testing.T) {
	b := fitTest(t)
	sc := b.NewScorer(4)
	cases := []struct {
		msg                  string
		missing, invalid     int
		amount, ts, merchant FieldState
	}{
		{`{"tx":"1","amount":12.5,"merchant":"m1","ts":"2024-03-02 10:00:00","country":"FR"}`, 0, 0, Valid, Valid, Valid},
		{`{}`, 4, 0, Missing, Missing, Missing},
		{`{"tx":12345,"merchant":["x"],"amount":"lots","ts":true,"country":7}`, 0, 3, Invalid, Invalid, Invalid},
		{`{"amount":"N/A","merchant":null,"ts":"","country":"FR"}`, 3, 0, Missing, Missing, Missing},
	}
	names := []string{}
	for _, f := range b.Encoder.Fields {
		names = append(names, f.Name)
	}
	for _, c := range cases {
		if _, err := sc.SetJSON(0, []byte(c.msg)); err != nil {
			t.Fatalf("%s: %v", c.msg, err)
		}
		m, bad := sc.Unusable(0)
		if m != c.missing || bad != c.invalid || sc.Invalid(0) != c.invalid {
			t.Errorf("%s: missing %d invalid %d, want %d and %d", c.msg, m, bad, c.missing, c.invalid)
		}
		st := sc.FieldStates(0)
		for name, want := range map[string]FieldState{"amount": c.amount, "ts": c.ts, "merchant": c.merchant} {
			if got := st[slices.Index(names, name)]; got != want {
				t.Errorf("%s: %s is %d, want %d", c.msg, name, got, want)
			}
		}
	}
}
