package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

var gateSchema = &features.Schema{Fields: []features.Field{
	{Name: "tx_id", Kind: features.ID},
	{Name: "merchant", Kind: features.Categorical},
	{Name: "channel", Kind: features.Categorical},
	{Name: "amount", Kind: features.Numeric},
	{Name: "event_time", Kind: features.Timestamp, Layout: time.RFC3339},
}, IDField: "tx_id", TimeField: "event_time"}

// rowKind selects what gen produces.
type rowKind int

const (
	normal   rowKind = iota
	campaign         // card testing: tiny payments through an API at one new merchant
	foreign          // another population: other merchants, channels, amounts
	garbage          // noise in every field
)

// amountSD is the spread of log amounts within a merchant.
var amountSD = 0.25

// gen makes n rows in gateSchema's order; a share of them (campaignShare)
// are campaign rows when kind is normal.
func gen(rng *rand.Rand, n int, kind rowKind, campaignShare float64) [][]string {
	t0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	rows := make([][]string, n)
	for i := range rows {
		k := kind
		if k == normal && rng.Float64() < campaignShare {
			k = campaign
		}
		m := rng.IntN(6)
		merchant, channel := fmt.Sprintf("m%d", m), "pos"
		if (m < 3) != (rng.Float64() < 0.98) {
			channel = "web"
		}
		amount := math.Exp(2 + 0.5*float64(m) + amountSD*rng.NormFloat64())
		switch k {
		case campaign:
			merchant, channel, amount = "m-campaign", "api", 1+0.01*float64(rng.IntN(5))
		case foreign:
			merchant = fmt.Sprintf("x%d", m)
			if channel == "pos" {
				channel = "web"
			} else {
				channel = "pos"
			}
			amount = math.Exp(7 + 0.4*rng.NormFloat64())
		case garbage:
			merchant, channel, amount = fmt.Sprintf("g%d", rng.IntN(100000)), fmt.Sprintf("c%d", rng.IntN(30)), rng.Float64()*1e6
		}
		ts := t0.Add(time.Duration(rng.IntN(7*24*3600)) * time.Second)
		rows[i] = []string{fmt.Sprint(i), merchant, channel, fmt.Sprintf("%.2f", amount), ts.Format(time.RFC3339)}
	}
	return rows
}

