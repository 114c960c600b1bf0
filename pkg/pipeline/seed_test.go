package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// TestSeedReplacesYoungStates: the scorers began some entities afresh (as
// after Redis came back empty) from the last transactions of a history the
// trainer's round then replays in full. The seed replaces those young
// states with the replay's, positions and all, so that delivering the
// young states' transactions again counts nothing twice; it leaves a state
// that added a transaction the replay has not read, a bare state (whose
// history is unknown), and a state with more history than the replay.
func TestSeedReplacesYoungStates(t *testing.T) {
	ctx := context.Background()
	b := entityBundle(t)
	v, err := b.NewEntityView()
	if err != nil {
		t.Fatal(err)
	}
	rows := entityTxs(2000, 6)
	txs := readTxs(v, rows)
	pos := make([]Position, len(txs))
	for i := range pos {
		pos[i] = Position{Partition: 0, Offset: int64(i)}
	}
	E := len(v.Part.Fields)
	for name, worker := range stores(t) {
		t.Run(name, func(t *testing.T) {
			store := worker("seed")
			// The scorers since the loss: the last 300 transactions.
			tail := 1700
			if _, err := StepEntities(ctx, store, v, txs[tail:], pos[tail:], make([]model.EntityValue, (len(txs)-tail)*E)); err != nil {
				t.Fatal(err)
			}
			// An entity the scorers have moved past the replay, and a bare state.
			ahead, bare := "card:"+txs[tail].Keys[0], "terminal:"+txs[tail].Keys[1]
			for _, k := range []string{ahead, bare} {
				cur, _ := store.Load(ctx, []string{k})
				var st entity.State
				applied, err := decodeStored(cur[0], &st)
				if err != nil {
					t.Fatal(err)
				}
				next := st.AppendBinary(nil) // bare
				if k == ahead {
					next = appendStored(nil, apply(applied, Position{Partition: 0, Offset: 5000}, false), &st)
				}
				if c, _, err := store.Swap(ctx, []string{k}, cur, [][]byte{next}); err != nil || len(c) > 0 {
					t.Fatal(c, err)
				}
			}
			// An entity whose state counts more than the replay does: the
			// replay's history and three transactions older than the replay.
			replayed, err := b.ReplayTxs(v, txs, nil)
			if err != nil {
				t.Fatal(err)
			}
			var older string
			var last Position
			for i := tail; i < len(txs) && older == ""; i++ {
				if k := "card:" + txs[i].Keys[0]; txs[i].Usable(0) && k != ahead {
					older = k
				}
			}
			for i := range txs {
				if txs[i].Usable(0) && "card:"+txs[i].Keys[0] == older {
					last = pos[i]
				}
			}
			replayed.Each(func(field, key string, st *entity.State) {
				if field+":"+key != older {
					return
				}
				rich := *st
				for range 3 {
					rich.Update(b.Entity.Windows, txs[0].At.Add(-time.Hour), 20)
				}
				cur, _ := store.Load(ctx, []string{older})
				if c, _, err := store.Swap(ctx, []string{older}, cur, [][]byte{appendStored(nil, []Position{last}, &rich)}); err != nil || len(c) > 0 {
					t.Fatal(c, err)
				}
			})
			young, _ := keysOf(ctx, t, store, v, txs[tail:])

			seeded, replaced, kept, err := SeedEntities(ctx, store, b, v, txs, pos)
			if err != nil {
				t.Fatal(err)
			}
			_, all := keysOf(ctx, t, store, v, txs)
			if seeded+replaced+kept != len(all) || seeded != len(all)-len(young) {
				t.Fatalf("seeded %d, replaced %d, kept %d of %d entities (%d held by the scorers)", seeded, replaced, kept, len(all), len(young))
			}
			if replaced < len(young)/2 || kept < 3 {
				t.Fatalf("replaced %d and kept %d of the %d states the scorers held", replaced, kept, len(young))
			}
			// Each replaced state is the replay's; the others are as they were.
			r, err := b.ReplayTxs(v, txs, nil)
			if err != nil {
				t.Fatal(err)
			}
			replay := map[string]*entity.State{}
			r.Each(func(field, key string, st *entity.State) { replay[field+":"+key] = st })
			stored, _ := store.Load(ctx, all)
			same := 0
			for i, k := range all {
				var st entity.State
				if _, err := decodeStored(stored[i], &st); err != nil {
					t.Fatal(err)
				}
				if string(st.AppendBinary(nil)) == string(replay[k].AppendBinary(nil)) {
					same++
				} else if k == ahead || k == bare || k == older {
					continue
				} else if _, ok := young[k]; !ok {
					t.Errorf("%s: seeded, but not the replay's state", k)
				}
			}
			if same != seeded+replaced {
				t.Errorf("%d states are the replay's, %d were seeded or replaced", same, seeded+replaced)
			}
			for _, k := range []string{ahead, bare, older} {
				if got, _ := store.Load(ctx, []string{k}); string(got[0]) != string(young[k]) {
					t.Errorf("%s was replaced", k)
				}
			}
			// The young states' transactions delivered again change nothing
			// (but the bare state, which records no positions).
			before, _ := store.Load(ctx, all)
			if _, err := StepEntities(ctx, store, v, txs[tail:], pos[tail:], make([]model.EntityValue, (len(txs)-tail)*E)); err != nil {
				t.Fatal(err)
			}
			after, _ := store.Load(ctx, all)
			for i, k := range all {
				if k != bare && string(before[i]) != string(after[i]) {
					t.Errorf("%s changed when the transactions were delivered again", k)
				}
			}
		})
	}
}

// keysOf returns the entity keys txs step and their stored values.
func keysOf(ctx context.Context, t *testing.T, store EntityStore, v *model.EntityView, txs []model.Tx) (map[string][]byte, []string) {
	t.Helper()
	set := map[string][]byte{}
	var keys []string
	for i := range txs {
		for e, f := range v.Part.Fields {
			if txs[i].Usable(e) {
				k := f + ":" + txs[i].Keys[e]
				if _, ok := set[k]; !ok {
					set[k] = nil
					keys = append(keys, k)
				}
			}
		}
	}
	vals, err := store.Load(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		set[k] = vals[i]
	}
	return set, keys
}
