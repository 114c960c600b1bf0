package generator

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/evaluate"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

func TestDeterministicWithFraudRate(t *testing.T) {
	a, b := New(Config{Seed: 3}), New(Config{Seed: 3})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	frauds := map[Pattern]int{}
	for range 40000 {
		x, p := a.Next(now)
		y, q := b.Next(now)
		if x != y || p != q {
			t.Fatal("same seed, different transactions")
		}
		if p != "" {
			frauds[p]++
		}
	}
	total := 0
	for _, p := range []Pattern{CardTesting, AccountTakeover, MerchantCompromise, AmountSpike} {
		if frauds[p] < 20 {
			t.Errorf("%s: only %d", p, frauds[p])
		}
		total += frauds[p]
	}
	if total < 140 || total > 260 {
		t.Errorf("%d frauds in 40,000 (want about 0.5%%)", total)
	}
	var back Transaction
	x, _ := a.Next(now)
	if err := json.Unmarshal(x.JSON(), &back); err != nil || back != x {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}
}

// TestFraudIsLearnable: the DAE trained without labels on generated
// traffic ranks the injected fraud high, which the demo's precision and
// recall depend on.
func TestFraudIsLearnable(t *testing.T) {
	g := New(Config{Seed: 1})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rows := func(n int) ([][]string, []bool, []string) {
		var out [][]string
		var y []bool
		var names []string
		for range n {
			tx, p := g.Next(now)
			var m map[string]any
			json.Unmarshal(tx.JSON(), &m)
			if names == nil {
				for k := range m {
					names = append(names, k)
				}
			}
			r := make([]string, len(names))
			for i, k := range names {
				r[i] = fmt.Sprint(m[k])
			}
			out = append(out, r)
			y = append(y, p != "")
		}
		return out, y, names
	}
	train, _, names := rows(30000)
	s := features.InferSchema(names, train, features.InferOptions{})
	b, err := model.Fit(s, train, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 10}})
	if err != nil {
		t.Fatal(err)
	}
	test, y, names2 := rows(20000)
	test = features.Project(s, names2, test)
	sc := b.NewScorer(1024)
	scores := make([]float64, len(test))
	for from := 0; from < len(test); from += 1024 {
		n := min(1024, len(test)-from)
		for i := range n {
			sc.SetRow(i, test[from+i])
		}
		for i, v := range sc.Score(n) {
			scores[from+i] = float64(v)
		}
	}
	ap := evaluate.AveragePrecision(scores, y)
	t.Logf("AUPRC on generated traffic: %.3f", ap)
	if ap < 0.3 {
		t.Fatalf("AUPRC %.3f: the injected fraud is not separable", ap)
	}
}
