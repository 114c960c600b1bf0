package review

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Recent keeps the most recent scored transactions with their embeddings,
// for "similar past transactions" (exact k-nearest-neighbour search) and
// "the entity's recent transactions". It is a ring: at most Capacity
// entries, the oldest overwritten first, and entries added more than
// Retention ago are not returned. Memory is about 64 B of embedding (16
// dimensions) plus the raw transaction and its keys per entry; see
// BenchmarkRecentMemory. It is safe for concurrent use.
type Recent struct {
	mu        sync.RWMutex
	dim       int
	capacity  int
	retention time.Duration
	now       func() time.Time

	emb   []float32 // capacity × dim
	slots []slot
	next  uint64 // entries ever added; slot = seq % capacity
	// byKey: entity key → seqs of its newest entries (at most perKey),
	// oldest first; stale seqs are skipped on read.
	byKey map[string][]uint64
}

type slot struct {
	seq   uint64
	added int64 // unix nanoseconds, for Retention
	e     Entry
}

// Entry is one scored transaction.
type Entry struct {
	ID    string
	At    time.Time // event time
	Score float32
	// Keys are the entity keys ("terminal_id=T7") the entry is listed under.
	Keys []string
	Raw  []byte // the transaction as received
}

// Hit is an entry found by Nearest.
type Hit struct {
	Entry
	Distance float64
}

// perKey bounds the entries remembered per entity key.
const perKey = 20

// NewRecent returns a store for embeddings of dim dimensions holding at
// most capacity entries for at most retention (0: no time limit).
func NewRecent(dim, capacity int, retention time.Duration) *Recent {
	capacity = max(capacity, 1)
	return &Recent{dim: dim, capacity: capacity, retention: retention, now: time.Now,
		emb: make([]float32, capacity*dim), slots: make([]slot, capacity), byKey: map[string][]uint64{}}
}

// Dim is the embedding size the store holds.
func (r *Recent) Dim() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.dim
}

// Len is the number of entries held (expired ones included until overwritten).
func (r *Recent) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return int(min(r.next, uint64(r.capacity)))
}

// Add stores e with embedding emb (len Dim), overwriting the oldest entry
// when full. emb and e's slices are copied or kept as given: the caller
// must not reuse e.Raw or e.Keys.
func (r *Recent) Add(e Entry, emb []float32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := r.next
	r.next++
	i := int(seq % uint64(r.capacity))
	old := &r.slots[i]
	if seq >= uint64(r.capacity) {
		r.forget(old)
	}
	*old = slot{seq: seq, added: r.now().UnixNano(), e: e}
	copy(r.emb[i*r.dim:(i+1)*r.dim], emb)
	for _, k := range e.Keys {
		s := r.byKey[k]
		if len(s) == perKey {
			s = append(s[:0], s[1:]...)
		}
		r.byKey[k] = append(s, seq)
	}
}

// forget drops an overwritten entry's keys when it was their newest entry,
// so idle entities leave the index.
func (r *Recent) forget(old *slot) {
	for _, k := range old.e.Keys {
		if s := r.byKey[k]; len(s) > 0 && s[len(s)-1] == old.seq {
			delete(r.byKey, k)
		}
	}
}

func (r *Recent) live(s *slot, cutoff int64) bool { return s.added >= cutoff }

func (r *Recent) cutoff() int64 {
	if r.retention <= 0 {
		return math.MinInt64
	}
	return r.now().Add(-r.retention).UnixNano()
}

// Nearest returns up to k entries closest to q by Euclidean distance,
// nearest first, leaving out entries whose ID is exclude. The search is
// exact: every live entry is compared.
func (r *Recent) Nearest(q []float32, k int, exclude string) []Hit {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if k <= 0 || len(q) != r.dim {
		return nil
	}
	n := int(min(r.next, uint64(r.capacity)))
	cut := r.cutoff()
	type cand struct {
		i int
		d float32
	}
	best := make([]cand, 0, k+1)
	worst := float32(math.Inf(1))
	for i := range n {
		e := r.emb[i*r.dim : (i+1)*r.dim : (i+1)*r.dim]
		var d float32
		for j, v := range q[:len(e)] {
			x := v - e[j]
			d += x * x
		}
		if len(best) == k && d >= worst {
			continue
		}
		s := &r.slots[i]
		if !r.live(s, cut) || s.e.ID == exclude {
			continue
		}
		j := len(best)
		best = append(best, cand{i, d})
		for j > 0 && best[j-1].d > d {
			best[j] = best[j-1]
			j--
		}
		best[j] = cand{i, d}
		if len(best) > k {
			best = best[:k]
		}
		if len(best) == k {
			worst = best[k-1].d
		}
	}
	out := make([]Hit, len(best))
	for j, c := range best {
		out[j] = Hit{Entry: r.slots[c.i].e, Distance: math.Sqrt(float64(c.d))}
	}
	return out
}

// ByKey returns up to n of the entity key's newest live entries, newest first.
func (r *Recent) ByKey(key string, n int) []Entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cut := r.cutoff()
	var out []Entry
	seqs := r.byKey[key]
	for j := len(seqs) - 1; j >= 0 && len(out) < n; j-- {
		s := &r.slots[seqs[j]%uint64(r.capacity)]
		if s.seq == seqs[j] && r.live(s, cut) {
			out = append(out, s.e)
		}
	}
	return out
}

// Embedding returns a copy of the embedding of the newest live entry with
// this id, if the store holds it.
func (r *Recent) Embedding(id string) ([]float32, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := int(min(r.next, uint64(r.capacity)))
	cut := r.cutoff()
	for back := range n {
		i := int((r.next - 1 - uint64(back)) % uint64(r.capacity))
		if s := &r.slots[i]; s.e.ID == id && r.live(s, cut) {
			return slices.Clone(r.emb[i*r.dim : (i+1)*r.dim]), true
		}
	}
	return nil, false
}

// Reembed recomputes every entry's embedding with embed (called with up
// to chunk raw transactions and a destination of len(raws)×dim), after a
// model swap, so distances are never taken between two models' spaces.
// dim may change with the model. Entries stay searchable meanwhile; a
// chunk is swapped in under the lock.
func (r *Recent) Reembed(dim int, embed func(raws [][]byte, dst []float32)) {
	const chunk = 4096
	r.mu.Lock()
	if dim != r.dim {
		r.dim, r.emb = dim, make([]float32, r.capacity*dim)
	}
	n := int(min(r.next, uint64(r.capacity)))
	r.mu.Unlock()
	raws := make([][]byte, 0, chunk)
	seqs := make([]uint64, 0, chunk)
	dst := make([]float32, chunk*dim)
	for from := 0; from < n; from += chunk {
		to := min(from+chunk, n)
		r.mu.RLock()
		raws, seqs = raws[:0], seqs[:0]
		for i := from; i < to; i++ {
			raws, seqs = append(raws, r.slots[i].e.Raw), append(seqs, r.slots[i].seq)
		}
		r.mu.RUnlock()
		embed(raws, dst[:len(raws)*dim])
		r.mu.Lock()
		// Entries overwritten meanwhile carry their own new embeddings.
		for k, i := 0, from; i < to; i, k = i+1, k+1 {
			if r.slots[i].seq == seqs[k] {
				copy(r.emb[i*dim:(i+1)*dim], dst[k*dim:(k+1)*dim])
			}
		}
		r.mu.Unlock()
	}
}
