package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

var entitySchema = &features.Schema{
	Fields: []features.Field{
		{Name: "tx", Kind: features.ID},
		{Name: "ts", Kind: features.Timestamp, Layout: "2006-01-02 15:04:05"},
		{Name: "card", Kind: features.ID},
		{Name: "terminal", Kind: features.ID},
		{Name: "amount", Kind: features.Numeric},
	},
	IDField: "tx", TimeField: "ts", EntityFields: []string{"card", "terminal"}, AmountField: "amount",
}

// entityTxs are n transactions in time order (some sharing a second, a
// few without an amount or a card) of 40 cards at 15 terminals: the cards
// reach the terminals from every partition.
func entityTxs(n int, seed uint64) [][]string {
	rng := rand.New(rand.NewPCG(seed, 9))
	at := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	rows := make([][]string, n)
	for i := range rows {
		at = at.Add(time.Duration(rng.IntN(900)) * time.Second)
		amt := fmt.Sprintf("%.2f", math.Exp(2+rng.NormFloat64()))
		if i%37 == 5 {
			amt = ""
		}
		card := fmt.Sprint(rng.IntN(40))
		if i%53 == 7 {
			card = ""
		}
		rows[i] = []string{fmt.Sprint(i), at.Format("2006-01-02 15:04:05"), card, fmt.Sprint(rng.IntN(15)), amt}
	}
	return rows
}

// entityView is a small model's entity part over cards and terminals.
func entityView(t testing.TB) *model.EntityView {
	t.Helper()
	v, err := entityBundle(t).NewEntityView()
	if err != nil || v == nil {
		t.Fatal(v, err)
	}
	return v
}

// entityBundle is a small model with an entity part over cards and terminals.
func entityBundle(t testing.TB) *model.Bundle {
	t.Helper()
	b, err := model.Fit(entitySchema, entityTxs(600, 1), model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 2, Hidden: 8, Bottleneck: 2}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	vals := make([]float64, 1000)
	for i := range vals {
		vals[i] = rng.NormFloat64()
	}
	tail, _ := entity.NewTail(vals)
	b.Entity = &model.EntityPart{Fields: []string{"card", "terminal"}, Amount: "amount", Time: "ts",
		Windows: entity.DefaultWindows, Window: model.DefaultEntityWindow, Tails: []entity.Tail{tail, tail}}
	return b
}

// catSchema is entitySchema with a categorical field, mcc, that the
// terminals' states count.
var catSchema = func() *features.Schema {
	s := *entitySchema
	s.Fields = append(slices.Clone(s.Fields), features.Field{Name: "mcc", Kind: features.Categorical})
	return &s
}()

// withCategories gives each of rows (entityTxs') an mcc: mostly its
// terminal's own, sometimes another, rarely missing.
func withCategories(rows [][]string, seed uint64) [][]string {
	rng := rand.New(rand.NewPCG(seed, 10))
	out := make([][]string, len(rows))
	for i, r := range rows {
		mcc := "cat" + r[3]
		if k := rng.IntN(20); k == 0 {
			mcc = fmt.Sprint("cat", rng.IntN(8))
		} else if k == 1 {
			mcc = ""
		}
		out[i] = append(slices.Clone(r), mcc)
	}
	return out
}

// catView is entityView's part with the novelty of the terminals' mcc.
func catView(t testing.TB) *model.EntityView {
	t.Helper()
	b, err := model.Fit(catSchema, withCategories(entityTxs(600, 1), 1), model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 2, Hidden: 8, Bottleneck: 2}})
	if err != nil {
		t.Fatal(err)
	}
	b.Entity = entityBundle(t).Entity
	b.Entity.Categories = []model.EntityCategory{{Entity: "terminal", Field: "mcc", Tail: b.Entity.Tails[0]}}
	v, err := b.NewEntityView()
	if err != nil || v == nil {
		t.Fatal(v, err)
	}
	return v
}

// readTxs reads rows as v's transactions.
func readTxs(v *model.EntityView, rows [][]string) []model.Tx {
	txs := make([]model.Tx, len(rows))
	for i, r := range rows {
		v.Read(r, &txs[i])
	}
	return txs
}

// offlineValues is the offline path: one replay of rows in event time.
func offlineValues(v *model.EntityView, rows [][]string) []model.EntityValue {
	E := len(v.Part.Fields)
	txs := readTxs(v, rows)
	out := make([]model.EntityValue, len(rows)*E)
	r := v.NewReplay()
	for _, i := range model.ReplayOrder(txs) {
		r.Step(&txs[i], out[i*E:(i+1)*E])
	}
	return out
}

