package threshold

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// summary is a calibration summary of scores, as model bundles keep one.
func summary(scores []float64) (probs, values []float64) {
	s := slices.Clone(scores)
	slices.Sort(s)
	for i := 0; i <= 100; i++ {
		p := float64(i) / 100
		probs = append(probs, p)
		values = append(values, s[int(p*float64(len(s)-1))])
	}
	for _, p := range []float64{0.995, 0.999, 0.9999} {
		k := sort64(probs, p)
		probs = slices.Insert(probs, k, p)
		values = slices.Insert(values, k, s[int(p*float64(len(s)-1))])
	}
	return probs, values
}

func sort64(xs []float64, x float64) int {
	k, _ := slices.BinarySearch(xs, x)
	return k
}

func lognormals(rng *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = scale * math.Exp(rng.NormFloat64())
	}
	return out
}

func TestQuantileMapCarriesRanks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	op, ov := summary(lognormals(rng, 50_000, 1))
	np, nv := summary(lognormals(rng, 50_000, 4))
	f := QuantileMap(op, ov, np, nv)
	for _, x := range []float64{0.5, 1, 2, 5, 10} {
		if got := f(x); math.Abs(got/(4*x)-1) > 0.08 {
			t.Errorf("f(%v) = %.3f, want about %.3f", x, got, 4*x)
		}
	}
	// The far tail, where the summaries are sparse: order is kept.
	if !(f(10) < f(40) && f(40) < f(100) && f(100) < f(1000)) {
		t.Errorf("the tail map is not increasing: %v %v %v %v", f(10), f(40), f(100), f(1000))
	}
	if QuantileMap(op[:1], ov[:1], np, nv) != nil {
		t.Error("a one-point summary should give no map")
	}
}

// segScore draws a score of segment k (three segments, scales 1, 3, 9).
func segScore(rng *rand.Rand, scale float64) (string, float64) {
	k := rng.IntN(3)
	return []string{"a", "b", "c"}[k], scale * math.Pow(3, float64(k)) * math.Exp(rng.NormFloat64())
}

// TestSegmentsSurviveASwap: segments that earned their own thresholds on
// the old model keep them after a swap to a model whose scores run 4x
// higher, so every segment holds its budget from the first score on the
// new model. Started afresh, every segment backs off to the global budget
// for MinCount scores and the segments' rates split 0% / ~0% / ~1.5%.
func TestSegmentsSurviveASwap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	seg := NewSegmented(0.005, 20000, WindowConfig{})
	var old []float64
	for range 300_000 {
		k, x := segScore(rng, 1)
		seg.Decide(k, x)
		old = append(old, x)
	}
	op, ov := summary(old)
	var fresh []float64
	for range 100_000 {
		_, x := segScore(rng, 4)
		fresh = append(fresh, x)
	}
	np, nv := summary(fresh)
	carried := seg.Remap(QuantileMap(op, ov, np, nv))
	alerts, seen := map[string]int{}, map[string]int{}
	for range 30_000 {
		k, x := segScore(rng, 4)
		_, a, used := carried.Decide(k, x)
		if used != k {
			t.Fatalf("segment %s decided by %q right after the swap; its own threshold was not carried", k, used)
		}
		seen[k]++
		if a {
			alerts[k]++
		}
	}
	for _, k := range []string{"a", "b", "c"} {
		if r := float64(alerts[k]) / float64(seen[k]); math.Abs(r-0.005)/0.005 > 0.3 {
			t.Errorf("segment %s alerts on %.3f%% in the 30k scores after the swap, want 0.5%% ±30%%", k, 100*r)
		}
	}
}

// TestRiskSurvivesASwap: a risk policy past its warm-up keeps alerting at
// about q after a swap to a model on another scale, instead of falling
// silent for another WarmUp scores.
func TestRiskSurvivesASwap(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	r := NewRisk(1e-3)
	old := lognormals(rng, 200_000, 1)
	for _, x := range old {
		r.Decide(x)
	}
	op, ov := summary(old)
	np, nv := summary(lognormals(rng, 200_000, 4))
	carried := r.Remap(QuantileMap(op, ov, np, nv))
	if math.IsInf(carried.Threshold(), 1) {
		t.Fatal("no threshold right after the swap")
	}
	alerts := 0
	const n = 100_000
	for _, x := range lognormals(rng, n, 4) {
		if _, a := carried.Decide(x); a {
			alerts++
		}
	}
	if rate := float64(alerts) / n; rate < 0.5e-3 || rate > 2e-3 {
		t.Errorf("false-alarm rate %.2e after the swap, want 1e-3 within a factor 2", rate)
	}
}
