package review

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
)

// blobs makes n cases around each centre, the scores of blob b falling
// from top[b] one by one.
func blobs(rng *rand.Rand, centres [][]float32, n []int, top []float64) []*Case {
	var cs []*Case
	for b, c := range centres {
		for i := range n[b] {
			e := make([]float32, len(c))
			for j := range c {
				e[j] = c[j] + 0.05*float32(rng.NormFloat64())
			}
			cs = append(cs, &Case{ID: fmt.Sprintf("%c%03d", 'A'+b, i), Score: top[b] - float64(i), Embedding: e})
		}
	}
	rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	return cs
}

// TestOrderCoversTheKinds: three kinds of strangeness, one of which holds
// every one of the 50 highest scores. In score order the first 20 cases
// are all of that kind; in review order the first 5 cover all three, and
// the strangest case still comes first.
func TestOrderCoversTheKinds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cs := blobs(rng, [][]float32{{0, 0, 0, 0}, {3, 0, 0, 0}, {0, 3, 3, 0}}, []int{50, 30, 10}, []float64{100, 40, 30})
	var k Clusters
	for _, c := range cs {
		k.Assign(c)
	}
	k.Flush()
	if k.Len() != 3 {
		t.Fatalf("%d clusters, want 3 (radius %.3f)", k.Len(), k.Radius)
	}
	kinds := func(order []*Case, n int) map[byte]bool {
		m := map[byte]bool{}
		for _, c := range order[:n] {
			m[c.ID[0]] = true
		}
		return m
	}
	plain := Order(cs, 1)
	if m := kinds(plain, 20); len(m) != 1 || !m['A'] {
		t.Fatalf("score order's first 20 cover %v", m)
	}
	order := Order(cs, 0)
	if m := kinds(order, 5); len(m) != 3 {
		t.Errorf("review order's first 5 cover %v: %v", m, ids(order[:5]))
	}
	if order[0].ID != "A000" || len(order) != len(cs) {
		t.Errorf("first %s, %d of %d cases", order[0].ID, len(order), len(cs))
	}
	seen := map[string]bool{}
	for _, c := range order {
		if seen[c.ID] {
			t.Fatalf("%s placed twice", c.ID)
		}
		seen[c.ID] = true
	}
	// Within a cluster, cases keep their score order.
	last := map[int]float64{}
	for _, c := range order {
		if s, ok := last[c.Cluster]; ok && c.Score > s {
			t.Fatalf("%s (score %v) after a lower-scoring case of its cluster", c.ID, c.Score)
		}
		last[c.Cluster] = c.Score
	}
}

// TestClustersAreBoundedAndDeterministic: at most Max clusters however
// spread the cases, and the same input gives the same assignment.
func TestClustersAreBoundedAndDeterministic(t *testing.T) {
	assign := func() []int {
		rng := rand.New(rand.NewPCG(3, 4))
		k := Clusters{Max: 5, Radius: 0.01}
		var out []int
		for range 500 {
			c := &Case{Embedding: []float32{float32(rng.NormFloat64()), float32(rng.NormFloat64())}}
			k.Assign(c)
			out = append(out, c.Cluster)
		}
		if k.Len() != 5 {
			t.Fatalf("%d clusters with Max 5", k.Len())
		}
		return out
	}
	a, b := assign(), assign()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("case %d: cluster %d, then %d", i, a[i], b[i])
		}
	}
}

func ids(cs []*Case) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// simData is a small labelled stream: 20 days of 200 transactions, amounts
// around 50 for 40 cards at 20 terminals; 2% are frauds with amounts ten
// times larger, tagged with a pattern.
func simData() ([]string, [][]string) {
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"tx_id", "event_time", "card_id", "terminal_id", "amount", "scenario", "label"}
	var rows [][]string
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := range 20 {
		for k := range 200 {
			at := start.Add(time.Duration(d)*24*time.Hour + time.Duration(k)*7*time.Minute)
			amount, label, scen := 50*math.Exp(0.3*rng.NormFloat64()), "0", "0"
			if rng.IntN(50) == 0 {
				amount, label, scen = amount*10, "1", fmt.Sprint(1+rng.IntN(2))
			}
			rows = append(rows, []string{fmt.Sprintf("t%d-%d", d, k), at.Format(time.RFC3339), fmt.Sprintf("c%d", rng.IntN(40)),
				fmt.Sprintf("m%d", rng.IntN(20)), fmt.Sprintf("%.2f", amount), scen, label})
		}
	}
	return names, rows
}

// TestSimulateUsesLabelsOnlyOnceKnown: each simulated day reviews its
// quota; the learning run re-ranks only from the first day on which
// labels exist, a label delay after the first reviews (no label is used
// before it is known); the amount frauds are found by both runs.
func TestSimulateUsesLabelsOnlyOnceKnown(t *testing.T) {
	names, rows := simData()
	for _, learn := range []bool{false, true} {
		res, err := Simulate(SimConfig{Names: names, Rows: rows, Label: "label", Pattern: "scenario", ReviewsPerDay: 10,
			LabelDelay: 3 * 24 * time.Hour, TrainDays: 5, Learn: learn, AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Days) != 15 || res.Reviews != 150 {
			t.Fatalf("learn %v: %d days, %d reviews", learn, len(res.Days), res.Reviews)
		}
		firstReranked := -1
		for k, d := range res.Days {
			if d.Reviews != 10 {
				t.Errorf("%s: %d reviews", d.Day, d.Reviews)
			}
			if d.Reranked && firstReranked < 0 {
				firstReranked = k
			}
		}
		switch {
		case !learn && firstReranked >= 0:
			t.Error("the score-only run re-ranked")
		case learn && firstReranked < 3:
			t.Errorf("re-ranked on day %d, before any label was known (delay 3 days)", firstReranked)
		case learn && firstReranked < 0:
			t.Error("never re-ranked")
		}
		// 2% of 3,000 scored transactions are frauds with amounts x10: most are found.
		if res.Frauds < 40 || res.PatternsFirst100 != 2 || res.ByPattern["1"]+res.ByPattern["2"] != res.Frauds {
			t.Errorf("learn %v: %d frauds found, patterns %d, by pattern %v", learn, res.Frauds, res.PatternsFirst100, res.ByPattern)
		}
	}
}

func TestInterleaveMatchesOrder(t *testing.T) {
	// The same cases through Order (whole queue) and Interleave (sorted
	// per-cluster lists) give the same review order.
	rng := rand.New(rand.NewPCG(5, 6))
	var cases []*Case
	lists := make([][]Ranked, 4)
	for i := range 60 {
		c := &Case{ID: fmt.Sprintf("c%02d", i), Score: rng.Float64() * 10, Cluster: rng.IntN(4)}
		cases = append(cases, c)
		lists[c.Cluster] = append(lists[c.Cluster], Ranked{ID: c.ID, Priority: c.Score, Cluster: c.Cluster})
	}
	for _, l := range lists {
		slices.SortFunc(l, func(a, b Ranked) int { return cmp.Compare(b.Priority, a.Priority) })
	}
	want := Order(cases, 0)
	got := Interleave(lists, 0, 25)
	if len(got) != 25 {
		t.Fatalf("%d cases", len(got))
	}
	for k := range got {
		if got[k].ID != want[k].ID {
			t.Fatalf("position %d: %s, Order says %s", k, got[k].ID, want[k].ID)
		}
	}
	if all := Interleave(lists, 0, 1000); len(all) != 60 {
		t.Fatalf("asking for more than queued: %d cases", len(all))
	}
}
