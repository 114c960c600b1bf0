package entity

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The tail is the empirical P(X >= x) at its points, decreasing
// everywhere above its smallest point (beyond the largest too, so a value
// stranger than any seen still ranks higher), and Quantile inverts it.
func TestTailInvertsAndKeepsRanking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 20000)
	for i := range vals {
		vals[i] = rng.NormFloat64()
		if i%10 == 0 {
			vals[i] = math.NaN() // missing: counted, never strange
		}
	}
	tl, ok := NewTail(vals)
	if !ok {
		t.Fatal("no tail from 18,000 values")
	}
	sorted := slices.DeleteFunc(slices.Clone(vals), math.IsNaN)
	slices.Sort(sorted)
	for i, x := range tl.X {
		ge := len(sorted) - sortIndex(sorted, x)
		if got, want := tl.LogP[i], math.Log(float64(ge)/float64(len(vals))); math.Abs(got-want) > 1e-12 {
			t.Fatalf("point %d (x=%g): log P %g, the sample's is %g", i, x, got, want)
		}
	}
	prev := math.Inf(1)
	for x := tl.X[0]; x < tl.X[len(tl.X)-1]+3; x += 0.01 {
		lp := tl.LogProb(x)
		if x > tl.X[0] && !(lp < prev) {
			t.Fatalf("LogProb(%g) = %g does not fall below %g", x, lp, prev)
		}
		prev = lp
		if back := tl.Quantile(lp); math.Abs(back-x) > 1e-9 {
			t.Fatalf("Quantile(LogProb(%g)) = %g", x, back)
		}
	}
	if tl.LogProb(math.NaN()) != 0 {
		t.Fatal("a missing value is not probability 1")
	}
}

func sortIndex(s []float64, x float64) int {
	i, _ := slices.BinarySearch(s, x)
	return i
}

// A bundle's calibration (quantiles) makes a tail whose largest point has
// tail probability 1/count.
func TestTailFromQuantiles(t *testing.T) {
	tl, ok := TailFromQuantiles([]float64{0, 0.5, 0.9, 0.99, 1}, []float64{1, 2, 3, 5, 9}, 1000)
	if !ok {
		t.Fatal("refused")
	}
	if got := tl.LogProb(9); math.Abs(got-math.Log(0.001)) > 1e-12 {
		t.Fatalf("LogProb(max) = %g, want log(1/1000)", got)
	}
	if got := tl.LogProb(3); math.Abs(got-math.Log(0.1)) > 1e-12 {
		t.Fatalf("LogProb(q90) = %g, want log 0.1", got)
	}
	if _, ok := TailFromQuantiles([]float64{0, 1}, []float64{2, 2}, 1000); ok {
		t.Fatal("a constant calibration made a tail")
	}
}

// Joining ranks by the smaller of the two tail probabilities, and leaves
// the DAE score as it is when it is the stranger.
func TestJoinRanksBySmallerTailProbability(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dae := make([]float64, 5000)
	for i := range dae {
		dae[i] = math.Exp(rng.NormFloat64())
	}
	tl, _ := NewTail(dae)
	type pair struct{ joined, minLP float64 }
	var ps []pair
	for range 3000 {
		s := math.Exp(1.5 * rng.NormFloat64())
		lp := math.Log(rng.Float64()) * 3
		if rng.IntN(4) == 0 {
			lp = 0 // no entity score
		}
		j := Join(tl, s, lp)
		if lp >= tl.LogProb(s) && j != s {
			t.Fatalf("Join(%g, lp %g) = %g: the DAE score was stranger and should stand", s, lp, j)
		}
		if j < s {
			t.Fatalf("Join(%g, lp %g) = %g lowers the score", s, lp, j)
		}
		ps = append(ps, pair{j, math.Min(tl.LogProb(s), lp)})
	}
	for i := range ps {
		for k := range ps {
			if ps[i].minLP < ps[k].minLP-1e-9 && !(ps[i].joined > ps[k].joined) {
				t.Fatalf("tail %g < %g but joined %g <= %g", ps[i].minLP, ps[k].minLP, ps[i].joined, ps[k].joined)
			}
		}
	}
}

// A state written to a shared store and read back steps exactly as the
// one kept in memory.
func TestStateEncodingRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	feats := []Feature{{Stat: Count, Window: time.Hour}, {Stat: Ratio, Window: 720 * time.Hour}, {Stat: Z, Window: 24 * time.Hour}, {Stat: Mean, Window: 168 * time.Hour}, {Stat: Since}}
	var mem, stored State
	buf := mem.AppendBinary(nil)
	if len(buf) != EncodedSize {
		t.Fatalf("encoded %d bytes, EncodedSize is %d", len(buf), EncodedSize)
	}
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	a, b := make([]float64, len(feats)), make([]float64, len(feats))
	for i := range 500 {
		at = at.Add(time.Duration(rng.IntN(7200)-600) * time.Second) // some out of order
		amount := math.Exp(3 + rng.NormFloat64())
		if i%50 == 7 {
			amount = math.NaN()
		}
		if err := stored.UnmarshalBinary(buf); err != nil {
			t.Fatal(err)
		}
		mem.Step(DefaultWindows, feats, at, amount, a)
		stored.Step(DefaultWindows, feats, at, amount, b)
		for k := range a {
			if math.Float64bits(a[k]) != math.Float64bits(b[k]) {
				t.Fatalf("step %d feature %v: %v in memory, %v via the encoding", i, feats[k], a[k], b[k])
			}
		}
		buf = stored.AppendBinary(buf[:0])
	}
	if err := stored.UnmarshalBinary(buf[:EncodedSize-1]); err == nil {
		t.Fatal("a short encoding was accepted")
	}
	bad := append([]byte{9}, buf[1:]...)
	if err := stored.UnmarshalBinary(bad); err == nil {
		t.Fatal("an unknown version was accepted")
	}
}
