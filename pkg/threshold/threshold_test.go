package threshold

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func lognormal(rng *rand.Rand) float64 { return math.Exp(rng.NormFloat64()) }

func TestSketchQuantilesWithinAlpha(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	s := NewSketch(0.01)
	var xs []float64
	for range 200000 {
		x := lognormal(rng) * 3
		if rng.IntN(50) == 0 {
			x = 0 // exact zeros happen (scores of perfect reconstructions)
		}
		xs = append(xs, x)
		s.Add(x)
	}
	slices.Sort(xs)
	for _, q := range []float64{0.01, 0.1, 0.5, 0.9, 0.99, 0.995, 0.999, 0.9999} {
		want := xs[int(q*float64(len(xs)-1))]
		got := s.Quantile(q)
		if math.Abs(got-want) > 0.01*want+1e-12 {
			t.Errorf("q%.4f: %v, exact %v", q, got, want)
		}
	}
}

func TestMergeSubtractAndEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	a, b, all := NewSketch(0.01), NewSketch(0.01), NewSketch(0.01)
	for i := range 50000 {
		x := lognormal(rng)
		if i%3 == 0 {
			a.Add(x)
		} else {
			b.Add(x)
		}
		all.Add(x)
	}
	m := NewSketch(0.01)
	m.Merge(a)
	m.Merge(b)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Fatalf("merged q%v %v, one sketch %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
	m.Subtract(b)
	if m.Count() != a.Count() || m.Quantile(0.99) != a.Quantile(0.99) {
		t.Fatalf("subtracting b left %d values, q99 %v; a has %d, q99 %v", m.Count(), m.Quantile(0.99), a.Count(), a.Quantile(0.99))
	}
	if err := m.Merge(NewSketch(0.02)); err == nil {
		t.Fatal("merged sketches of different accuracy")
	}
	blob, _ := all.MarshalBinary()
	back, err := UnmarshalSketch(blob)
	if err != nil || back.Count() != all.Count() || back.Quantile(0.995) != all.Quantile(0.995) {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range [][]byte{nil, blob[:20], blob[:len(blob)-1], append(blob, 7)} {
		if _, err := UnmarshalSketch(bad); err == nil {
			t.Errorf("decoded a damaged blob of %d bytes", len(bad))
		}
	}
}

// rates returns the realised alert rate in consecutive windows of n events.
func rates(decide func(float64) bool, scores func(i int) float64, total, n int) []float64 {
	var out []float64
	alerts := 0
	for i := range total {
		if decide(scores(i)) {
			alerts++
		}
		if (i+1)%n == 0 {
			out = append(out, float64(alerts)/float64(n))
			alerts = 0
		}
	}
	return out
}

func TestBudgetHeldOnStationaryStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	b := NewBudget(0.005, WindowConfig{})
	r := rates(func(x float64) bool { _, a := b.Decide(x); return a }, func(int) float64 { return lognormal(rng) }, 1_000_000, 100_000)
	for i, v := range r[1:] { // the first window is warm-up
		if math.Abs(v-0.005)/0.005 > 0.10 {
			t.Errorf("window %d: alert rate %.4f%%, budget 0.5%%", i+1, 100*v)
		}
	}
}

func TestBudgetRecoversFromDrift(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	b := NewBudget(0.005, WindowConfig{})
	scale := func(i int) float64 {
		if i >= 500_000 {
			return 2
		}
		return 1
	}
	// Rates in windows of 10,000 after the shift: by 50,000 events on, the
	// realised rate is back within ±10% of the budget (over 50k-event spans).
	r := rates(func(x float64) bool { _, a := b.Decide(x); return a }, func(i int) float64 { return scale(i) * lognormal(rng) }, 1_000_000, 50_000)
	shift := 500_000 / 50_000
	t.Logf("alert rate per 50k events around the shift: %.3f%% (before) %.3f%% (first 50k after) %.3f%% (next)", 100*r[shift-1], 100*r[shift], 100*r[shift+1])
	for i, v := range r[shift+1:] {
		if math.Abs(v-0.005)/0.005 > 0.10 {
			t.Errorf("window %d after the shift: %.4f%%", i+1, 100*v)
		}
	}
}

func BenchmarkBudgetDecide(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	xs := make([]float64, 1<<16)
	for i := range xs {
		xs[i] = lognormal(rng)
	}
	// The package default, and the scorers' finer windows.
	for _, alpha := range []float64{0.01, 0.001} {
		b.Run(fmt.Sprint("alpha=", alpha), func(b *testing.B) {
			p := NewBudget(0.005, WindowConfig{Alpha: alpha})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Decide(xs[i&(1<<16-1)])
				i++
			}
		})
	}
}

// gpdStream draws scores whose upper 5% is a generalised Pareto tail above 10.
func gpdStream(rng *rand.Rand, gamma float64) float64 {
	if rng.Float64() >= 0.05 {
		return 10 * rng.Float64()
	}
	u := 1 - rng.Float64()
	return 10 + (math.Pow(u, -gamma)-1)/gamma
}