// stores are the entity stores to test: a Redis in process, and the
// real redis-server when REDIS_ADDR is set. Each call of a store's
// worker function gives another client of the same Redis (another
// worker); ns separates runs.
func stores(t testing.TB) map[string]func(ns string) EntityStore {
	mr := miniredis.RunT(t)
	base := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	out := map[string]func(string) EntityStore{"miniredis": func(ns string) EntityStore {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return &RedisEntityStore{Client: c, Prefix: base + ns + ":"}
	}}
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		out["redis-server"] = func(ns string) EntityStore {
			c := redis.NewClient(&redis.Options{Addr: addr})
			if err := c.Ping(context.Background()).Err(); err != nil {
				t.Fatalf("REDIS_ADDR=%s: %v", addr, err)
			}
			t.Cleanup(func() { c.Close() })
			return &RedisEntityStore{Client: c, Prefix: base + ns + ":"}
		}
	}
	return out
}

// streamValues is the streaming path: rows in batches of varying size,
// each batch stepped by the next of workers in turn (separate clients,
// as separate scorer processes), a fresh worker (a restart) from the
// middle on.
func streamValues(t *testing.T, v *model.EntityView, rows [][]string, worker func() EntityStore, workers int) []model.EntityValue {
	t.Helper()
	E := len(v.Part.Fields)
	ws := make([]EntityStore, workers)
	for i := range ws {
		ws[i] = worker()
	}
	out := make([]model.EntityValue, len(rows)*E)
	rng := rand.New(rand.NewPCG(3, 3))
	for start, k := 0, 0; start < len(rows); k++ {
		end := min(len(rows), start+1+rng.IntN(60))
		if start >= len(rows)/2 && start-len(rows)/2 < 60 {
			ws[0] = worker() // restarted: nothing but what Redis holds
		}
		txs := make([]model.Tx, end-start)
		for i := range txs {
			r := rows[start+i]
			v.ReadRaw(func(c int) string { return r[c] }, &txs[i])
		}
		if _, err := StepEntities(context.Background(), ws[k%workers], v, txs, nil, out[start*E:end*E]); err != nil {
			t.Fatal(err)
		}
		start = end
	}
	return out
}

func sameValues(t *testing.T, what string, a, b []model.EntityValue) {
	t.Helper()
	for i := range a {
		for k := range a[i].Cats {
			x, y := a[i].Cats[k], b[i].Cats[k]
			if x.History != y.History || x.Usual != y.Usual || math.Float64bits(x.Share) != math.Float64bits(y.Share) {
				t.Fatalf("%s: value %d's categories differ: %+v offline, %+v streaming", what, i, a[i].Cats, b[i].Cats)
			}
		}
		for _, p := range [][2]float64{{a[i].Ratio, b[i].Ratio}, {a[i].Mean, b[i].Mean}, {a[i].Score, b[i].Score}, {a[i].CatScore[0], b[i].CatScore[0]}} {
			if math.Float64bits(p[0]) != math.Float64bits(p[1]) && !(math.IsNaN(p[0]) && math.IsNaN(p[1])) {
				t.Fatalf("%s: value %d differs: %+v offline, %+v streaming", what, i, a[i], b[i])
			}
		}
	}
}

// The streaming path (batches, states in Redis, one worker or two taking
// turns, a restart midway) computes bit for bit the entity values of the
// offline path (one replay in memory) for the same transactions.
func TestStreamingEntitiesMatchOfflineReplay(t *testing.T) {
	v := entityView(t)
	rows := entityTxs(3000, 4)
	want := offlineValues(v, rows)
	present := 0
	for _, x := range want {
		if !math.IsNaN(x.Ratio) {
			present++
		}
	}
	if present < len(want)/2 {
		t.Fatalf("the test's premise: only %d of %d values have a history", present, len(want))
	}
	for name, worker := range stores(t) {
		for _, workers := range []int{1, 2} {
			ns := fmt.Sprint(workers)
			sameValues(t, fmt.Sprintf("%s, %d workers", name, workers), want, streamValues(t, v, rows, func() EntityStore { return worker(ns) }, workers))
		}
	}

	// The same with the terminals counting their categories (larger
	// states in the store).
	v = catView(t)
	rows = withCategories(rows, 4)
	want = offlineValues(v, rows)
	novel := 0
	for _, x := range want {
		if x.CatScore[0] > 0.5 {
			novel++
		}
	}
	if novel < 20 {
		t.Fatalf("the test's premise: only %d transactions have a category rare for their terminal", novel)
	}
	for name, worker := range stores(t) {
		for _, workers := range []int{1, 2} {
			ns := fmt.Sprint("cat", workers)
			sameValues(t, fmt.Sprintf("%s, %d workers, categories", name, workers), want, streamValues(t, v, rows, func() EntityStore { return worker(ns) }, workers))
		}
	}
}

