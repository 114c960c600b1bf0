package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
func entityView(t *testing.T) *model.EntityView {
	t.Helper()
	v, err := entityBundle(t).NewEntityView()
	if err != nil || v == nil {
		t.Fatal(v, err)
	}
	return v
}

// entityBundle is a small model with an entity part over cards and terminals.
func entityBundle(t *testing.T) *model.Bundle {
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
func catView(t *testing.T) *model.EntityView {
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

// offlineValues is the offline path: one replay of rows in event time.
func offlineValues(v *model.EntityView, rows [][]string) []model.EntityValue {
	E := len(v.Part.Fields)
	txs := make([]model.Tx, len(rows))
	for i, r := range rows {
		v.Read(r, &txs[i])
	}
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
func stores(t *testing.T) map[string]func(ns string) EntityStore {
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
		if err := StepEntities(context.Background(), ws[k%workers], v, txs, out[start*E:end*E]); err != nil {
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
					if err := StepEntities(context.Background(), st, v, txs, make([]model.EntityValue, batch*2)); err != nil {
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
		got, err := worker("c").Load(context.Background(), []string{"terminal:7"})
		if err != nil || got[0] == nil {
			t.Fatal(got, err)
		}
		var s entity.State
		if err := s.UnmarshalBinary(got[0]); err != nil {
			t.Fatal(err)
		}
		out := make([]float64, 1)
		s.Features(entity.DefaultWindows, []entity.Feature{{Stat: entity.Count, Window: time.Hour}}, time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), 10, out)
		if n := math.Expm1(out[0]); math.Abs(n-2*perWorker) > 1e-6 {
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
