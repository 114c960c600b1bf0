package pipeline

import (
	"context"
	"fmt"
	"slices"

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
// EntityReader). An entity the store holds already is left as it is: the
// scorers' state is the one that counts. It returns how many entities it
// stored and how many it left.
//
// The trainer calls it with the transactions its round replayed (weeks of
// history up to the topic's end), so a new deployment's scorers, or those
// of one whose Redis came back empty, do not start every card cold.
func SeedEntities(ctx context.Context, store EntityStore, b *model.Bundle, reader *model.EntityView, txs []model.Tx, pos []Position) (seeded, kept int, err error) {
	if len(pos) != len(txs) {
		return 0, 0, fmt.Errorf("entity states: %d positions for %d transactions", len(pos), len(txs))
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
		return 0, 0, err
	}
	var keys []string
	var vals [][]byte
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		conflicts, _, err := store.Swap(ctx, keys, make([][]byte, len(keys)), vals)
		if err != nil {
			return err
		}
		seeded, kept = seeded+len(keys)-len(conflicts), kept+len(conflicts)
		keys, vals = keys[:0], vals[:0]
		return nil
	}
	var all []string
	states := map[string]*entity.State{}
	r.Each(func(field, key string, st *entity.State) {
		k := field + ":" + key
		all = append(all, k)
		states[k] = st
	})
	slices.Sort(all) // a deterministic order of writes
	for _, k := range all {
		keys, vals = append(keys, k), append(vals, appendStored(nil, applied[k], states[k]))
		if len(keys) == seedChunk {
			if err := flush(); err != nil {
				return seeded, kept, err
			}
		}
	}
	return seeded, kept, flush()
}
