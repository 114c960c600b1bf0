package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// TestSeedReplacesYoungStates: the scorers began every entity afresh (as
// after Redis came back empty) from the last transactions of a history on
// two partitions that the trainer's round then replays in full. The seed
// stores the entities seen only before the tail, and replaces exactly the
// young states with earlier history in the replay
// (one that records positions but no history among them),
// positions and all, so that delivering the young states' transactions
// again counts nothing twice. It leaves: a state that added a transaction
// the replay has not read (on one partition), a bare state (whose history
// is unknown), a state with more history than the replay, states whose
// every transaction is in the tail (the replay counts no more), and one a
// scorer changes between the seed's two compare-and-sets.
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
		pos[i] = Position{Partition: int32(i % 2), Offset: int64(i / 2)}
	}
	// Entities whose first transaction is in the tail: the replay holds
	// nothing more of them.
	tail := 1700
	for i := range 2 {
		rows[tail+i][2], rows[tail+i][3] = "new-card", "new-terminal"
	}
	// And entities seen only before the tail: no scorer holds them, so
	// the seed stores them.
	for i := 100; i < 103; i++ {
		rows[i][2], rows[i][3] = "old-card", "old-terminal"
	}
	txs = readTxs(v, rows)
	E := len(v.Part.Fields)
	for name, worker := range stores(t) {
		t.Run(name, func(t *testing.T) {
			store := &raceStore{EntityStore: worker("seed")}
			// The scorers since the loss: the last 300 transactions.
			if _, err := StepEntities(ctx, store, v, txs[tail:], pos[tail:], make([]model.EntityValue, (len(txs)-tail)*E)); err != nil {
				t.Fatal(err)
			}
			young, _ := keysOf(ctx, t, store, v, txs[tail:])
			// An entity the scorers have moved past the replay on partition
			// 1 (partition 0 still behind), and a bare state.
			ahead, bare := "card:"+txs[tail+2].Keys[0], "terminal:"+txs[tail+2].Keys[1]
			// And one that records positions but no history: the replay's
			// holds more.
			var empty string
			for i := tail + 3; empty == "" || empty == bare; i++ {
				empty = "terminal:" + txs[i].Keys[1]
			}
			for _, k := range []string{ahead, bare, empty} {
				var st entity.State
				applied, err := decodeStored(young[k], &st)
				if err != nil || len(applied) != 2 {
					t.Fatal(k, applied, err)
				}
				var next []byte
				switch k {
				case ahead:
					next = appendStored(nil, apply(applied, Position{Partition: 1, Offset: 5000}, false), &st)
				case bare:
					next = st.AppendBinary(nil)
				case empty:
					next = appendStored(nil, applied, &entity.State{})
				}
				store.set(ctx, t, k, next)
			}
			// An entity whose state counts more than the replay does: the
			// replay's history and three transactions older than the replay.
			replayed, err := b.ReplayTxs(v, txs, nil)
			if err != nil {
				t.Fatal(err)
			}
			var older string
			for i := tail + 4; i < len(txs) && older == ""; i++ {
				if k := "card:" + txs[i].Keys[0]; txs[i].Usable(0) && k != ahead {
					older = k
				}
			}
			var last []Position
			for i := range txs {
				if txs[i].Usable(0) && "card:"+txs[i].Keys[0] == older {
					last = apply(last, pos[i], false)
				}
			}
			replayed.Each(func(field, key string, st *entity.State) {
				if field+":"+key == older {
					rich := *st
					for range 3 {
						rich.Update(b.Entity.Windows, txs[0].At.Add(-time.Hour), 20)
					}
					store.set(ctx, t, older, appendStored(nil, last, &rich))
				}
			})
			young, _ = keysOf(ctx, t, store, v, txs[tail:])
			// A scorer steps one entity between the seed's compare-and-sets.
			var raced string
			var racedVal []byte
			store.before = func(n int, keys []string) {
				if n != 2 {
					return
				}
				raced = keys[len(keys)/2]
				var st entity.State
				applied, _ := decodeStored(young[raced], &st)
				st.Update(b.Entity.Windows, txs[len(txs)-1].At, 30)
				racedVal = appendStored(nil, apply(applied, Position{Partition: 0, Offset: 6000}, false), &st)
				store.set(ctx, t, raced, racedVal)
			}
			store.swaps = 0

			seeded, replaced, kept, err := SeedEntities(ctx, store, b, v, txs, pos)
			if err != nil {
				t.Fatal(err)
			}
			if store.swaps != 2 { // seed, then replace
				t.Fatalf("%d compare-and-sets", store.swaps)
			}
			// The young states expected to be replaced: every one but the
			// four above, the new entities, and the raced one.
			want := map[string]bool{}
			for k := range young {
				want[k] = true
			}
			for _, k := range []string{ahead, bare, older, raced, "card:new-card", "terminal:new-terminal"} {
				if !want[k] {
					t.Fatalf("%s is not among the young states", k)
				}
				delete(want, k)
			}
			replay := map[string]*entity.State{}
			replayed.Each(func(field, key string, st *entity.State) { replay[field+":"+key] = st })
			_, all := keysOf(ctx, t, store, v, txs)
			if seeded != 2 || seeded != len(all)-len(young) || replaced != len(want) || kept != 6 {
				t.Fatalf("seeded %d, replaced %d, kept %d of %d entities (%d held by the scorers); want 2 (old-card, old-terminal), %d, 6",
					seeded, replaced, kept, len(all), len(young), len(want))
			}
			stored, _ := store.Load(ctx, all)
			for i, k := range all {
				var st entity.State
				applied, err := decodeStored(stored[i], &st)
				if err != nil {
					t.Fatal(err)
				}
				isReplay := string(st.AppendBinary(nil)) == string(replay[k].AppendBinary(nil))
				switch old, held := young[k]; {
				case k == raced:
					if string(stored[i]) != string(racedVal) {
						t.Errorf("%s, which a scorer changed during the seed, is not the scorer's", k)
					}
				case held && !want[k]:
					if string(stored[i]) != string(old) {
						t.Errorf("%s was replaced", k)
					}
				case !isReplay:
					t.Errorf("%s: seeded or replaced, but not the replay's state", k)
				case len(applied) != 2:
					t.Errorf("%s: seeded with positions %v, want both partitions'", k, applied)
				}
			}
			// The young states' transactions delivered again change nothing
			// (but the bare state, which records no positions).
			store.before = nil
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

// raceStore counts an EntityStore's compare-and-sets and runs before,
// when set, ahead of each (n from 1).
type raceStore struct {
	EntityStore
	swaps  int
	before func(n int, keys []string)
}

func (s *raceStore) Swap(ctx context.Context, keys []string, prev, next [][]byte) ([]int, [][]byte, error) {
	s.swaps++
	if s.before != nil {
		s.before(s.swaps, keys)
	}
	return s.EntityStore.Swap(ctx, keys, prev, next)
}

// set writes key's value, whatever it was.
func (s *raceStore) set(ctx context.Context, t *testing.T, key string, val []byte) {
	t.Helper()
	cur, err := s.EntityStore.Load(ctx, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := s.EntityStore.Swap(ctx, []string{key}, cur, [][]byte{val}); err != nil || len(c) > 0 {
		t.Fatal(key, c, err)
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
