package threshold

import (
	"math"
	"slices"
)

// Risk decides by tail probability: it alerts when a score's probability
// of being exceeded under normal traffic is below Q, from a generalised
// Pareto fit of the scores above a high initial threshold
// (Peaks-Over-Threshold, as in SPOT, Siffer et al., KDD 2017):
//
//	z_q = t + σ/γ · ((q·n/N_t)^(−γ) − 1)      (t − σ·ln(q·n/N_t) when γ ≈ 0)
//
// where t is the Level quantile of the first WarmUp scores, n the scores
// seen, N_t those above t, and (γ, σ) the fit of the excesses over t.
// Alerting scores stay in the fit: SPOT leaves them out, but that
// truncates the tail it estimates, which measured as a feedback loop (γ
// drifting down, three times too many alarms at q = 1e-3). Not safe for
// concurrent use.
type Risk struct {
	Q float64
	// Level places the initial threshold t. Default 0.98.
	Level float64
	// WarmUp is the number of scores before the first fit; nothing alerts
	// until then. Default 10,000.
	WarmUp int
	// MaxPeaks bounds the excesses kept (a ring: the fit follows drift).
	// Default 10,000.
	MaxPeaks int

	warm  []float64
	t     float64
	n     int
	peaks []float64
	next  int
	nt    int
	gamma float64
	sigma float64
	z     float64
}

// NewRisk returns a risk policy with false-alarm probability q.
func NewRisk(q float64) *Risk {
	return &Risk{Q: q, Level: 0.98, WarmUp: 10000, MaxPeaks: 10000, z: math.Inf(1), t: math.Inf(1)}
}

// Decide records score and reports the threshold in force and whether the
// score alerts.
func (r *Risk) Decide(score float64) (threshold float64, alert bool) {
	if score != score {
		return r.z, false
	}
	if r.warm != nil || r.n < r.WarmUp {
		r.warmUp(score)
		return r.z, false
	}
	z := r.z
	r.n++
	if score > r.t {
		r.addPeak(score - r.t)
		r.nt++
		// Refit every 256 peaks: cheap, and current enough.
		if r.nt&255 == 0 {
			r.fit()
		}
	}
	return z, score > z
}

func (r *Risk) warmUp(score float64) {
	if r.warm == nil {
		r.warm = make([]float64, 0, r.WarmUp)
	}
	r.warm = append(r.warm, score)
	r.n++
	if len(r.warm) < r.WarmUp {
		return
	}
	s := slices.Clone(r.warm)
	slices.Sort(s)
	r.t = s[int(r.Level*float64(len(s)-1))]
	for _, x := range r.warm {
		if x > r.t {
			r.addPeak(x - r.t)
			r.nt++
		}
	}
	r.warm = nil
	r.fit()
}

func (r *Risk) addPeak(y float64) {
	if len(r.peaks) < r.MaxPeaks {
		r.peaks = append(r.peaks, y)
		return
	}
	r.peaks[r.next] = y
	r.next = (r.next + 1) % r.MaxPeaks
}

// fit estimates (γ, σ) by the method of moments on the excesses, which is
// closed-form and stable for the light-to-moderate tails of anomaly scores
// (γ < 1/2), and recomputes z_q.
func (r *Risk) fit() {
	if len(r.peaks) < 10 {
		return
	}
	var m, v float64
	for _, y := range r.peaks {
		m += y
	}
	m /= float64(len(r.peaks))
	for _, y := range r.peaks {
		v += (y - m) * (y - m)
	}
	v /= float64(len(r.peaks) - 1)
	if !(v > 0) {
		return
	}
	r.gamma = 0.5 * (1 - m*m/v)
	r.sigma = 0.5 * m * (m*m/v + 1)
	// The share of scores above t, from the counts since start.
	ratio := r.Q * float64(r.n) / float64(r.nt)
	if math.Abs(r.gamma) < 1e-6 {
		r.z = r.t - r.sigma*math.Log(ratio)
	} else {
		r.z = r.t + r.sigma/r.gamma*(math.Pow(ratio, -r.gamma)-1)
	}
}

// Threshold returns the current z_q (+Inf during warm-up).
func (r *Risk) Threshold() float64 { return r.z }

// Fixed alerts above a static score, for operators who want one.
type Fixed struct{ Score float64 }

// Decide implements the policy.
func (f Fixed) Decide(score float64) (float64, bool) { return f.Score, score > f.Score }
