package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/features"
)

// A categorical field whose observed category is the model's most likely
// one is no reason ("country=FR (expected FR)"); every categorical reason
// names a category other than the observed one and the probability the
// model gave the observed one.
func TestReasonsLeaveOutTheExpectedCategory(t *testing.T) {
	b := fitTest(t)
	rows := testRows(256, 21)
	sc := b.NewScorer(len(rows))
	for i, r := range rows {
		sc.SetRow(i, r)
	}
	sc.Score(len(rows))
	nf := len(b.Encoder.Fields)
	skipped, kept := 0, 0
	for i := range rows {
		rs := sc.Reasons(i, nf, nil)
		for f, ef := range b.Encoder.Fields {
			k := slices.IndexFunc(rs, func(r Reason) bool { return r.Field == f })
			if ef.Kind != features.Categorical {
				if k < 0 && sc.Contributions(i)[f] > 0 {
					t.Fatalf("row %d: numeric field %s left out of the reasons", i, ef.Name)
				}
				continue
			}
			obs, exp := sc.Observed(i, f), sc.Expected(i, f)
			if k < 0 {
				skipped++
				if obs != exp && sc.Contributions(i)[f] > 0 {
					t.Fatalf("row %d: %s=%s (expected %s) left out", i, ef.Name, obs, exp)
				}
				continue
			}
			kept++
			if obs == exp {
				t.Fatalf("row %d: reason %s=%s (expected %s)", i, ef.Name, obs, exp)
			}
			if p := rs[k].Probability; !(p > 0 && p < 0.5) || rs[k].Unseen {
				t.Fatalf("row %d: reason %+v: probability of the observed category should be in (0, 0.5), seen", i, rs[k])
			}
		}
		for j := 1; j < len(rs); j++ {
			if rs[j].Contribution > rs[j-1].Contribution {
				t.Fatalf("row %d: reasons out of order: %+v", i, rs)
			}
		}
	}
	if skipped == 0 || kept == 0 {
		t.Fatalf("%d categorical fields left out, %d kept: the rule was not exercised", skipped, kept)
	}
}

// An observed category outside the training vocabulary is flagged as
// unseen, and "<OTHER>" is never given as an expected value.
func TestReasonsSayUnseenNeverOther(t *testing.T) {
	b := fitTest(t)
	sc := b.NewScorer(2)
	sc.SetRow(0, []string{"1", "3.5", "m-new", "2024-03-01 10:00:00", "FR"})
	sc.SetRow(1, []string{"2", "3.5", "m1", "2024-03-01 10:00:00", "FR"})
	sc.Score(2)
	merchant := slices.IndexFunc(b.Encoder.Fields, func(f features.EncodedField) bool { return f.Name == "merchant" })
	rs := sc.Reasons(0, 4, nil)
	k := slices.IndexFunc(rs, func(r Reason) bool { return r.Field == merchant })
	if k < 0 || !rs[k].Unseen || !(rs[k].Probability > 0 && rs[k].Probability < 0.5) || sc.Note(0, rs[k]) != "not seen in training" {
		t.Fatalf("unseen merchant: reasons %+v", rs)
	}
	if e := sc.Expected(0, merchant); e == "<OTHER>" || e == "" {
		t.Fatalf("expected merchant %q", e)
	}

	// Make OTHER the network's favourite merchant: the expectation is
	// said in words, and a known merchant is a reason against it.
	off := b.Encoder.NumCols // merchant is the first categorical field
	b.Model.B[3][off+features.LevelOther] += 100
	sc.Score(2)
	if e := sc.Expected(1, merchant); e != UnseenValue {
		t.Fatalf("expected %q, want %q", e, UnseenValue)
	}
	rs = sc.Reasons(1, 4, nil)
	if k := slices.IndexFunc(rs, func(r Reason) bool { return r.Field == merchant }); k < 0 || rs[k].Unseen || sc.Note(1, rs[k]) != "" {
		t.Fatalf("known merchant against an unseen expectation: reasons %+v", rs)
	}
	// The unseen merchant is now what the model expects: no reason.
	rs = sc.Reasons(0, 4, nil)
	if slices.ContainsFunc(rs, func(r Reason) bool { return r.Field == merchant }) {
		t.Fatalf("unseen merchant where unseen is expected is a reason: %+v", rs)
	}
}

