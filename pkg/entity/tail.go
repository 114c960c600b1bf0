package entity

import (
	"cmp"
	"errors"
	"math"
	"slices"
)

// Tail is an empirical upper-tail distribution, P(X >= x), kept as points
// (X ascending, LogP the natural log of the tail probability there,
// descending) with log-linear interpolation between them and a log-linear
// extrapolation (Slope) beyond the largest: so a value stranger than any
// seen still ranks above one that is merely the strangest seen. P and
// Quantile are exact inverses on the points' range, which lets two scores
// be joined by their tail probabilities and expressed on either's scale.
type Tail struct {
	X     []float64 `json:"x"`
	LogP  []float64 `json:"log_p"`
	Slope float64   `json:"slope"` // d log P / dx beyond the last point; negative
}

// tailGrowth spaces the stored ranks geometrically (each ~8% past the
// last): dense where thresholds live, about 150 points for 200,000 values.
const tailGrowth = 1.08

// NewTail summarises values (NaN: missing, never strange) as a tail
// distribution over all of them, missing ones included in the count. It
// returns false when fewer than two distinct values are present.
func NewTail(values []float64) (Tail, bool) {
	s := make([]float64, 0, len(values))
	for _, v := range values {
		if !math.IsNaN(v) {
			s = append(s, v)
		}
	}
	slices.SortFunc(s, func(a, b float64) int { return cmp.Compare(b, a) }) // descending
	n := float64(len(values))
	var xs, lp []float64
	for k := 1; k <= len(s); {
		// All values equal to this one are at least as large: the tail at
		// v counts them all.
		j := k
		for j < len(s) && s[j] == s[k-1] {
			j++
		}
		xs = append(xs, s[k-1])
		lp = append(lp, math.Log(float64(j)/n))
		k = max(j+1, int(float64(j)*tailGrowth))
	}
	slices.Reverse(xs)
	slices.Reverse(lp)
	return newTail(xs, lp)
}

// TailFromQuantiles builds a tail from quantiles (probs ascending in
// [0, 1], values at them) of count values, such as a bundle's validation
// calibration; the largest (prob 1) has tail probability 1/count.
func TailFromQuantiles(probs, values []float64, count int) (Tail, bool) {
	if len(probs) != len(values) || count < 2 {
		return Tail{}, false
	}
	var xs, lp []float64
	for i, p := range probs {
		t := 1 - p
		if p >= 1 {
			t = 1 / float64(count)
		}
		if t <= 0 || math.IsNaN(values[i]) {
			continue
		}
		if len(xs) > 0 && (values[i] <= xs[len(xs)-1] || math.Log(t) >= lp[len(lp)-1]) {
			continue
		}
		xs = append(xs, values[i])
		lp = append(lp, math.Log(t))
	}
	return newTail(xs, lp)
}

func newTail(xs, lp []float64) (Tail, bool) {
	if len(xs) < 2 {
		return Tail{}, false
	}
	t := Tail{X: xs, LogP: lp}
	// Beyond the largest, the slope of the last tenfold of probability:
	// steep enough to be stable, local enough to describe the tail.
	last := len(xs) - 1
	j := 0
	for i := last - 1; i >= 0; i-- {
		if lp[i] >= lp[last]+math.Ln10 {
			j = i
			break
		}
	}
	t.Slope = (lp[last] - lp[j]) / (xs[last] - xs[j])
	return t, t.check() == nil
}

// check refuses a malformed tail (from a corrupted or forged bundle).
func (t Tail) check() error {
	if len(t.X) < 2 || len(t.X) != len(t.LogP) {
		return errors.New("entity: a tail needs two or more points")
	}
	for i := range t.X {
		if math.IsNaN(t.X[i]) || math.IsInf(t.X[i], 0) || !(t.LogP[i] <= 0) {
			return errors.New("entity: a tail point is not finite")
		}
		if i > 0 && (t.X[i] <= t.X[i-1] || t.LogP[i] >= t.LogP[i-1]) {
			return errors.New("entity: tail points are not in order")
		}
	}
	if !(t.Slope < 0) || math.IsInf(t.Slope, 0) {
		return errors.New("entity: tail slope must be negative")
	}
	return nil
}

// Check reports whether the tail is well formed.
func (t Tail) Check() error { return t.check() }

// LogProb is log P(X >= x); 0 (probability 1) for NaN. Below the smallest
// point it is that point's value.
func (t Tail) LogProb(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	last := len(t.X) - 1
	if x <= t.X[0] {
		return t.LogP[0]
	}
	if x >= t.X[last] {
		return t.LogP[last] + t.Slope*(x-t.X[last])
	}
	i, _ := slices.BinarySearch(t.X, x) // X[i-1] < x <= X[i]
	f := (x - t.X[i-1]) / (t.X[i] - t.X[i-1])
	return t.LogP[i-1] + f*(t.LogP[i]-t.LogP[i-1])
}

// Quantile is the value whose log tail probability is lp: the inverse of
// LogProb on and beyond the points (at or above LogP[0] it is X[0]).
func (t Tail) Quantile(lp float64) float64 {
	last := len(t.X) - 1
	if lp >= t.LogP[0] {
		return t.X[0]
	}
	if lp <= t.LogP[last] {
		return t.X[last] + (lp-t.LogP[last])/t.Slope
	}
	// LogP descends: find the first point at or below lp.
	i, _ := slices.BinarySearchFunc(t.LogP, lp, func(a, b float64) int { return cmp.Compare(b, a) })
	f := (lp - t.LogP[i-1]) / (t.LogP[i] - t.LogP[i-1])
	return t.X[i-1] + f*(t.X[i]-t.X[i-1])
}