// Workers stepping the same entity at once lose none of each other's
// transactions: every one is in the final state.
func TestConcurrentWorkersLoseNoUpdate(t *testing.T) {
	v := entityView(t)
	for name, worker := range stores(t) {
		const perWorker, batch = 300, 10
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for w := range 2 {
			st := worker("c")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < perWorker; k += batch {
					txs := make([]model.Tx, batch)
					for i := range txs {
						// One terminal, one event time: the count is the
						// number of transactions whatever the order.
						r := []string{"x", "2024-03-01 12:00:00", fmt.Sprint(w), "7", "10"}
						v.Read(r, &txs[i])
					}
					if _, err := StepEntities(context.Background(), st, v, txs, nil, make([]model.EntityValue, batch*2)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n, _ := storedCount(t, worker("c"), "terminal:7", time.Hour); math.Abs(n-2*perWorker) > 1e-6 {
			t.Fatalf("%s: the terminal's state counts %.3f transactions, %d were stepped", name, n, 2*perWorker)
		}
	}
}

// A scorer with an entity store scores a card's sudden large amount by its
// habit, and the alert says so first; without a store the same model
// scores by its DAE alone.
func TestPipelineJoinsTheEntityScore(t *testing.T) {
	b := entityBundle(t)
	run := func(store EntityStore) Alert {
		cur := &Current{}
		cur.Swap(&Model{Bundle: b, Version: "1", Decider: NewFixed(0)})
		sink := &captureSink{}
		p, err := New(Config{Source: &memSource{}, Sink: sink, Models: cur, Alerts: "a", Dead: "d", Entities: store})
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
		var msgs []kafka.Message
		for i := range 30 {
			amount := 10.0
			if i == 29 {
				amount = 300 // thirty times the habit, an ordinary amount overall
			}
			v, _ := json.Marshal(map[string]any{"tx": fmt.Sprint(i), "ts": at.Add(time.Duration(i) * time.Hour).Format("2006-01-02 15:04:05"),
				"card": "c1", "terminal": fmt.Sprint(i % 5), "amount": amount})
			msgs = append(msgs, kafka.Message{Topic: "tx", Value: v})
		}
		if err := p.Process(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
		var last Alert
		for _, m := range sink.msgs {
			if m.Topic == "a" {
				last = Alert{}
				if err := json.Unmarshal(m.Value, &last); err != nil {
					t.Fatal(err)
				}
			}
		}
		if last.TransactionID != "29" {
			t.Fatalf("the last alert is %q", last.TransactionID)
		}
		return last
	}
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	with, without := run(&RedisEntityStore{Client: c}), run(nil)
	if len(with.Reasons) == 0 || with.Reasons[0].Field != "card" || !strings.Contains(with.Reasons[0].Note, "amount 300.00 is 30.0x the 30-day typical amount of card c1") {
		t.Fatalf("reasons %+v", with.Reasons)
	}
	if !(with.Score > without.Score) || with.Reasons[0].Contribution != with.Score-without.Score {
		t.Fatalf("score %v with the habit, %v without; contribution %v", with.Score, without.Score, with.Reasons[0].Contribution)
	}
	for _, r := range without.Reasons {
		if r.Field == "card" {
			t.Fatalf("an entity reason without a store: %+v", r)
		}
	}
}

// storedCount reads key's stored state and returns the transactions it
// counts over window at its latest event, and its applied positions.
func storedCount(t *testing.T, st EntityStore, key string, window time.Duration) (float64, []Position) {
	t.Helper()
	got, err := st.Load(context.Background(), []string{key})
	if err != nil || got[0] == nil {
		t.Fatal(got, err)
	}
	var s entity.State
	applied, err := decodeStored(got[0], &s)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 1)
	s.Features(entity.DefaultWindows, []entity.Feature{{Stat: entity.Count, Window: window}}, s.Last(), 10, out)
	return math.Expm1(out[0]), applied
}

// positions gives rows Kafka-like positions: row i from partition i%3, at
// the next offset of that partition.
func positions(n int) []Position {
	pos := make([]Position, n)
	next := [3]int64{}
	for i := range pos {
		p := i % 3
		pos[i] = Position{int32(p), next[p]}
		next[p]++
	}
	return pos
}

// A batch delivered again (its worker stopped after storing the states,
// before committing) is not counted again: every later value is still
// the offline replay's, bit for bit, and the stored states are those of a
// run without redeliveries.
func TestRedeliveredBatchCountsOnce(t *testing.T) {
	for _, cats := range []bool{false, true} {
		v, rows := entityView(t), entityTxs(2000, 6)
		if cats {
			v, rows = catView(t), withCategories(rows, 6)
		}
		E := len(v.Part.Fields)
		want := offlineValues(v, rows)
		pos := positions(len(rows))
		for name, worker := range stores(t) {
			run := func(ns string, redeliver bool) ([]model.EntityValue, EntityStore) {
				st := worker(ns)
				out := make([]model.EntityValue, len(rows)*E)
				again := 0
				for start, k := 0, 0; start < len(rows); k++ {
					end := min(len(rows), start+1+(k*7)%50)
					txs := make([]model.Tx, end-start)
					for i := range txs {
						r := rows[start+i]
						v.ReadRaw(func(c int) string { return r[c] }, &txs[i])
					}
					if _, err := StepEntities(context.Background(), st, v, txs, pos[start:end], out[start*E:end*E]); err != nil {
						t.Fatal(err)
					}
					if redeliver && k%4 == 1 {
						// The same batch again, from a worker that has only
						// what Redis holds.
						st = worker(ns)
						if _, err := StepEntities(context.Background(), st, v, txs, pos[start:end], make([]model.EntityValue, len(txs)*E)); err != nil {
							t.Fatal(err)
						}
						again++
					}
					start = end
				}
				if redeliver && again < 10 {
					t.Fatalf("the test's premise: only %d batches were delivered again", again)
				}
				return out, st
			}
			what := fmt.Sprintf("%s, categories %v", name, cats)
			ns := fmt.Sprint("redeliver", cats)
			got, st := run(ns, true)
			sameValues(t, what, want, got)
			_, ref := run(ns+"-once", false)
			keys := []string{"card:3", "card:17", "terminal:0", "terminal:9"}
			a, err := st.Load(context.Background(), keys)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ref.Load(context.Background(), keys)
			if err != nil {
				t.Fatal(err)
			}
			for i := range keys {
				if a[i] == nil || !slices.Equal(a[i], b[i]) {
					t.Fatalf("%s: %s is stored as %x after redeliveries, %x without", what, keys[i], a[i], b[i])
				}
			}
		}
	}
}

// Two workers stepping the same batches at once (one of them has lost the
// partition in a rebalance but not yet noticed) count each transaction
// once.
func TestSameBatchFromTwoWorkersCountsOnce(t *testing.T) {
	v := entityView(t)
	for name, worker := range stores(t) {
		const n, batch = 300, 10
		pos := positions(n)
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			st := worker("twice")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < n; k += batch {
					txs := make([]model.Tx, batch)
					for i := range txs {
						v.Read([]string{"x", "2024-03-01 12:00:00", "1", "7", "10"}, &txs[i])
					}
					if _, err := StepEntities(context.Background(), st, v, txs, pos[k:k+batch], make([]model.EntityValue, batch*2)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		c, applied := storedCount(t, worker("twice"), "terminal:7", time.Hour)
		if math.Abs(c-n) > 1e-6 {
			t.Fatalf("%s: the terminal's state counts %.3f transactions; %d were stepped, each by both workers", name, c, n)
		}
		if want := []Position{{0, 99}, {1, 99}, {2, 99}}; !slices.Equal(applied, want) {
			t.Fatalf("%s: applied positions %v, want %v", name, applied, want)
		}
	}
}

// Stored values: a bare state (as stored before positions were kept, and
// by runs without positions) still reads; one with positions reads back
// with them; a damaged one is an error, not a cold state.
func TestStoredEntityValues(t *testing.T) {
	var st entity.State
	st.Update(entity.DefaultWindows, time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), 12.5)
	bare := st.AppendBinary(nil)
	var got entity.State
	if a, err := decodeStored(bare, &got); err != nil || a != nil || !slices.Equal(got.AppendBinary(nil), bare) {
		t.Fatalf("bare state: %v, %v", a, err)
	}
	applied := apply(apply(apply(nil, Position{5, 1 << 40}, false), Position{1, 3}, false), Position{5, 2}, false)
	if want := []Position{{1, 3}, {5, 1 << 40}}; !slices.Equal(applied, want) {
		t.Fatalf("apply: %v, want %v", applied, want)
	}
	if r := apply(slices.Clone(applied), Position{5, 2}, true); r[1].Offset != 2 {
		t.Fatalf("a restarted partition's offset is %d, want 2", r[1].Offset)
	}
	if !covered(applied, Position{1, 3}) || covered(applied, Position{1, 4}) || covered(applied, Position{2, 0}) || covered(applied, Position{1, -1}) {
		t.Fatal("covered answers wrongly")
	}
	b := appendStored(nil, applied, &st)
	if len(b) != len(bare)+1+1+2+1+6 {
		t.Fatalf("a value with two positions is %d bytes, the state alone %d", len(b), len(bare))
	}
	a, err := decodeStored(b, &got)
	if err != nil || !slices.Equal(a, applied) || !slices.Equal(got.AppendBinary(nil), bare) {
		t.Fatalf("round trip: %v, %v", a, err)
	}
	for _, bad := range [][]byte{b[:3], b[:len(b)-1], {appliedMarker, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := decodeStored(bad, &got); err == nil {
			t.Fatalf("%x read without an error", bad)
		}
	}
}

// Through the pipeline: a batch processed again (Kafka redelivers what was
// not committed) leaves the entities' stored states as they were, with a
// record the pipeline sets aside in the batch (slots and positions differ).
func TestPipelineRedeliveryCountsOnce(t *testing.T) {
	b := entityBundle(t)
	cur := &Current{}
	cur.Swap(&Model{Bundle: b, Version: "1", Decider: NewFixed(0)})
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	store := &RedisEntityStore{Client: c}
	p, err := New(Config{Source: &memSource{}, Sink: &captureSink{}, Models: cur, Alerts: "a", Dead: "d", Entities: store})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
	msgs := []kafka.Message{{Topic: "tx", Partition: 2, Offset: 40, Value: []byte("not json")}}
	for i := range 20 {
		v, _ := json.Marshal(map[string]any{"tx": fmt.Sprint(i), "ts": at.Add(time.Duration(i) * time.Hour).Format("2006-01-02 15:04:05"),
			"card": "c1", "terminal": fmt.Sprint(i % 3), "amount": 10 + i})
		msgs = append(msgs, kafka.Message{Topic: "tx", Partition: i % 2, Offset: int64(41 + i), Value: v})
	}
	keys := []string{"card:c1", "terminal:0", "terminal:1", "terminal:2"}
	var once [][]byte
	for round := range 3 {
		if err := p.Process(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
		got, err := store.Load(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			once = got
			continue
		}
		for i := range keys {
			if got[i] == nil || !slices.Equal(got[i], once[i]) {
				t.Fatalf("delivery %d: %s is %x, %x after the first", round+1, keys[i], got[i], once[i])
			}
		}
	}
	var st entity.State
	applied, err := decodeStored(once[0], &st)
	if err != nil || !slices.Equal(applied, []Position{{0, 59}, {1, 60}}) {
		t.Fatalf("card c1's applied positions %v (%v)", applied, err)
	}
}

// After the topic is deleted and created again, its offsets start from 0:
// the new transactions, newer than the entity's latest, are counted, and
// a redelivery of them is not.
func TestRecreatedTopicIsCounted(t *testing.T) {
	v := entityView(t)
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	st := &RedisEntityStore{Client: c}
	step := func(hour, offset int) {
		txs := make([]model.Tx, 1)
		v.Read([]string{"x", fmt.Sprintf("2024-03-01 %02d:00:00", hour), "1", "7", "10"}, &txs[0])
		if _, err := StepEntities(context.Background(), st, v, txs, []Position{{0, int64(offset)}}, make([]model.EntityValue, 2)); err != nil {
			t.Fatal(err)
		}
	}
	count := func() float64 {
		n, _ := storedCount(t, st, "terminal:7", 30*24*time.Hour)
		return math.Round(n)
	}
	for k := range 5 {
		step(k, 100+k)
	}
	step(4, 104) // redelivered
	if n := count(); n != 5 {
		t.Fatalf("%v transactions counted before the topic was recreated, want 5", n)
	}
	step(10, 0)
	step(11, 1)
	step(11, 1) // redelivered
	if n := count(); n != 7 {
		t.Fatalf("%v transactions counted after the topic was recreated, want 7", n)
	}
}

// A state gets the store's TTL when created and again when its latest
// event moves to another day; a write within the same day keeps the TTL
// it had. A batch of 9,000 entities (more than Lua unpacks at once) is
// stored whole.
func TestEntityTTL(t *testing.T) {
	ctx := context.Background()
	for name, worker := range stores(t) {
		st := worker("ttl").(*RedisEntityStore)
		st.TTL = 48 * time.Hour
		day := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
		value := func(at time.Time) []byte {
			var s entity.State
			s.Update(entity.DefaultWindows, at, 10)
			return appendStored(nil, []Position{{0, at.Unix()}}, &s)
		}
		ttl := func() time.Duration {
			d, err := st.Client.PTTL(ctx, st.Prefix+"card:1").Result()
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		swap := func(prev, next []byte) {
			t.Helper()
			if c, _, err := st.Swap(ctx, []string{"card:1"}, [][]byte{prev}, [][]byte{next}); err != nil || len(c) > 0 {
				t.Fatalf("%s: swap: %v %v", name, c, err)
			}
		}
		a, b, c := value(day), value(day.Add(5*time.Hour)), value(day.Add(20*time.Hour))
		swap(nil, a)
		if d := ttl(); d < 47*time.Hour || d > 48*time.Hour {
			t.Fatalf("%s: a new state's TTL is %v, want 48h", name, d)
		}
		st.Client.PExpire(ctx, st.Prefix+"card:1", time.Hour)
		swap(a, b) // the same day
		if d := ttl(); d > time.Hour || d <= 0 {
			t.Fatalf("%s: a same-day write left a TTL of %v, want the hour it had", name, d)
		}
		swap(b, c) // the next day
		if d := ttl(); d < 47*time.Hour {
			t.Fatalf("%s: a next-day write left a TTL of %v, want 48h", name, d)
		}

		keys := make([]string, 9000)
		prev, next := make([][]byte, len(keys)), make([][]byte, len(keys))
		for i := range keys {
			keys[i], next[i] = fmt.Sprint("card:big", i), a
		}
		if c, _, err := st.Swap(ctx, keys, prev, next); err != nil || len(c) > 0 {
			t.Fatalf("%s: 9,000 entities: %d conflicts, %v", name, len(c), err)
		}
		got, err := st.Load(ctx, keys)
		if err != nil || !slices.Equal(got[8999], a) {
			t.Fatalf("%s: the 9,000th entity is %x (%v)", name, got[8999], err)
		}
	}
}

// TestRetrainedCategoriesFollowTheirFields: a training round may count a
// merchant's categorical fields in another order than the last (they are
// ranked by a measured share). States the last model stored are read by
// the next one field by field, not slot by slot: from the switch on, the
// values are bit for bit those of an offline replay under the new model.
func TestRetrainedCategoriesFollowTheirFields(t *testing.T) {
	s := *catSchema
	s.Fields = append(slices.Clone(s.Fields), features.Field{Name: "channel", Kind: features.Categorical})
	rng := rand.New(rand.NewPCG(9, 9))
	rows := withCategories(entityTxs(1200, 9), 9)
	for i, r := range rows {
		ch := "web"
		if r[3] != "" && r[3][len(r[3])-1]%2 == 0 {
			ch = "pos"
		}
		if rng.IntN(10) == 0 {
			ch = "moto"
		}
		rows[i] = append(r, ch)
	}
	b, err := model.Fit(&s, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 2, Hidden: 8, Bottleneck: 2}})
	if err != nil {
		t.Fatal(err)
	}
	view := func(fields ...string) *model.EntityView {
		c := *b
		c.Entity = entityBundle(t).Entity
		for _, f := range fields {
			c.Entity.Categories = append(c.Entity.Categories, model.EntityCategory{Entity: "terminal", Field: f, Tail: c.Entity.Tails[0]})
		}
		v, err := c.NewEntityView()
		if err != nil || v == nil {
			t.Fatal(v, err)
		}
		return v
	}
	before, after := view("mcc", "channel"), view("channel", "mcc")
	want := offlineValues(after, rows)
	E := len(after.Part.Fields)
	for name, worker := range stores(t) {
		store := worker("retrained")
		got := make([]model.EntityValue, len(rows)*E)
		for start := 0; start < len(rows); start += 50 {
			v := before
			if start >= len(rows)/2 {
				v = after
			}
			end := min(len(rows), start+50)
			txs := make([]model.Tx, end-start)
			for i := range txs {
				r := rows[start+i]
				v.ReadRaw(func(c int) string { return r[c] }, &txs[i])
			}
			if _, err := StepEntities(context.Background(), store, v, txs, nil, got[start*E:end*E]); err != nil {
				t.Fatal(err)
			}
		}
		half := len(rows) / 2 * E
		sameValues(t, name+", after the switch", want[half:], got[half:])
		// The premise: the two fields say different things of a
		// transaction, so reading one's track as the other's would show.
		differ := 0
		for i := half; i < len(want); i++ {
			if x := want[i].Cats; x[0].Share != x[1].Share && !math.IsNaN(x[0].Share) {
				differ++
			}
		}
		if differ < 100 {
			t.Fatalf("the test's premise: only %d values tell the fields apart", differ)
		}
	}
}

// TestUnreadableStateStartsAfresh: a damaged stored value does not stall
// the batch, which used to retry it for ever: the entity starts afresh from the batch, the value is
// replaced by one that reads, the others are untouched, and the error names
// the key.
func TestUnreadableStateStartsAfresh(t *testing.T) {
	v := entityView(t)
	rows := entityTxs(300, 12)
	txs := readTxs(v, rows)
	bad := "terminal:" + txs[0].Keys[1]
	n := 0
	for _, tx := range txs {
		if tx.Usable(1) && tx.Keys[1] == txs[0].Keys[1] {
			n++
		}
	}
	for name, worker := range stores(t) {
		st := worker("unreadable")
		garbage := []byte{1, 1, 2, 3} // version 1, cut short
		if _, _, err := st.Swap(context.Background(), []string{bad}, [][]byte{nil}, [][]byte{garbage}); err != nil {
			t.Fatal(err)
		}
		unreadable, err := StepEntities(context.Background(), st, v, txs, positions(len(txs)), make([]model.EntityValue, len(txs)*2))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(unreadable) != 1 || !strings.Contains(unreadable[0].Error(), bad) {
			t.Fatalf("%s: unreadable %v, want one naming %s", name, unreadable, bad)
		}
		// As if the key had been absent.
		ref := worker("unreadable-ref")
		if _, err := StepEntities(context.Background(), ref, v, txs, positions(len(txs)), make([]model.EntityValue, len(txs)*2)); err != nil {
			t.Fatal(err)
		}
		got, _ := st.Load(context.Background(), []string{bad})
		want, _ := ref.Load(context.Background(), []string{bad})
		if !bytes.Equal(got[0], want[0]) {
			t.Fatalf("%s: %s stored %x, as if absent %x", name, bad, got[0], want[0])
		}
		if c, _ := storedCount(t, st, bad, 30*24*time.Hour); c < 0.9*float64(n) {
			t.Fatalf("%s: %s counts %.2f transactions (decayed), the batch has %d", name, bad, c, n)
		}
		again, err := StepEntities(context.Background(), st, v, txs, positions(len(txs)), make([]model.EntityValue, len(txs)*2))
		if err != nil || len(again) != 0 {
			t.Fatalf("%s: the replaced value: %v %v", name, again, err)
		}
	}
}

// TestPipelineCountsUnreadableStates: through Process, a batch whose
// entity has an unreadable stored state is decided and committed, the
// state replaced, and fraudstream_entity_states_unreadable_total counts it.
func TestPipelineCountsUnreadableStates(t *testing.T) {
	b := entityBundle(t)
	cur := &Current{}
	cur.Swap(&Model{Bundle: b, Version: "1", Decider: NewFixed(0)})
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	store := &RedisEntityStore{Client: c}
	if err := c.Set(context.Background(), "fraudstream:entity:card:c1", "\x01garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	src, sink := &memSource{}, &captureSink{}
	p, err := New(Config{Source: src, Sink: sink, Models: cur, Alerts: "a", Dead: "d", Entities: store, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
	var msgs []kafka.Message
	for i := range 5 {
		v, _ := json.Marshal(map[string]any{"tx": fmt.Sprint(i), "ts": at.Add(time.Duration(i) * time.Hour).Format("2006-01-02 15:04:05"),
			"card": "c1", "terminal": "t1", "amount": 10 + i})
		msgs = append(msgs, kafka.Message{Topic: "tx", Partition: 0, Offset: int64(i), Value: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Process(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if len(src.committed) != 5 {
		t.Fatalf("%d committed", len(src.committed))
	}
	if n := testutil.ToFloat64(p.m.entityUnreadable); n != 1 {
		t.Fatalf("unreadable states counted %v, want 1", n)
	}
	var st entity.State
	got, _ := store.Load(ctx, []string{"card:c1"})
	if _, err := decodeStored(got[0], &st); err != nil || !st.Seen() {
		t.Fatalf("the replaced state: %v %v", st.Seen(), err)
	}
}

// TestNewerStateIsLeftAlone: a state a newer version wrote (a rollback,
// or two versions side by side) is neither replaced nor read: its
// entity's transactions get no value (NaN), the value stays as it was for
// the newer version, the batch is done, and the error says so once.
func TestNewerStateIsLeftAlone(t *testing.T) {
	v := entityView(t)
	rows := entityTxs(300, 13)
	txs := readTxs(v, rows)
	key := "terminal:" + txs[0].Keys[1]
	for name, worker := range stores(t) {
		st := worker("newer")
		future := append([]byte{entityStateVersionAfterThis()}, make([]byte, 100)...)
		if _, _, err := st.Swap(context.Background(), []string{key}, [][]byte{nil}, [][]byte{future}); err != nil {
			t.Fatal(err)
		}
		vals := make([]model.EntityValue, len(txs)*2)
		unreadable, err := StepEntities(context.Background(), st, v, txs, positions(len(txs)), vals)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(unreadable) != 1 || !errors.Is(unreadable[0], entity.ErrNewerState) || !strings.Contains(unreadable[0].Error(), key) {
			t.Fatalf("%s: unreadable %v, want one newer state naming %s", name, unreadable, key)
		}
		got, _ := st.Load(context.Background(), []string{key})
		if !bytes.Equal(got[0], future) {
			t.Fatalf("%s: the newer state was replaced: %x", name, got[0])
		}
		others := 0
		for i, tx := range txs {
			x := vals[i*2+1]
			if tx.Usable(1) && tx.Keys[1] == txs[0].Keys[1] {
				if !math.IsNaN(x.Ratio) || !math.IsNaN(x.Score) {
					t.Fatalf("%s: transaction %d of %s got a value %+v", name, i, key, x)
				}
			} else if tx.Usable(1) && !math.IsNaN(x.Ratio) {
				others++
			}
		}
		if others == 0 {
			t.Fatalf("%s: the other terminals got no values either", name)
		}
	}
}

// entityStateVersionAfterThis is a state version this build does not know.
func entityStateVersionAfterThis() byte {
	var s entity.State
	for b := byte(2); b < 0xA0; b++ {
		if err := s.UnmarshalBinary([]byte{b, 0}); errors.Is(err, entity.ErrNewerState) {
			return b
		}
	}
	panic("no version is newer")
}

// TestRedeliveryAcrossTheMillisecondUpgrade: states stored before event
// times kept milliseconds hold whole seconds. A batch stored by such a
// scorer but not committed, delivered again to one that reads the same
// times with their milliseconds, is still not counted again (it looked
// newer than the entity's latest, as a recreated topic's transactions do).
func TestRedeliveryAcrossTheMillisecondUpgrade(t *testing.T) {
	v := entityView(t)
	rows := entityTxs(400, 14)
	txs := readTxs(v, rows)
	whole := make([]model.Tx, len(rows))
	for i := range txs {
		txs[i].At = txs[i].At.Add(time.Duration(1+i%999) * time.Millisecond)
		whole[i] = txs[i]
		whole[i].At = txs[i].At.Truncate(time.Second)
	}
	pos := positions(len(txs))
	for name, worker := range stores(t) {
		st := worker("ms")
		if _, err := StepEntities(context.Background(), st, v, whole, pos, make([]model.EntityValue, len(txs)*2)); err != nil {
			t.Fatal(err)
		}
		keys := []string{"card:" + txs[0].Keys[0], "terminal:" + txs[0].Keys[1]}
		before, _ := st.Load(context.Background(), keys)
		if _, err := StepEntities(context.Background(), st, v, txs, pos, make([]model.EntityValue, len(txs)*2)); err != nil {
			t.Fatal(err)
		}
		after, _ := st.Load(context.Background(), keys)
		for k := range keys {
			if !bytes.Equal(before[k], after[k]) {
				t.Fatalf("%s: %s changed when its batch came again with milliseconds", name, keys[k])
			}
		}
	}
}

// writeCounter counts the keys a store is asked to write.
type writeCounter struct {
	EntityStore
	writes int
}

func (w *writeCounter) Swap(ctx context.Context, keys []string, prev, next [][]byte) ([]int, [][]byte, error) {
	w.writes += len(keys)
	return w.EntityStore.Swap(ctx, keys, prev, next)
}

// TestUnchangedStatesAreNotWritten: a batch that adds nothing to its
// entities (delivered again) writes nothing. Writing the same bytes back
// used to conflict with a worker moving the same entities on, round after
// round, until the compare-and-set gave up (TestSameBatchFromTwoWorkersCountsOnce
// under load).
func TestUnchangedStatesAreNotWritten(t *testing.T) {
	v := entityView(t)
	rows := entityTxs(200, 15)
	txs := readTxs(v, rows)
	pos := positions(len(txs))
	for name, worker := range stores(t) {
		st := &writeCounter{EntityStore: worker("unchanged")}
		if _, err := StepEntities(context.Background(), st, v, txs, pos, make([]model.EntityValue, len(txs)*2)); err != nil {
			t.Fatal(err)
		}
		if st.writes == 0 {
			t.Fatalf("%s: the first delivery wrote nothing", name)
		}
		st.writes = 0
		again := make([]model.EntityValue, len(txs)*2)
		if _, err := StepEntities(context.Background(), st, v, txs, pos, again); err != nil {
			t.Fatal(err)
		}
		if st.writes != 0 {
			t.Fatalf("%s: a redelivered batch wrote %d states", name, st.writes)
		}
	}
}