func TestRiskFalseAlarmRate(t *testing.T) {
	for _, c := range []struct {
		q     float64
		n     int
		gamma float64
	}{{1e-3, 1_000_000, 0.1}, {1e-3, 1_000_000, 0.3}, {1e-4, 4_000_000, 0.1}, {1e-4, 4_000_000, 0.3}} {
		rng := rand.New(rand.NewPCG(6, uint64(c.n)+uint64(c.gamma*100)))
		r := NewRisk(c.q)
		alarms := 0
		for range c.n {
			if _, a := r.Decide(gpdStream(rng, c.gamma)); a {
				alarms++
			}
		}
		rate := float64(alarms) / float64(c.n-r.WarmUp)
		t.Logf("q=%g γ=%.1f: false-alarm rate %.3g (%d alarms), threshold %.2f", c.q, c.gamma, rate, alarms, r.Threshold())
		if rate > 1.5*c.q || rate < c.q/1.5 {
			t.Errorf("q=%g γ=%.1f: false-alarm rate %.3g, outside a factor 1.5 of q", c.q, c.gamma, rate)
		}
	}
}

// TestSegmentsMeetTheirBudgets: three segments with different score scales
// each alert at about the budget; a rare segment backs off to its parent.
func TestSegmentsMeetTheirBudgets(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := NewSegmented(0.005, 20000, WindowConfig{})
	scale := map[string]float64{"grocery|FR": 1, "travel|FR": 4, "online|DE": 0.5}
	keys := []string{"grocery|FR", "travel|FR", "online|DE"}
	seen, alerts := map[string]int{}, map[string]int{}
	rareUsed := map[string]int{}
	for i := range 900_000 {
		k := keys[i%3]
		if i%1000 == 0 {
			// A rare segment under travel: too few scores to decide alone.
			_, _, used := s.Decide("travel|FR|atm", 4*lognormal(rng))
			rareUsed[used]++
			continue
		}
		_, a, _ := s.Decide(k, scale[k]*lognormal(rng))
		if i > 300_000 {
			seen[k]++
			if a {
				alerts[k]++
			}
		}
	}
	for _, k := range keys {
		rate := float64(alerts[k]) / float64(seen[k])
		if math.Abs(rate-0.005)/0.005 > 0.15 {
			t.Errorf("%s: alert rate %.4f%%", k, 100*rate)
		}
	}
	if rareUsed["travel|FR|atm"] > 0 || rareUsed["travel|FR"] == 0 {
		t.Errorf("rare segment decided with %v", rareUsed)
	}
}

// TestSeedAtModelSwap: a new model's scores are on another scale; seeding
// the budget with its calibration keeps the alert rate right from the first
// transaction after the swap.
func TestSeedAtModelSwap(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	b := NewBudget(0.005, WindowConfig{})
	for range 200_000 {
		b.Decide(lognormal(rng)) // the old model's scale
	}
	// The new model scores 3× higher; its calibration summary:
	cal := make([]float64, 0, 20000)
	for range 20000 {
		cal = append(cal, 3*lognormal(rng))
	}
	slices.Sort(cal)
	var probs, values []float64
	for _, p := range []float64{0, 0.5, 0.9, 0.95, 0.99, 0.991, 0.992, 0.993, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999, 1} {
		probs = append(probs, p)
		values = append(values, cal[int(p*float64(len(cal)-1))])
	}
	b.Seed(probs, values, 20000)
	alerts := 0
	for range 10000 {
		if _, a := b.Decide(3 * lognormal(rng)); a {
			alerts++
		}
	}
	if rate := float64(alerts) / 10000; math.Abs(rate-0.005)/0.005 > 0.20 {
		t.Fatalf("alert rate in the 10,000 events after the swap: %.3f%%", 100*rate)
	}
}

// TestBudgetHeldOnAPlateau: a score tail with a plateau (3% of the scores
// within 1.5% of each other around the 1% budget's quantile, as a model
// whose strangest records share one saturated field gives). A bucket is
// above the threshold or below it whole, so windows of 0.1% accuracy (the
// scorers' budget, pkg/pipeline's budgetAlpha) hold the rate where the
// default 1% buckets, wider than the plateau, alerted half of it.
func TestBudgetHeldOnAPlateau(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		rng := rand.New(rand.NewPCG(seed, 8))
		score := func(int) float64 {
			switch u := rng.Float64(); {
			case u < 0.005:
				return 8 + 4*rng.Float64() // a few far above
			case u < 0.035:
				return 5.54 + 0.08*rng.Float64() // the plateau
			default:
				return math.Min(lognormal(rng), 5.5) // the body, below it
			}
		}
		b := NewBudget(0.01, WindowConfig{Alpha: 0.001})
		r := rates(func(x float64) bool { _, a := b.Decide(x); return a }, score, 400_000, 100_000)
		for i, v := range r[1:] {
			if math.Abs(v-0.01)/0.01 > 0.2 {
				t.Errorf("seed %d, window %d: alert rate %.3f%%, budget 1%%", seed, i+1, 100*v)
			}
		}
	}
}
