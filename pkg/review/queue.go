// Package review orders alerts for analysts: the most suspicious first,
// but interleaved across kinds of strangeness, so the first cases of a
// day cover the distinct patterns instead of one pattern a hundred times.
// Kinds are clusters of the autoencoder's embeddings, found incrementally.
// It does no I/O; the review service keeps its state.
package review

import (
	"cmp"
	"math"
	"slices"
)

// Case is one alert waiting for review.
type Case struct {
	ID string
	// Score is the detector's score (higher: stranger).
	Score float64
	// Embedding is the autoencoder's bottleneck for the transaction.
	Embedding []float32
	// Cluster is set by Clusters.Assign.
	Cluster int
	// Ref is the caller's reference to the case's transaction (a row).
	Ref int
}

// Clusters groups embeddings incrementally ("leader" clustering with a
// radius learned from the data): a case joins the nearest cluster when it
// is within Radius of its centre, else starts a new one, up to Max; the
// centre is the running mean of its members. It is deterministic for a
// given order of cases.
type Clusters struct {
	// Max bounds the clusters; beyond it a case joins the nearest. Default 32.
	Max int
	// Radius: the distance within which a case joins a cluster. Zero: set
	// from the first 64 cases (half the median distance between two of
	// their embeddings), so it suits any embedding scale.
	Radius  float64
	centres [][]float64
	sizes   []int
	warm    [][]float32
	pending []*Case
}

// warmCases is how many cases Radius is learned from when it is not set.
const warmCases = 64

// Assign sets c.Cluster. Until Radius is known, cases wait in the warm-up
// set and are assigned together once it fills (Flush assigns them early).
func (k *Clusters) Assign(c *Case) {
	if k.Max <= 0 {
		k.Max = 32
	}
	if k.Radius == 0 {
		k.warm = append(k.warm, c.Embedding)
		k.pending = append(k.pending, c)
		c.Cluster = -1
		if len(k.warm) >= warmCases {
			k.Flush()
		}
		return
	}
	c.Cluster = k.assign(c.Embedding)
}

// Flush learns Radius from the cases seen so far, if it is not set, and
// assigns the waiting cases.
func (k *Clusters) Flush() {
	if k.Radius == 0 {
		k.Radius = learnRadius(k.warm)
	}
	for _, c := range k.pending {
		c.Cluster = k.assign(c.Embedding)
	}
	k.warm, k.pending = nil, nil
}

// Len is the number of clusters.
func (k *Clusters) Len() int { return len(k.centres) }

func (k *Clusters) assign(e []float32) int {
	best, bd := -1, math.Inf(1)
	for i, c := range k.centres {
		if d := dist(c, e); d < bd {
			best, bd = i, d
		}
	}
	if best < 0 || (bd > k.Radius && len(k.centres) < k.Max) {
		c := make([]float64, len(e))
		for i, v := range e {
			c[i] = float64(v)
		}
		k.centres, k.sizes = append(k.centres, c), append(k.sizes, 1)
		return len(k.centres) - 1
	}
	k.sizes[best]++
	w := 1 / float64(k.sizes[best])
	for i, v := range e {
		k.centres[best][i] += w * (float64(v) - k.centres[best][i])
	}
	return best
}

func dist(c []float64, e []float32) float64 {
	var s float64
	for i, v := range e {
		d := float64(v) - c[i]
		s += d * d
	}
	return math.Sqrt(s)
}

// learnRadius is half the median distance between two of es: with several
// kinds among them most pairs are of different kinds, so the radius falls
// between the within-kind and the between-kind distances; with one kind it
// splits it into a few (1 when there are fewer than two, or they coincide).
func learnRadius(es [][]float32) float64 {
	if len(es) < 2 {
		return 1
	}
	var ds []float64
	for i, a := range es {
		c := make([]float64, len(a))
		for j, v := range a {
			c[j] = float64(v)
		}
		for _, b := range es[i+1:] {
			ds = append(ds, dist(c, b))
		}
	}
	slices.Sort(ds)
	r := ds[len(ds)/2] / 2
	if !(r > 0) {
		return 1
	}
	return r
}

// DefaultDiscount is Order's default: each case a cluster has already
// placed halves the weight of its next one.
const DefaultDiscount = 0.5