// An expected amount stays within the range seen in training: never
// negative for a field that never was; an observed value beyond that range
// says so.
func TestExpectedWithinTrainingRange(t *testing.T) {
	b := fitTest(t)
	amount := slices.IndexFunc(b.Encoder.Fields, func(f features.EncodedField) bool { return f.Name == "amount" })
	ef := b.Encoder.Fields[amount]
	if !ef.HasRange || !(ef.Min > 0) || !(ef.Max > ef.Min) {
		t.Fatalf("no training range on amount: %+v", ef)
	}
	sc := b.NewScorer(1)
	sc.SetRow(0, []string{"1", "5000", "m1", "2024-03-01 10:00:00", "FR"})
	for _, push := range []float32{-100, 100} {
		// Expected runs the network again (the field masked), so the
		// push stays until it has.
		b.Model.B[3][ef.NumOff] += push
		sc.Score(1)
		got, err := strconv.ParseFloat(sc.Expected(0, amount), 64)
		b.Model.B[3][ef.NumOff] -= push
		if err != nil || got < ef.Min || got > ef.Max {
			t.Fatalf("output pushed by %v: expected amount %v (%v), training range [%v, %v]", push, got, err, ef.Min, ef.Max)
		}
	}
	rs := sc.Reasons(0, 1, nil)
	if len(rs) != 1 || rs[0].Field != amount || rs[0].Probability != -1 || sc.Note(0, rs[0]) != "above the training range (max "+strconv.FormatFloat(ef.Max, 'g', 6, 64)+")" {
		t.Fatalf("reasons %+v, note %q", rs, sc.Note(0, rs[0]))
	}
	// A bundle from before the range was recorded: a log-scaled field
	// (non-negative in training) is still never expected negative.
	b.Encoder.Fields[amount].HasRange, b.Encoder.Fields[amount].Log = false, true
	b.Model.B[3][ef.NumOff] -= 100
	sc.Score(1)
	if got, err := strconv.ParseFloat(sc.Expected(0, amount), 64); err != nil || got < 0 {
		t.Fatalf("without a range: expected amount %v (%v)", got, err)
	}
}

// TestImputedWithinTrainingRange: an imputed number stays in the range
// seen in training, however far the network's output is pushed.
func TestImputedWithinTrainingRange(t *testing.T) {
	b := fitTest(t)
	amount := slices.IndexFunc(b.Encoder.Fields, func(f features.EncodedField) bool { return f.Name == "amount" })
	ef := b.Encoder.Fields[amount]
	sc := b.NewScorer(1)
	for _, push := range []float32{-100, 100} {
		sc.SetRow(0, []string{"1", "", "m1", "2024-03-01 10:00:00", "FR"})
		b.Model.B[3][ef.NumOff] += push
		rows, filled := sc.Impute(1, 3)
		b.Model.B[3][ef.NumOff] -= push
		got, err := strconv.ParseFloat(rows[0][ef.Source], 64)
		if !filled[0][ef.Source] || err != nil || got < ef.Min || got > ef.Max {
			t.Fatalf("output pushed by %v: imputed amount %q, training range [%v, %v]", push, rows[0][ef.Source], ef.Min, ef.Max)
		}
	}
}

// TestReasonsAreTheLargest: Reasons, which describes only the fields it
// picks, returns what one pass keeping the k largest so far returns (the
// way it was computed before, reasonsOnePass): the k largest positive contributions
// among fields that are reasons, largest first, the earlier field first
// among equals, for records with ties, zeros and NaN contributions.
func TestReasonsAreTheLargest(t *testing.T) {
	b := fitTest(t)
	rows := testRows(64, 9)
	sc := b.NewScorer(len(rows))
	for i, r := range rows {
		sc.SetRow(i, r)
	}
	sc.Score(len(rows))
	rng := rand.New(rand.NewPCG(4, 4))
	checkReasons(t, sc, len(rows), 6, rng)
	// 27 learned fields: k up to 12 passes the 8 the one pass keeps.
	wide, wideRows, _ := benchBundle(t)
	sc = wide.NewScorer(64)
	for i, r := range wideRows[:64] {
		sc.SetRow(i, r)
	}
	sc.Score(64)
	checkReasons(t, sc, 64, 13, rng)
}

