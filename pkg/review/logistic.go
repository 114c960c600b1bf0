package review

import "math"

// Logistic is a fitted logistic regression on standardised inputs: the
// re-ranker's model of P(fraud | a case's features). It serialises as
// JSON so the review service can store it beside the model it was fitted
// for.
type Logistic struct {
	Mean []float64 `json:"mean"`
	SD   []float64 `json:"sd"`
	W    []float64 `json:"w"`
	B    float64   `json:"b"`
}

// Prob is the fitted probability of fraud for inputs x (len(x) == len(W);
// extra inputs are ignored, missing ones count as the training mean).
func (l *Logistic) Prob(x []float64) float64 {
	z := l.B
	for j := range min(len(x), len(l.W)) {
		z += l.W[j] * (x[j] - l.Mean[j]) / l.SD[j]
	}
	return 1 / (1 + math.Exp(-z))
}

// MinPerClass is how many labels of each class FitLogistic needs.
const MinPerClass = 5

// FitLogistic fits an L2-regularised logistic regression by gradient
// descent, the two classes weighted equally (fraud is rare; unweighted, a
// handful of frauds would barely move it). ok is false, and nothing is
// fitted, with fewer than MinPerClass examples of either class.
func FitLogistic(X [][]float64, y []bool) (l *Logistic, ok bool) {
	pos := 0
	for _, v := range y {
		if v {
			pos++
		}
	}
	if pos < MinPerClass || len(y)-pos < MinPerClass {
		return nil, false
	}
	d := len(X[0])
	l = &Logistic{Mean: make([]float64, d), SD: make([]float64, d), W: make([]float64, d)}
	for _, x := range X {
		for j, v := range x {
			l.Mean[j] += v / float64(len(X))
		}
	}
	for _, x := range X {
		for j, v := range x {
			l.SD[j] += (v - l.Mean[j]) * (v - l.Mean[j]) / float64(len(X))
		}
	}
	for j := range l.SD {
		l.SD[j] = math.Max(math.Sqrt(l.SD[j]), 1e-6)
	}
	wp, wn := 0.5/float64(pos), 0.5/float64(len(y)-pos)
	const lr, lambda, iters = 0.5, 1e-3, 300
	g := make([]float64, d)
	for range iters {
		clear(g)
		gb := 0.0
		for i, x := range X {
			p := l.Prob(x)
			t, w := 0.0, wn
			if y[i] {
				t, w = 1, wp
			}
			e := w * (p - t)
			for j, v := range x {
				g[j] += e * (v - l.Mean[j]) / l.SD[j]
			}
			gb += e
		}
		for j := range l.W {
			l.W[j] -= lr * (g[j] + lambda*l.W[j])
		}
		l.B -= lr * gb
	}
	return l, true
}
