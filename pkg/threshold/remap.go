package threshold

import (
	"math"
	"sort"
)

// Carrying state across a model swap. Segment budgets and the risk tail
// are learned from scores, which a new model puts on another scale;
// starting them from scratch at every promotion leaves segments on the
// global budget and the risk policy silent for its warm-up. Instead each
// remembered score x is carried to the score with the same rank under the
// new model, Q_new(F_old(x)), where F_old is the old model's validation
// score distribution and Q_new the new model's quantile function (both
// from the models' calibration summaries). Ranks, not raw scores, are
// what the two models share: a transaction in the old model's top 0.5% is
// taken to be in the new model's top 0.5% until the new scores say
// otherwise, which the windows then learn as usual.

// QuantileMap returns x ↦ Q_new(F_old(x)) from two calibration summaries
// (increasing probabilities and the scores at them, as model bundles keep
// them). Between the summaries' points it interpolates linearly; beyond
// the old summary's largest score it scales by the ratio of the two
// largest scores, so the far tail keeps its order. It returns nil when
// either summary is unusable (fewer than two points, lengths that differ).
func QuantileMap(oldProbs, oldValues, newProbs, newValues []float64) func(float64) float64 {
	if len(oldProbs) < 2 || len(oldProbs) != len(oldValues) || len(newProbs) < 2 || len(newProbs) != len(newValues) {
		return nil
	}
	oldTop, newTop := oldValues[len(oldValues)-1], newValues[len(newValues)-1]
	if !(oldTop > 0) || !(newTop > 0) {
		return nil
	}
	return func(x float64) float64 {
		if x != x {
			return x
		}
		if x >= oldTop {
			return x * newTop / oldTop
		}
		if x <= oldValues[0] {
			if oldValues[0] > 0 {
				return x * newValues[0] / oldValues[0]
			}
			return newValues[0]
		}
		p := interpolate(oldValues, oldProbs, x)
		return interpolate(newProbs, newValues, p)
	}
}

// interpolate reads y at x from increasing xs (flat runs take their
// middle) by linear interpolation; x is within [xs[0], xs[last]].
func interpolate(xs, ys []float64, x float64) float64 {
	k := sort.SearchFloat64s(xs, x) // first xs[k] >= x
	if k == 0 {
		return ys[0]
	}
	if k >= len(xs) {
		return ys[len(ys)-1]
	}
	if xs[k] == x {
		// A flat run of equal xs: the middle of their ys.
		j := k
		for j+1 < len(xs) && xs[j+1] == x {
			j++
		}
		return (ys[k] + ys[j]) / 2
	}
	x0, x1 := xs[k-1], xs[k]
	return ys[k-1] + (ys[k]-ys[k-1])*(x-x0)/(x1-x0)
}

// Remap returns a sketch holding s's values carried through f, bucket by
// bucket (each bucket's count moves to f of its representative value).
func (s *Sketch) Remap(f func(float64) float64) *Sketch {
	out := NewSketch(s.alpha)
	if s.zeros > 0 {
		out.AddN(f(0), s.zeros)
	}
	for k, c := range s.counts {
		if c > 0 {
			out.AddN(f(s.value(s.offset+k)), c)
		}
	}
	return out
}

// Remap returns a window whose intervals hold w's scores carried through
// f; the interval in progress and its fill are kept.
func (w *Window) Remap(f func(float64) float64) *Window {
	out := &Window{cfg: w.cfg, cur: w.cur, inCur: w.inCur, merged: NewSketch(w.cfg.Alpha)}
	for _, s := range w.ring {
		r := s.Remap(f)
		out.ring = append(out.ring, r)
		out.merged.Merge(r)
	}
	return out
}

// Remap returns a budget whose window holds b's scores carried through f,
// with its threshold placed on them. The fleet view is not carried: peers
// publish their own carried windows.
func (b *Budget) Remap(f func(float64) float64) *Budget {
	out := &Budget{Rate: b.Rate, Refresh: b.Refresh, w: b.w.Remap(f), thr: math.Inf(1)}
	out.recompute()
	return out
}

// Remap returns a segmented policy whose global and segment budgets hold
// s's scores carried through f: segments that had earned their own
// threshold keep it, on the new scale.
func (s *Segmented) Remap(f func(float64) float64) *Segmented {
	out := &Segmented{Rate: s.Rate, MinCount: s.MinCount, cfg: s.cfg, global: s.global.Remap(f),
		segs: make(map[string]*Budget, len(s.segs)), MaxSegments: s.MaxSegments}
	for k, b := range s.segs {
		out.segs[k] = b.Remap(f)
	}
	return out
}

// Remap returns a risk policy whose warm-up scores, initial threshold and
// excesses are carried through f, refitted: a policy past its warm-up
// keeps deciding after a model swap instead of falling silent for
// another WarmUp scores.
func (r *Risk) Remap(f func(float64) float64) *Risk {
	out := &Risk{Q: r.Q, Level: r.Level, WarmUp: r.WarmUp, MaxPeaks: r.MaxPeaks, n: r.n, nt: r.nt, next: r.next,
		t: math.Inf(1), z: math.Inf(1)}
	if r.warm != nil {
		out.warm = make([]float64, len(r.warm), r.WarmUp)
		for i, x := range r.warm {
			out.warm[i] = f(x)
		}
		return out
	}
	if math.IsInf(r.t, 0) {
		return out
	}
	out.t = f(r.t)
	out.peaks = make([]float64, len(r.peaks))
	for i, y := range r.peaks {
		out.peaks[i] = max(f(r.t+y)-out.t, 0)
	}
	out.fit()
	return out
}