// checkReasons compares Reasons with reasonsOnePass for slots [0, n) and
// k in [0, maxK), after making some slots' contributions ties, zeros and
// NaN.
func checkReasons(t *testing.T, sc *Scorer, n, maxK int, rng *rand.Rand) {
	t.Helper()
	var got, want []Reason
	for i := range n {
		c := sc.Contributions(i)
		switch i % 4 {
		case 1: // ties
			for f := range c {
				c[f] = float32(rng.IntN(3))
			}
		case 2: // zeros and NaN
			for f := range c {
				if rng.IntN(2) == 0 {
					c[f] = 0
				} else if rng.IntN(3) == 0 {
					c[f] = float32(math.NaN())
				}
			}
		}
		for k := range maxK {
			got = sc.Reasons(i, k, got)
			want = reasonsOnePass(sc, i, k, want[:0])
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("slot %d, k=%d, contributions %v: %v, want %v", i, k, c, got, want)
			}
		}
	}
}

// reasonsOnePass is how Reasons was computed before: one pass over the
// fields, describing each that is among the k largest so far.
func reasonsOnePass(s *Scorer, i, k int, dst []Reason) []Reason {
	dst = dst[:0]
	if k <= 0 {
		return dst
	}
	for f, v := range s.Contributions(i) {
		if !(v > 0) || len(dst) == k && v <= dst[k-1].Contribution {
			continue
		}
		r, ok := s.reason(i, f, v)
		if !ok {
			continue
		}
		if len(dst) < k {
			dst = append(dst, Reason{})
		}
		j := len(dst) - 1
		for j > 0 && dst[j-1].Contribution < v {
			dst[j] = dst[j-1]
			j--
		}
		dst[j] = r
	}
	return dst
}

// TestExpectedIgnoresTheFieldsOwnValue: a numeric or timestamp field's
// expected value is what the rest of the record leads the model to expect,
// so it is the same whatever the field's own value (the network's
// reconstruction of an amount far outside training is an extrapolation:
// the handbook's 700 amounts came back as 0), follows the record's other
// fields, and leaves the batch's outputs as they were.
func TestExpectedIgnoresTheFieldsOwnValue(t *testing.T) {
	b := fitTest(t)
	idx := func(name string) int {
		return slices.IndexFunc(b.Encoder.Fields, func(f features.EncodedField) bool { return f.Name == name })
	}
	amount, ts, merchant := idx("amount"), idx("ts"), idx("merchant")
	amounts := []string{"20", "200", "5000", "1e7", ""}
	sc := b.NewScorer(2 * len(amounts))
	for i, a := range amounts {
		sc.SetRow(i, []string{"1", a, "m3", "2024-03-01 10:00:00", "FR"})
		sc.SetRow(len(amounts)+i, []string{"2", a, "m0", "2024-03-01 10:00:00", "FR"})
	}
	sc.Score(2 * len(amounts))
	before := make([]string, 2*len(amounts))
	for i := range before {
		before[i] = sc.Expected(i, merchant)
	}
	typical := func(i int) float64 {
		v, err := strconv.ParseFloat(sc.Expected(i, amount), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for g := range 2 {
		first := g * len(amounts)
		for i := first; i < first+len(amounts); i++ {
			if a, w := sc.Expected(i, amount), sc.Expected(first, amount); a != w {
				t.Fatalf("amount %q: expected %s, %s for amount %q", amounts[i-first], a, w, amounts[0])
			}
			if a, w := sc.Expected(i, ts), sc.Expected(first, ts); a != w {
				t.Fatalf("amount %q: expected time %s, %s for amount %q", amounts[i-first], a, w, amounts[0])
			}
		}
	}
	// Merchant m3's amounts are about e³ ≈ 20, m0's about 1: this small
	// test model (8 epochs) expects 6.5 and 3.7.
	if m3, m0 := typical(0), typical(len(amounts)); !(m3 > 1.5*m0) || m3 > 60 {
		t.Fatalf("expected amount %v at m3, %v at m0", m3, m0)
	}
	for i := range before {
		if got := sc.Expected(i, merchant); got != before[i] {
			t.Fatalf("row %d: expected merchant %q after the masked reconstructions, %q before", i, got, before[i])
		}
	}
}
