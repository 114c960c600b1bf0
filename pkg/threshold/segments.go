package threshold

import (
	"math"
	"strings"
)

// Seed warms a budget up from a summary of the new model's validation
// scores (probabilities and the scores at them, as in a model bundle's
// calibration): the window is emptied and refilled with weight scores
// spread over those quantiles, so that the first transactions after a
// model swap are decided on the new model's scale.
func (b *Budget) Seed(probs, values []float64, weight int) {
	b.w = NewWindow(b.w.cfg)
	if len(probs) < 2 || len(probs) != len(values) || weight <= 0 {
		b.thr = inf
		return
	}
	for k := 1; k < len(probs); k++ {
		// Mass between consecutive quantiles goes to their geometric
		// middle (scores are positive and roughly log-normal in the tail);
		// the upper end alone biased the threshold up (0.38% instead of 0.5%).
		n := uint64((probs[k] - probs[k-1]) * float64(weight))
		v := values[k]
		if values[k-1] > 0 && v > 0 {
			v = math.Sqrt(values[k-1] * v)
		}
		if n > 0 {
			b.w.ring[b.w.cur].AddN(v, n)
			b.w.merged.AddN(v, n)
		}
	}
	b.since = 0
	b.thr = b.w.merged.Quantile(1 - b.Rate)
}

var inf = math.Inf(1)

// Segmented keeps a budget per segment (a key built from chosen fields,
// such as "grocery|FR|online"). A segment decides with its own threshold
// once it has seen MinCount scores; before that it backs off to its parent
// (the key without its last "|part") and then to the global budget, so a
// rare segment does not alert on noise. Not safe for concurrent use.
type Segmented struct {
	Rate     float64
	MinCount uint64
	cfg      WindowConfig
	global   *Budget
	segs     map[string]*Budget
	// MaxSegments bounds memory and metric cardinality; later segments
	// share the global budget. Default 1,000.
	MaxSegments int
}

// NewSegmented returns a segmented budget policy.
func NewSegmented(rate float64, minCount uint64, cfg WindowConfig) *Segmented {
	return &Segmented{Rate: rate, MinCount: minCount, cfg: cfg, global: NewBudget(rate, cfg), segs: map[string]*Budget{}, MaxSegments: 1000}
}

// Decide records score in its segment, its ancestors and the global
// budget, and decides with the most specific one that has enough history.
// It returns the segment whose threshold was used ("" for global).
func (s *Segmented) Decide(segment string, score float64) (threshold float64, alert bool, used string) {
	gthr, galert := s.global.Decide(score)
	thr, alert, used := gthr, galert, ""
	depth := -1
	for key := segment; key != ""; key = parent(key) {
		b := s.segs[key]
		if b == nil {
			if len(s.segs) >= s.MaxSegments {
				continue
			}
			b = NewBudget(s.Rate, s.cfg)
			s.segs[key] = b
		}
		t, a := b.Decide(score)
		if d := strings.Count(key, "|"); d > depth && b.w.merged.Count() >= s.MinCount && !math.IsInf(t, 0) {
			thr, alert, used, depth = t, a, key, d
		}
	}
	return thr, alert, used
}

// Global returns the budget every segment backs off to.
func (s *Segmented) Global() *Budget { return s.global }

func parent(key string) string {
	if i := strings.LastIndexByte(key, '|'); i >= 0 {
		return key[:i]
	}
	return ""
}
