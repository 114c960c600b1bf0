package review

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestRecentNearestIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const dim, n = 8, 3000
	r := NewRecent(dim, n, 0)
	vecs := make([][]float32, n)
	for i := range n {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		vecs[i] = v
		r.Add(Entry{ID: fmt.Sprint(i)}, v)
	}
	for trial := range 20 {
		q := vecs[rng.IntN(n)]
		exclude := fmt.Sprint(trial)
		got := r.Nearest(q, 7, exclude)
		// Brute force.
		type c struct {
			id string
			d  float64
		}
		var all []c
		for i, v := range vecs {
			if fmt.Sprint(i) == exclude {
				continue
			}
			var d float64
			for j := range v {
				d += float64(q[j]-v[j]) * float64(q[j]-v[j])
			}
			all = append(all, c{fmt.Sprint(i), math.Sqrt(d)})
		}
		slices.SortFunc(all, func(a, b c) int { return cmpF(a.d, b.d) })
		if len(got) != 7 {
			t.Fatalf("%d hits", len(got))
		}
		for k := range got {
			if got[k].ID != all[k].id || math.Abs(got[k].Distance-all[k].d) > 1e-4 {
				t.Fatalf("hit %d: %s %.5f, want %s %.5f", k, got[k].ID, got[k].Distance, all[k].id, all[k].d)
			}
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestRecentRingKeysAndRetention(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRecent(2, 4, time.Minute)
	r.now = func() time.Time { return now }
	for i := range 6 {
		r.Add(Entry{ID: fmt.Sprint(i), Keys: []string{"card=" + fmt.Sprint(i%2), "term=" + fmt.Sprint(i)}}, []float32{float32(i), 0})
	}
	if r.Len() != 4 {
		t.Fatalf("len %d", r.Len())
	}
	// 0 and 1 were overwritten; card=0 holds 2 and 4, newest first.
	ids := func(es []Entry) (s []string) {
		for _, e := range es {
			s = append(s, e.ID)
		}
		return s
	}
	if got := ids(r.ByKey("card=0", 10)); !slices.Equal(got, []string{"4", "2"}) {
		t.Fatalf("card=0: %v", got)
	}
	if got := ids(r.ByKey("card=1", 1)); !slices.Equal(got, []string{"5"}) {
		t.Fatalf("card=1: %v", got)
	}
	// An overwritten entity's key leaves the index.
	if _, ok := r.byKey["term=0"]; ok {
		t.Fatal("term=0 still indexed after its only entry was overwritten")
	}
	if h := r.Nearest([]float32{0, 0}, 1, ""); len(h) != 1 || h[0].ID != "2" {
		t.Fatalf("nearest to 0: %+v", h)
	}
	if e, ok := r.Embedding("3"); !ok || e[0] != 3 {
		t.Fatalf("embedding of 3: %v %v", e, ok)
	}
	if _, ok := r.Embedding("0"); ok {
		t.Fatal("an overwritten entry's embedding is still found")
	}
	now = now.Add(2 * time.Minute)
	if h := r.Nearest([]float32{0, 0}, 3, ""); len(h) != 0 {
		t.Fatalf("expired entries returned: %+v", h)
	}
	if es := r.ByKey("card=0", 3); len(es) != 0 {
		t.Fatalf("expired entries returned by key: %v", ids(es))
	}
}

func TestRecentReembed(t *testing.T) {
	r := NewRecent(2, 10, 0)
	for i := range 5 {
		r.Add(Entry{ID: fmt.Sprint(i), Raw: []byte(fmt.Sprint(i))}, []float32{0, 0})
	}
	// A new model with 3 dimensions: the embedding is (x, x, x) for raw x.
	r.Reembed(3, func(raws [][]byte, dst []float32) {
		for k, raw := range raws {
			x := float32(raw[0] - '0')
			dst[3*k], dst[3*k+1], dst[3*k+2] = x, x, x
		}
	})
	h := r.Nearest([]float32{3, 3, 3}, 2, "")
	if len(h) != 2 || h[0].ID != "3" || h[0].Distance != 0 {
		t.Fatalf("after reembedding: %+v", h)
	}
}

// BenchmarkRecentMemory reports the store's heap bytes per entry with a
// 16-dimension embedding, two entity keys and a 220-byte transaction (a
// card record as the generator writes it), and the time of one exact
// 10-nearest search over a full store of 1M entries (-benchtime=10x).
func BenchmarkRecentMemory(b *testing.B) {
	const n, dim = 1_000_000, 16
	raw := make([]byte, 220)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewRecent(dim, n, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, dim)
	for i := range n {
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		r.Add(Entry{ID: fmt.Sprintf("tx-%09d", i), At: time.Unix(int64(i), 0),
			Keys: []string{fmt.Sprintf("card_id=%d", i%200000), fmt.Sprintf("terminal_id=%d", i%50000)}, Raw: slices.Clone(raw)}, v)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for range b.N {
		r.Nearest(v, 10, "")
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
	runtime.KeepAlive(r)
}
