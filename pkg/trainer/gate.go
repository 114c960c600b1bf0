package trainer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// Gate says when a candidate may replace the current model. Both models
// score the same held-back rows, and each score is read as a quantile of
// that model's own calibration (its validation scores): a model's loss and
// score units depend on its encoder (an IQR 20% narrower makes the same
// absolute error 1.56× larger), but the share of rows above its own p99.5,
// or where a row falls in its own score distribution, does not. A row that
// is as normal to a model as its validation rows lands uniformly in [0, 1].
type Gate struct {
	// Budget is the alert share the scorers aim at: a model "alerts" on a
	// held-back row above its own calibrated (1-Budget) quantile. Default
	// 0.005, the scorers' default budget.
	Budget float64
	// MaxAlertShift bounds how far promoting may move the alert share on
	// the held-back rows: the candidate's share against the current
	// model's (without one, against Budget). Default 0.01 (one percentage
	// point); negative turns the check off. A small sample gets three
	// standard errors of slack on top.
	MaxAlertShift float64
	// MaxScoreShift bounds how much worse than the current model the
	// candidate may describe the held-back rows: the Kolmogorov-Smirnov
	// distance of its calibrated quantiles from uniform, against the
	// current model's. Default 0.1; negative turns the check off. A small
	// sample gets the 5% critical value (1.36/√n) of slack on top.
	MaxScoreShift float64
}

func (g *Gate) defaults() {
	if g.Budget <= 0 || g.Budget >= 1 {
		g.Budget = 0.005
	}
	if g.MaxAlertShift == 0 {
		g.MaxAlertShift = 0.01
	}
	if g.MaxScoreShift == 0 {
		g.MaxScoreShift = 0.1
	}
}

// Verdict is the gate's measurement of a candidate on the held-back rows
// and its decision.
type Verdict struct {
	Rows int // held-back rows both models scored
	// Alert shares above each model's own (1-Budget) quantile; Current is
	// NaN without a current model.
	AlertRate, CurrentAlertRate float64
	// KS distance of each model's calibrated quantiles from uniform
	// (0: the rows look like the model's validation rows).
	ScoreShift, CurrentScoreShift float64
	// Raw held-back losses, each in its own model's units: recorded, not
	// compared.
	Loss, CurrentLoss float64
	Promote           bool
	Reason            string // why not, when not
}

// evaluation is one model's view of the held-back rows.
type evaluation struct {
	alert, ks, loss float64
}

// evaluate scores held (rows named by names) with b: the share above its
// calibrated (1-budget) quantile, the KS distance of the scores' calibrated
// quantiles from uniform, and its mean loss. Non-finite scores or a broken
// calibration are errors (the smoke test).
func evaluate(b *model.Bundle, names []string, held [][]string, budget float64) (evaluation, error) {
	cal := b.Calibration
	thr := cal.Quantile(1 - budget)
	if q := cal.Quantile(0.995); math.IsNaN(q) || math.IsInf(q, 0) || q <= 0 || math.IsNaN(thr) {
		return evaluation{}, fmt.Errorf("calibration p99.5 is %v", q)
	}
	rows := features.Project(&b.Encoder.Schema, names, held)
	sc := b.NewScorer(1024)
	u := make([]float64, 0, len(rows))
	above := 0
	for from := 0; from < len(rows); from += 1024 {
		n := min(1024, len(rows)-from)
		for i := range n {
			sc.SetRow(i, rows[from+i])
		}
		for _, s := range sc.Score(n) {
			f := float64(s)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return evaluation{}, errors.New("non-finite score on held-back rows")
			}
			if f > thr {
				above++
			}
			u = append(u, calibratedRank(cal, f))
		}
	}
	if len(u) == 0 {
		return evaluation{}, errors.New("no held-back rows")
	}
	slices.Sort(u)
	return evaluation{alert: float64(above) / float64(len(u)), ks: ksUniform(u), loss: b.Loss(rows)}, nil
}

// calibratedRank is the share of a model's validation scores below s,
// interpolated between the calibration's stored quantiles.
func calibratedRank(c model.Calibration, s float64) float64 {
	v, p := c.Values, c.Probs
	i := sort.SearchFloat64s(v, s) // first stored value >= s
	switch {
	case i == 0:
		return p[0]
	case i == len(v):
		return 1
	case v[i] == v[i-1]:
		return p[i]
	}
	f := (s - v[i-1]) / (v[i] - v[i-1])
	return p[i-1] + f*(p[i]-p[i-1])
}

// ksUniform is the Kolmogorov-Smirnov distance between sorted values in
// [0, 1] and the uniform distribution.
func ksUniform(u []float64) float64 {
	n := float64(len(u))
	d := 0.0
	for i, x := range u {
		d = max(d, float64(i+1)/n-x, x-float64(i)/n)
	}
	return d
}

// judge compares a candidate with the current model (nil: none) on the same
// held-back rows, named by names. The candidate is refused when it fails
// the smoke test, when promoting it would move the alert share on those
// rows by more than MaxAlertShift (a campaign in the window that the
// candidate learned as normal while the current model flags it; a model
// from another distribution), or when it describes the rows worse than the
// current model by more than MaxScoreShift.
func (g Gate) judge(cand, cur *model.Bundle, curName string, names []string, held [][]string) Verdict {
	g.defaults()
	v := Verdict{Rows: len(held), CurrentAlertRate: math.NaN(), CurrentScoreShift: math.NaN(), CurrentLoss: math.NaN(), AlertRate: math.NaN(), ScoreShift: math.NaN(), Loss: math.NaN()}
	c, err := evaluate(cand, names, held, g.Budget)
	if err != nil {
		v.Reason = "smoke test: " + err.Error()
		return v
	}
	v.AlertRate, v.ScoreShift, v.Loss = c.alert, c.ks, c.loss
	refAlert, refKS, ref := g.Budget, 0.0, "the budget, without a current model"
	if cur != nil {
		if i, err := evaluate(cur, names, held, g.Budget); err == nil {
			v.CurrentAlertRate, v.CurrentScoreShift, v.CurrentLoss = i.alert, i.ks, i.loss
			refAlert, refKS, ref = i.alert, i.ks, curName
		}
	}
	n := float64(len(held))
	if g.MaxAlertShift >= 0 {
		se := math.Sqrt((c.alert*(1-c.alert) + refAlert*(1-refAlert)) / n)
		if d := c.alert - refAlert; math.Abs(d) > g.MaxAlertShift+3*se {
			v.Reason = fmt.Sprintf("alert share on %d held-back rows would move from %.2f%% (%s) to %.2f%% (limit ±%.2f points + %.2f for sampling): ",
				len(held), 100*refAlert, ref, 100*c.alert, 100*g.MaxAlertShift, 300*se)
			if d < 0 {
				v.Reason += "the candidate finds normal what the current model flags (a campaign in the window?); promote it by hand if the change is genuine"
			} else {
				v.Reason += "the candidate's calibration does not describe the newest rows"
			}
			return v
		}
	}
	if g.MaxScoreShift >= 0 {
		if slack := 1.36 / math.Sqrt(n); c.ks > refKS+g.MaxScoreShift+slack {
			v.Reason = fmt.Sprintf("scores on %d held-back rows fit the candidate's calibration at KS distance %.3f", len(held), c.ks)
			if cur != nil {
				v.Reason += fmt.Sprintf(", against %.3f for %s", refKS, ref)
			}
			v.Reason += fmt.Sprintf(" (limit +%.2f, + %.3f for sampling): the candidate does not describe the newest rows", g.MaxScoreShift, slack)
			return v
		}
	}
	v.Promote = true
	return v
}
