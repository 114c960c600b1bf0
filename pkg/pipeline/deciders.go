package pipeline

import (
	"strconv"

	"github.com/fraudstream/fraudstream/pkg/fleet"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/threshold"
)

// Decider turns a score into a decision. Each Model carries its own, so a
// batch decides with the decider of the model it started with. A decider
// is called from its pipeline's goroutine only.
type Decider interface {
	// Decide decides score for a record of segment ("" when segments are
	// off) and names the segment whose threshold was used.
	Decide(score float32, segment string) (threshold float32, alert bool, used string)
	// Policy names the rule, for outputs ("calibrated-p99.5", "budget", …).
	Policy() string
}

const globalSegment = "global"

// seedWeight is how many scores a model's calibration summary counts for
// when it warm-starts a budget.
const seedWeight = 20000

// global adapts a policy with one threshold for all records.
type global struct {
	decide func(float64) (float64, bool)
	policy string
}

func (g global) Decide(score float32, _ string) (float32, bool, string) {
	t, a := g.decide(float64(score))
	return float32(t), a, globalSegment
}

func (g global) Policy() string { return g.policy }

func percent(rate float64) string { return strconv.FormatFloat(rate*100, 'g', 4, 64) + "%" }

// Calibrated alerts above a fixed quantile of the model's validation scores.
type Calibrated struct {
	Threshold float32
	Quantile  float64
}

// NewCalibrated reads the threshold from a bundle's calibration summary.
func NewCalibrated(b *model.Bundle, quantile float64) *Calibrated {
	return &Calibrated{Threshold: float32(b.Calibration.Quantile(quantile)), Quantile: quantile}
}

// Decide implements Decider.
func (c *Calibrated) Decide(score float32, _ string) (float32, bool, string) {
	return c.Threshold, score >= c.Threshold, globalSegment
}

// Policy implements Decider.
func (c *Calibrated) Policy() string {
	return "calibrated-p" + strconv.FormatFloat(c.Quantile*100, 'g', 4, 64)
}

// budgetAlpha is the relative accuracy of the budget's window sketches:
// a bucket is above the threshold or below it whole, so a score tail that
// crowds a bucket around the budget's quantile (a plateau, as when the
// strangest records share one saturated field) alerted all of it or none
// at the default 1% (0.5-2.3x the budget); at 0.1% the buckets are finer
// than such plateaus. Each window sketch then holds up to 4,096 buckets
// (32 KB, eleven to a window); segment budgets keep the default.
const budgetAlpha = 0.001

// seededBudget is a budget warm-started from b's calibration, so that a
// model swap does not jump the alert rate.
func seededBudget(b *model.Bundle, rate float64) *threshold.Budget {
	bd := threshold.NewBudget(rate, threshold.WindowConfig{Alpha: budgetAlpha})
	bd.Seed(b.Calibration.Probs, b.Calibration.Values, seedWeight)
	return bd
}

// NewBudgeted alerts the top rate of this worker's recent traffic
// (threshold.Budget), warm-started from b's calibration.
func NewBudgeted(b *model.Bundle, rate float64) Decider {
	return global{decide: seededBudget(b, rate).Decide, policy: "budget-" + percent(rate)}
}

// NewFleetBudgeted attaches a budget for the model (bundle b, identity
// digest) to the exchange, warm-started from b's calibration, and returns a
// decider bound to that budget: the fleet's top rate of traffic on the same
// model. The previous model's decider keeps its own budget.
func NewFleetBudgeted(x *fleet.Exchange, digest string, b *model.Bundle, rate float64) Decider {
	fb := x.Attach(digest, seededBudget(b, rate))
	return global{decide: fb.Decide, policy: "fleet-budget-" + percent(rate)}
}

// Risky alerts when a score's estimated exceedance probability under
// normal traffic is below q (threshold.Risk, Peaks-Over-Threshold).
type Risky struct {
	r *threshold.Risk
	// The decider being replaced and the map of its scores onto this
	// model's scale, until the first Decide carries its state over.
	from *Risky
	f    func(float64) float64
}