// Order returns cases in review order. It repeatedly takes the case with
// the highest score × discount^k, where k is how many cases of its cluster
// are already placed: the strangest case first, and a cluster's later
// cases give way to other clusters' best ones, so a run of one pattern
// does not fill the queue. Discount 1 is plain score order; 0 selects
// DefaultDiscount. Scores are expected non-negative (the DAE's are).
// Cases must have been assigned (Cluster ≥ 0; unassigned ones, -1, form a
// cluster of their own). Ties break by ID, so the order is deterministic.
func Order(cases []*Case, discount float64) []*Case {
	if discount <= 0 {
		discount = DefaultDiscount
	}
	by := map[int][]*Case{}
	for _, c := range cases {
		by[c.Cluster] = append(by[c.Cluster], c)
	}
	type group struct {
		cs     []*Case
		weight float64 // discount^placed
	}
	groups := make([]*group, 0, len(by))
	for _, cs := range by {
		slices.SortFunc(cs, higher)
		groups = append(groups, &group{cs, 1})
	}
	out := make([]*Case, 0, len(cases))
	for len(out) < len(cases) {
		var best *group
		for _, g := range groups {
			if len(g.cs) == 0 {
				continue
			}
			if best == nil {
				best = g
				continue
			}
			a, b := g.cs[0].Score*g.weight, best.cs[0].Score*best.weight
			if a > b || (a == b && g.cs[0].ID < best.cs[0].ID) {
				best = g
			}
		}
		out = append(out, best.cs[0])
		best.cs = best.cs[1:]
		best.weight *= discount
	}
	return out
}

// higher orders cases by score, highest first, then by ID.
func higher(a, b *Case) int {
	if c := cmp.Compare(b.Score, a.Score); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// Ranked is a queued case's place in its cluster's list.
type Ranked struct {
	ID       string
	Priority float64
	Cluster  int
}

// Interleave merges per-cluster lists, each sorted highest priority first,
// into the first n cases of review order with the same rule as Order
// (priority × discount^k, k = cases of the cluster already placed). The
// review service keeps one sorted list per cluster, so the page needs
// only each list's head, not the whole queue.
func Interleave(lists [][]Ranked, discount float64, n int) []Ranked {
	if discount <= 0 {
		discount = DefaultDiscount
	}
	pos := make([]int, len(lists))
	weight := make([]float64, len(lists))
	for i := range weight {
		weight[i] = 1
	}
	var out []Ranked
	for len(out) < n {
		best := -1
		var bv float64
		for i, l := range lists {
			if pos[i] >= len(l) {
				continue
			}
			v := l[pos[i]].Priority * weight[i]
			if best < 0 || v > bv || (v == bv && l[pos[i]].ID < lists[best][pos[best]].ID) {
				best, bv = i, v
			}
		}
		if best < 0 {
			break
		}
		out = append(out, lists[best][pos[best]])
		pos[best]++
		weight[best] *= discount
	}
	return out
}

// ClusterState is Clusters in a form that can be stored (JSON) and shared
// by the review service's replicas.
type ClusterState struct {
	Max     int         `json:"max"`
	Radius  float64     `json:"radius"`
	Centres [][]float64 `json:"centres"`
	Sizes   []int       `json:"sizes"`
}

// State returns the clusters found so far. Cases still waiting in the
// warm-up set are not part of it.
func (k *Clusters) State() ClusterState {
	return ClusterState{Max: k.Max, Radius: k.Radius, Centres: k.centres, Sizes: k.sizes}
}

// RestoreClusters returns the Clusters that State described.
func RestoreClusters(s ClusterState) *Clusters {
	return &Clusters{Max: s.Max, Radius: s.Radius, centres: s.Centres, sizes: s.Sizes}
}

// LearnRadius is the radius Clusters learns from warm-up embeddings.
func LearnRadius(es [][]float32) float64 { return learnRadius(es) }

// AssignOne assigns one embedding now (Radius must be set) and returns
// its cluster.
func (k *Clusters) AssignOne(e []float32) int {
	if k.Max <= 0 {
		k.Max = 32
	}
	return k.assign(e)
}