func fit(t *testing.T, rows [][]string, seed uint64, epochs int) *model.Bundle {
	t.Helper()
	b, err := model.Fit(gateSchema, rows, model.FitOptions{AE: ae.Config{Seed: seed, Epochs: epochs, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gateModels are fitted once for the gate tests.
var gateModels = sync.OnceValues(func() (map[string]*model.Bundle, error) {
	rng := rand.New(rand.NewPCG(7, 7))
	out := map[string]*model.Bundle{}
	for _, m := range []struct {
		name   string
		rows   [][]string
		epochs int
	}{
		{"current", gen(rng, 3000, normal, 0), 20},
		{"weak", gen(rng, 600, normal, 0), 2}, // little data, two epochs
		{"better", gen(rng, 3000, normal, 0), 20},
		{"foreign", gen(rng, 3000, foreign, 0), 20},
		{"garbage", gen(rng, 3000, garbage, 0), 20},
		{"campaign", gen(rng, 3000, normal, 0.08), 20},
	} {
		b, err := model.Fit(gateSchema, m.rows, model.FitOptions{AE: ae.Config{Seed: uint64(len(out) + 1), Epochs: m.epochs, Hidden: 16, Bottleneck: 4}})
		if err != nil {
			return nil, err
		}
		out[m.name] = b
	}
	return out, nil
})

func models(t *testing.T) map[string]*model.Bundle {
	t.Helper()
	m, err := gateModels()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func heldRows(seed uint64, campaignShare float64) [][]string {
	return gen(rand.New(rand.NewPCG(seed, 1)), 1000, normal, campaignShare)
}

func TestGatePromotesABetterCandidate(t *testing.T) {
	m := models(t)
	v := Gate{}.judge(m["better"], m["weak"], "weak", gateSchema.Names(), heldRows(1, 0))
	if !v.Promote || v.Reason != "" {
		t.Fatalf("better candidate refused: %+v", v)
	}
	// Better in the shared space: the newest rows fit its calibration
	// more closely than the weak model's.
	if !(v.ScoreShift < v.CurrentScoreShift) || math.IsNaN(v.CurrentAlertRate) {
		t.Fatalf("measurements: %+v", v)
	}
	// An equally good candidate is promoted too (the newer model wins ties).
	if v := (Gate{}).judge(m["better"], m["current"], "current", gateSchema.Names(), heldRows(2, 0)); !v.Promote {
		t.Fatalf("an equally good candidate refused: %+v", v)
	}
}

func TestGateRejectsAWorseCandidate(t *testing.T) {
	m := models(t)
	for _, name := range []string{"foreign", "garbage"} {
		for _, cur := range []*model.Bundle{m["current"], nil} {
			v := Gate{}.judge(m[name], cur, "current", gateSchema.Names(), heldRows(3, 0))
			if v.Promote || !strings.Contains(v.Reason, "held-back rows") {
				t.Errorf("%s candidate (current model %v): %+v", name, cur != nil, v)
			}
		}
	}
}

// TestGateRefusesACampaignLearnedAsNormal: 8% of the window is a campaign.
// The candidate, trained on it, finds it normal; the current model flags
// it. Promoting would silence those alerts: refused.
func TestGateRefusesACampaignLearnedAsNormal(t *testing.T) {
	m := models(t)
	v := Gate{}.judge(m["campaign"], m["current"], "current", gateSchema.Names(), heldRows(4, 0.08))
	if v.Promote || !strings.Contains(v.Reason, "campaign") {
		t.Fatalf("campaign candidate: %+v", v)
	}
	if v.CurrentAlertRate-v.AlertRate < 0.04 {
		t.Fatalf("the campaign did not shift the alert share: %+v", v)
	}
	// With the check off (--max-alert-shift -1) it would have passed.
	if v := (Gate{MaxAlertShift: -1}).judge(m["campaign"], m["current"], "current", gateSchema.Names(), heldRows(4, 0.08)); !v.Promote {
		t.Fatalf("without the alert-shift check: %+v", v)
	}
}

// TestGateIgnoresScoreUnits: the gate reads each model's scores as
// quantiles of its own calibration, so a candidate whose scores all come out
// 1.56x larger (the IQR example) is judged exactly the same.
func TestGateIgnoresScoreUnits(t *testing.T) {
	m := models(t)
	held := heldRows(5, 0)
	base := Gate{}.judge(m["better"], m["current"], "current", gateSchema.Names(), held)
	scaled := *m["better"]
	mdl := *scaled.Model
	mdl.Norm = make([]float32, len(scaled.Model.Norm))
	const k = 1.56
	for i, n := range scaled.Model.Norm {
		mdl.Norm[i] = n / (k * k) // each field's term sqrt(e/norm) grows by k
	}
	scaled.Model = &mdl
	scaled.Calibration.Values = make([]float64, len(m["better"].Calibration.Values))
	for i, v := range m["better"].Calibration.Values {
		scaled.Calibration.Values[i] = k * v
	}
	got := Gate{}.judge(&scaled, m["current"], "current", gateSchema.Names(), held)
	if got.Promote != base.Promote || math.Abs(got.AlertRate-base.AlertRate) > 0.002 || math.Abs(got.ScoreShift-base.ScoreShift) > 0.002 {
		t.Fatalf("scaled scores judged differently:\n%+v\n%+v", base, got)
	}
}

func TestCalibratedRankAndKS(t *testing.T) {
	c := model.Calibration{Probs: []float64{0, 0.5, 1}, Values: []float64{1, 2, 4}}
	for _, tc := range []struct{ s, want float64 }{{0, 0}, {1, 0}, {1.5, 0.25}, {2, 0.5}, {3, 0.75}, {5, 1}} {
		if got := calibratedRank(c, tc.s); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("rank(%v) = %v, want %v", tc.s, got, tc.want)
		}
	}
	if d := ksUniform([]float64{0.125, 0.375, 0.625, 0.875}); math.Abs(d-0.125) > 1e-12 {
		t.Errorf("KS of evenly spread values: %v", d)
	}
	if d := ksUniform([]float64{0.9, 0.95, 0.99, 1}); d < 0.85 {
		t.Errorf("KS of values bunched at the top: %v", d)
	}
}
