package review

import (
	"fmt"
	"math/rand/v2"
	"testing"
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
