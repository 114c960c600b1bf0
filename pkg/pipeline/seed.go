package pipeline

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// seedChunk is the entities one compare-and-set call seeds.
const seedChunk = 1000

// SeedEntities stores, for every entity that txs step under b's entity
// part and store does not hold yet, the state the scorers would have after
// stepping txs in event time, and the positions pos (pos[i] for txs[i]) as
// added, so that scorers which later read the same transactions from the
// topic do not count them again. txs are read by reader (the bundle's
// EntityReader). An entity the store holds already keeps its state (the
// scorers' state is the one that counts) unless the replay's appears to
// supersede it (see supersedes), as when the scorers began the entity
// afresh after Redis came back empty. A state a scorer stepped past the
// replay's last position is kept, so the replay should reach the topic's
// end just before the call (the trainer catches up first). It returns how
// many states it stored for new entities, how many it replaced and how
// many it left.
//
// The trainer calls it with the transactions its round replayed (weeks of
// history up to the topic's end), so a new deployment's scorers, or those
// of one whose Redis came back empty, do not start every card cold, and
// those that did start cold get their history back at the next round.
func SeedEntities(ctx context.Context, store EntityStore, b *model.Bundle, reader *model.EntityView, txs []model.Tx, pos []Position) (seeded, replaced, kept int, err error) {
	if len(pos) != len(txs) {
		return 0, 0, 0, fmt.Errorf("entity states: %d positions for %d transactions", len(pos), len(txs))
	}
	applied := map[string][]Position{}
	r, err := b.ReplayTxs(reader, txs, func(i int, tx *model.Tx, _ []model.EntityValue) {
		for e, f := range b.Entity.Fields { // b.Entity is set: ReplayTxs steps only then
			if tx.Usable(e) {
				k := f + ":" + tx.Keys[e]
				applied[k] = apply(applied[k], pos[i], false)
			}
		}
	})
	if r == nil || err != nil {
		return 0, 0, 0, err
	}
	var all []string
	states := map[string]*entity.State{}
	r.Each(func(field, key string, st *entity.State) {
		k := field + ":" + key
		all = append(all, k)
		states[k] = st
	})
	slices.Sort(all) // a deterministic order of writes
	var keys []string
	var vals [][]byte
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		conflicts, current, err := store.Swap(ctx, keys, make([][]byte, len(keys)), vals)
		if err != nil {
			return err
		}
		seeded += len(keys) - len(conflicts)
		var rkeys []string
		var rprev, rnext [][]byte
		for c, i := range conflicts {
			if supersedes(current[c], applied[keys[i]], states[keys[i]], b.Entity.Windows) {
				rkeys, rprev, rnext = append(rkeys, keys[i]), append(rprev, current[c]), append(rnext, vals[i])
			} else {
				kept++
			}
		}
		if len(rkeys) > 0 {
			// A state a scorer changed meanwhile is the scorers' again.
			lost, _, err := store.Swap(ctx, rkeys, rprev, rnext)
			if err != nil {
				return err
			}
			replaced, kept = replaced+len(rkeys)-len(lost), kept+len(lost)
		}
		keys, vals = keys[:0], vals[:0]
		return nil
	}
	for _, k := range all {
		keys, vals = append(keys, k), append(vals, appendStored(nil, applied[k], states[k]))
		if len(keys) == seedChunk {
			if err := flush(); err != nil {
				return seeded, replaced, kept, err
			}
		}
	}
	err = flush()
	return seeded, replaced, kept, err
}

// supersedes reports whether the replay's state seed (which added the
// positions seedApplied) may replace the stored value cur. Two checks,
// neither a proof, since a stored value keeps only each partition's
// highest offset added: cur records positions (a bare state's history is
// unknown) and on each of them the replay has read at least as far, so
// cur holds no transaction the replay has yet to see; and the replay
// counts at least half a transaction more over the longest window, which
// keeps a state whose history reaches back before the replay's (older
// than HistoryWindow, or beyond EntityMaxRows) and is richer for it. An
// unreadable value is left to the scorers.
func supersedes(cur []byte, seedApplied []Position, seed *entity.State, windows []time.Duration) bool {
	if seed == nil || len(windows) == 0 {
		return false
	}
	var st entity.State
	applied, err := decodeStored(cur, &st)
	if err != nil || len(applied) == 0 {
		return false
	}
	for _, p := range applied {
		if !covered(seedApplied, p) {
			return false
		}
	}
	at := seed.Last()
	if st.Last().After(at) {
		at = st.Last()
	}
	count := []entity.Feature{{Stat: entity.Count, Window: slices.Max(windows)}}
	var n, m [1]float64
	seed.Features(windows, count, at, math.NaN(), n[:])
	st.Features(windows, count, at, math.NaN(), m[:])
	// Half a transaction: decay makes a second one an hour later 0.9986.
	return math.Expm1(n[0]) >= math.Expm1(m[0])+0.5
}