// NewRisky returns a risk decider for b. A fresh one learns its tail from
// the first scores and alerts on nothing until then; when prev (the model
// being replaced) decided by risk too, its tail is carried to b's scale
// through the two models' calibrations (threshold.QuantileMap) and the
// decider alerts from its first score. The carry happens at the first
// Decide, on the pipeline's goroutine, the only one that uses prev's
// decider, so it never races with a batch still deciding with prev.
func NewRisky(prev *Model, b *model.Bundle, q float64) *Risky {
	if p, ok := decider[*Risky](prev); ok && p.q() == q {
		if f := carry(prev.Bundle, b); f != nil {
			return &Risky{from: p, f: f}
		}
	}
	return &Risky{r: threshold.NewRisk(q)}
}

func (d *Risky) q() float64 {
	if d.r == nil {
		return d.from.q()
	}
	return d.r.Q
}

func (d *Risky) init() {
	if d.r == nil {
		d.from.init()
		d.r, d.from, d.f = d.from.r.Remap(d.f), nil, nil
	}
}

// Decide implements Decider.
func (d *Risky) Decide(score float32, _ string) (float32, bool, string) {
	d.init()
	t, a := d.r.Decide(float64(score))
	return float32(t), a, globalSegment
}

// Policy implements Decider.
func (d *Risky) Policy() string { return "risk-q" + strconv.FormatFloat(d.q(), 'g', 3, 64) }

// Segmented keeps a budget per segment (threshold.Segmented): a segment with
// too little history backs off to its parent and then to the global budget.
// Segment budgets are per worker; only a global budget is shared by the
// fleet.
type Segmented struct {
	s        *threshold.Segmented
	rate     float64
	minCount uint64
	from     *Segmented // carried over at the first Decide, as for Risky
	f        func(float64) float64
}

// NewSegmented returns a segmented budget decider for b. When prev (the
// model being replaced) decided by segments too, every segment's window is
// carried to b's scale through the two models' calibrations, so segments
// that had earned their own threshold keep it; otherwise the global budget
// is warm-started from b's calibration and segments start empty. As for
// NewRisky, the carry happens at the first Decide.
func NewSegmented(prev *Model, b *model.Bundle, rate float64, minCount uint64) *Segmented {
	if p, ok := decider[*Segmented](prev); ok && p.rate == rate && p.minCount == minCount {
		if f := carry(prev.Bundle, b); f != nil {
			return &Segmented{rate: rate, minCount: minCount, from: p, f: f}
		}
	}
	s := threshold.NewSegmented(rate, minCount, threshold.WindowConfig{})
	s.Global().Seed(b.Calibration.Probs, b.Calibration.Values, seedWeight)
	return &Segmented{s: s, rate: rate, minCount: minCount}
}

func (d *Segmented) init() {
	if d.s == nil {
		d.from.init()
		d.s, d.from, d.f = d.from.s.Remap(d.f), nil, nil
	}
}

// Decide implements Decider.
func (d *Segmented) Decide(score float32, segment string) (float32, bool, string) {
	d.init()
	t, a, used := d.s.Decide(segment, float64(score))
	if used == "" {
		used = globalSegment
	}
	return float32(t), a, used
}

// Policy implements Decider.
func (d *Segmented) Policy() string { return "segmented-budget-" + percent(d.rate) }

// NewFixed alerts above a static score (threshold.Fixed).
func NewFixed(score float64) Decider {
	return global{decide: threshold.Fixed{Score: score}.Decide, policy: "fixed"}
}

// decider returns prev's decider as a T.
func decider[T Decider](prev *Model) (T, bool) {
	var zero T
	if prev == nil || prev.Bundle == nil {
		return zero, false
	}
	d, ok := prev.Decider.(T)
	return d, ok
}

// carry maps scores of bundle from onto the scale of bundle to.
func carry(from, to *model.Bundle) func(float64) float64 {
	return threshold.QuantileMap(from.Calibration.Probs, from.Calibration.Values, to.Calibration.Probs, to.Calibration.Values)
}
