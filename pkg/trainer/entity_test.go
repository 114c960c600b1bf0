package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// habitTraffic writes n transactions of 300 cards, each spending around
// its own typical amount (from 3 to 1,000), at event times (and Kafka
// timestamps) spread over the 23 hours before end.
func habitTraffic(rng *rand.Rand, n int, end time.Time, id0 int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		card := rng.IntN(300)
		typical := math.Exp(1 + 6*float64(card)/300)
		at := end.Add(-time.Duration(rng.Int64N(int64(23 * time.Hour))))
		v, _ := json.Marshal(map[string]any{"tx_id": fmt.Sprint("t", id0+i), "card_id": fmt.Sprint("c", card), "merchant": fmt.Sprintf("m%d", rng.IntN(5)),
			"amount": math.Round(typical*math.Exp(0.2*rng.NormFloat64())*100) / 100, "event_time": at.UTC().Format(time.RFC3339)})
		msgs[i] = kafka.Message{Topic: "transactions", Key: []byte(fmt.Sprint("c", card)), Value: v, Time: at}
	}
	return msgs
}

// habitTopic starts an embedded broker with a two-partition
// "transactions" topic.
func habitTopic(t *testing.T) stream.Config {
	t.Helper()
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	if err := stream.EnsureTopics(context.Background(), cfg, stream.Topic{Name: "transactions", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// habitRow is a habitTraffic message's record in s's field order.
func habitRow(s *features.Schema, value []byte) []string {
	var rec map[string]any
	json.Unmarshal(value, &rec)
	row := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		row[i] = fmt.Sprint(rec[f.Name])
	}
	return row
}

// TestTrainFitsTheEntityScoreWithHistory: a round on a topic whose cards
// have habits infers card_id as an entity and publishes a model with an
// entity score, fitted on the window's transactions after replaying the
// history before it (HistoryWindow) in event-time order; that model scores
// a card's sudden 30x amount by its habit. Without history, the same
// window fits its tails cold.
func TestTrainFitsTheEntityScoreWithHistory(t *testing.T) {
	ctx := context.Background()
	cfg := habitTopic(t)
	now := time.Now()
	rng := rand.New(rand.NewPCG(7, 7))
	// Two days of history, then the round's 24-hour window.
	history := append(habitTraffic(rng, 2000, now.Add(-48*time.Hour), 0), habitTraffic(rng, 2000, now.Add(-24*time.Hour-time.Minute), 2000)...)
	window := habitTraffic(rng, 3000, now.Add(-time.Minute), 4000)
	window = append(window, kafka.Message{Topic: "transactions", Value: []byte("not json")})
	p, _ := stream.NewProducer(cfg, stream.ProducerOptions{})
	defer p.Close()
	if err := p.Write(ctx, append(history, window...)...); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	round := func(historyWindow time.Duration, maxRows int) (Round, *model.Bundle) {
		tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500, HistoryWindow: historyWindow, EntityMaxRows: maxRows,
			Now: func() time.Time { return now }, AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4}})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		r, err := tr.Train(ctx)
		if err != nil || (r.Outcome != "promoted" && r.Outcome != "rejected") {
			t.Fatalf("round: %+v %v", r, err)
		}
		blob, err := reg.Get(ctx, r.Version)
		if err != nil {
			t.Fatal(err)
		}
		b, err := model.Unmarshal(blob)
		if err != nil {
			t.Fatal(err)
		}
		return r, b
	}

	r, b := round(0, 0) // the defaults: 30 days back, 2,000,000 transactions
	if b.Entity == nil {
		t.Fatalf("the published model has no entity part; round's entity fit: %q, schema entities %v", r.Entity, b.Encoder.Schema.EntityFields)
	}
	if !slices.Equal(b.Entity.Fields, []string{"card_id"}) || b.Entity.Rows != 3000 || b.Entity.HistoryRows != 4000 {
		t.Fatalf("entity part fields %v on %d rows after %d history rows, want card_id on the window's 3000 after 4000; %s",
			b.Entity.Fields, b.Entity.Rows, b.Entity.HistoryRows, r.Entity)
	}
	if !strings.Contains(r.Entity, "1 records unreadable") {
		t.Errorf("round's entity line %q does not count the unreadable record", r.Entity)
	}

	// The published model scores by habit: replay everything, then card
	// c150 (typical amount ~55) spends 30 times that.
	v, err := b.NewEntityView()
	if err != nil {
		t.Fatal(err)
	}
	rep := v.NewReplay()
	var txs []model.Tx
	s := &b.Encoder.Schema
	for _, m := range append(history, window[:3000]...) {
		var tx model.Tx
		v.Read(habitRow(s, m.Value), &tx)
		txs = append(txs, tx)
	}
	vals := make([]model.EntityValue, 1)
	for _, i := range model.ReplayOrder(txs) {
		rep.Step(&txs[i], vals)
	}
	typical := math.Exp(1 + 6*150.0/300)
	rep.Step(&model.Tx{Keys: []string{"c150"}, At: now, HasAt: true, Amount: 30 * typical}, vals)
	dae := b.Calibration.Values[len(b.Calibration.Values)/2] // an ordinary DAE score
	if joined, by := v.Join(dae, vals); by != 0 || !(joined > dae) {
		t.Fatalf("a 30x amount for card c150 (value %+v) joined to %v by entity %d, want the card's habit to raise the DAE's %v", vals[0], joined, by, dae)
	}

	// No history: the window's transactions alone.
	r, b = round(-1, 0)
	if b.Entity == nil || b.Entity.Rows != 3000 || b.Entity.HistoryRows != 0 {
		t.Fatalf("without history: entity part %+v (%s)", b.Entity, r.Entity)
	}
	// A bound on the replay leaves out the oldest history, and says so.
	r, b = round(0, 5000)
	if b.Entity == nil || b.Entity.Rows != 3000 || b.Entity.HistoryRows != 1999 || !strings.Contains(r.Entity, "2001 older transactions left out") {
		t.Fatalf("replay bounded to 5000 of 7001: entity part %+v (%s)", b.Entity, r.Entity)
	}
}

// TestPromotedRoundSeedsTheScorersEntityStates: once a model with an
// entity score is promoted, the entity states its replay built are in the
// scorers' store where it had none, equal to an offline replay's; an
// entity the store held is left alone; and scorers that then read the same
// transactions from the topic (a new group starts at the earliest offset)
// count none of them again, while the next transaction counts.
func TestPromotedRoundSeedsTheScorersEntityStates(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	cfg, msgs, _, reg, store := seedSetup(t, now, 8)
	var held entity.State
	held.Update(entity.DefaultWindows, now, 1)
	if _, _, err := store.Swap(ctx, []string{"card_id:c7"}, [][]byte{nil}, [][]byte{held.AppendBinary(nil)}); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500, Entities: store,
		Now: func() time.Time { return now }, AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	r, err := tr.Train(ctx)
	if err != nil || r.Outcome != "promoted" {
		t.Fatalf("round: %+v %v", r, err)
	}
	if r.EntitySeed != "299 entity states seeded, 1 already stored" {
		t.Fatalf("seeding said %q", r.EntitySeed)
	}
	blob, err := reg.Get(ctx, r.Version)
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.Unmarshal(blob)
	if err != nil || b.Entity == nil {
		t.Fatal(b, err)
	}
	v, err := b.NewEntityView()
	if err != nil {
		t.Fatal(err)
	}

	// The topic as a scorer reads it: every message with its position.
	txs, pos := readTopic(t, cfg, v, &b.Encoder.Schema)
	if len(txs) != len(msgs) {
		t.Fatalf("read %d transactions back, wrote %d", len(txs), len(msgs))
	}
	rep := v.NewReplay()
	vals := make([]model.EntityValue, 1)
	for _, i := range model.ReplayOrder(txs) {
		rep.Step(&txs[i], vals)
	}
	var keys []string
	want := map[string][]byte{}
	rep.Each(func(field, key string, st *entity.State) {
		keys = append(keys, field+":"+key)
		want[field+":"+key] = st.AppendBinary(nil)
	})
	seeded, err := store.Load(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	compare := func(when string, got [][]byte) {
		t.Helper()
		for i, k := range keys {
			if k == "card_id:c7" {
				if !slices.Equal(got[i], held.AppendBinary(nil)) {
					t.Fatalf("%s: the store's own state of c7 was replaced: %x", when, got[i])
				}
				continue
			}
			// The stored value ends with the state (after the positions).
			if len(got[i]) < len(want[k]) || !slices.Equal(got[i][len(got[i])-len(want[k]):], want[k]) {
				t.Fatalf("%s: %s is stored as %x, the offline replay's state is %x", when, k, got[i], want[k])
			}
		}
	}
	compare("seeded", seeded)

	// Scorers read the whole topic from the start, in batches: nothing is
	// counted twice.
	for from := 0; from < len(txs); from += 500 {
		to := min(len(txs), from+500)
		if _, err := pipeline.StepEntities(ctx, store, v, txs[from:to], pos[from:to], make([]model.EntityValue, to-from)); err != nil {
			t.Fatal(err)
		}
	}
	after, err := store.Load(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if k != "card_id:c7" && !slices.Equal(after[i], seeded[i]) {
			t.Fatalf("re-reading the topic changed %s: %x, seeded %x", k, after[i], seeded[i])
		}
	}
	// The next transaction of c150 counts.
	next := []model.Tx{{Keys: []string{"c150"}, At: now, HasAt: true, Amount: 50}}
	if _, err := pipeline.StepEntities(ctx, store, v, next, []pipeline.Position{{Partition: 0, Offset: 1 << 20}}, make([]model.EntityValue, 1)); err != nil {
		t.Fatal(err)
	}
	got, _ := store.Load(ctx, []string{"card_id:c150"})
	if slices.Equal(got[0], seeded[slices.Index(keys, "card_id:c150")]) {
		t.Fatal("a new transaction of c150 left its seeded state as it was")
	}
}

// seedSetup writes a day of history and a window of habitTraffic (seeded
// by seed) to a fresh topic, and gives the producer, a registry and an
// entity store on a fresh miniredis, for the seeding tests.
func seedSetup(t *testing.T, now time.Time, seed uint64) (stream.Config, []kafka.Message, *stream.Producer, *registry.Registry, *pipeline.RedisEntityStore) {
	t.Helper()
	cfg := habitTopic(t)
	rng := rand.New(rand.NewPCG(seed, seed))
	msgs := append(habitTraffic(rng, 2000, now.Add(-24*time.Hour-time.Minute), 0), habitTraffic(rng, 3000, now.Add(-time.Minute), 2000)...)
	p, err := stream.NewProducer(cfg, stream.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Write(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	t.Cleanup(func() { rc.Close() })
	reg, _ := registry.New(registry.Config{Client: rc})
	return cfg, msgs, p, reg, &pipeline.RedisEntityStore{Client: rc, Prefix: "fraudstream:model:entity:"}
}

// readTopic reads the two-partition "transactions" topic as a scorer does:
// every message decoded by v, with its position.
func readTopic(t *testing.T, cfg stream.Config, v *model.EntityView, s *features.Schema) ([]model.Tx, []pipeline.Position) {
	t.Helper()
	var txs []model.Tx
	var pos []pipeline.Position
	for part := range 2 {
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: "transactions", Partition: part, MaxWait: 100 * time.Millisecond})
		for {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := rd.ReadMessage(rctx)
			cancel()
			if err != nil {
				break
			}
			var tx model.Tx
			v.Read(habitRow(s, m.Value), &tx)
			txs, pos = append(txs, tx), append(pos, pipeline.Position{Partition: int32(part), Offset: m.Offset})
		}
		rd.Close()
	}
	return txs, pos
}

// TestSeedCatchesUpWithTheScorers: scorers whose Redis came back empty
// step card c150's new transactions while the trainer's round runs, so the
// stored state records positions past the round's replay. The trainer
// reads what arrived since before seeding, and replaces that young state
// with one counting all of the card's history; when more arrived than the
// catch-up may read (a tenth of EntityMaxRows), the state stays the
// scorers' and the round says why.
func TestSeedCatchesUpWithTheScorers(t *testing.T) {
	for _, c := range []struct {
		maxRows  int
		replaced bool
		line     string
	}{
		{0, true, "299 entity states seeded, 1 replaced by the replay's longer history, 0 already stored"},
		{500, false, " entity states seeded, 1 already stored; 60 transactions arrived since the replay, more than 50 to catch up"},
	} {
		t.Run(fmt.Sprint("EntityMaxRows=", c.maxRows), func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			cfg, _, p, reg, store := seedSetup(t, now, 9)
			tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500, Entities: store,
				EntityMaxRows: c.maxRows, Now: func() time.Time { return now }, AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			var young []byte
			tr.beforeSeed = func(ctx context.Context) {
				// 60 transactions of c150 arrive, and scorers that began
				// it afresh step them.
				var more []kafka.Message
				for i := range 60 {
					v, _ := json.Marshal(map[string]any{"tx_id": fmt.Sprint("n", i), "card_id": "c150", "merchant": "m1",
						"amount": 55.0, "event_time": now.Add(time.Duration(i) * time.Second).UTC().Format(time.RFC3339)})
					more = append(more, kafka.Message{Topic: "transactions", Key: []byte("c150"), Value: v, Time: now})
				}
				if err := p.Write(ctx, more...); err != nil {
					t.Fatal(err)
				}
				blob, err := reg.Get(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := model.Unmarshal(blob)
				v, err := b.NewEntityView()
				if err != nil {
					t.Fatal(err)
				}
				txs, pos := readTopic(t, cfg, v, &b.Encoder.Schema)
				var newTxs []model.Tx
				var newPos []pipeline.Position
				for i := range txs {
					if txs[i].At.After(now.Add(-30 * time.Second)) { // the topic's others are a minute older or more
						newTxs, newPos = append(newTxs, txs[i]), append(newPos, pos[i])
					}
				}
				if len(newTxs) != 60 {
					t.Fatalf("read back %d of the 60 new transactions", len(newTxs))
				}
				txs, pos = newTxs, newPos
				if _, err := pipeline.StepEntities(ctx, store, v, txs, pos, make([]model.EntityValue, len(txs))); err != nil {
					t.Fatal(err)
				}
				got, _ := store.Load(ctx, []string{"card_id:c150"})
				young = got[0]
			}
			r, err := tr.Train(ctx)
			if err != nil || r.Outcome != "promoted" {
				t.Fatalf("round: %+v %v", r, err)
			}
			if !strings.HasSuffix(r.EntitySeed, c.line) {
				t.Errorf("seeding said %q, want it to end %q", r.EntitySeed, c.line)
			}
			got, _ := store.Load(ctx, []string{"card_id:c150"})
			if !c.replaced {
				if !slices.Equal(got[0], young) {
					t.Fatalf("c150's state changed although the catch-up read nothing: %x, the scorers' %x", got[0], young)
				}
				return
			}
			// Replaced by the state of all c150's transactions on the topic.
			blob, _ := reg.Get(ctx, r.Version)
			b, _ := model.Unmarshal(blob)
			v, _ := b.NewEntityView()
			txs, _ := readTopic(t, cfg, v, &b.Encoder.Schema)
			rep := v.NewReplay()
			vals := make([]model.EntityValue, 1)
			n := 0
			for _, i := range model.ReplayOrder(txs) {
				rep.Step(&txs[i], vals)
				if txs[i].Keys[0] == "c150" {
					n++
				}
			}
			var want []byte
			rep.Each(func(field, key string, st *entity.State) {
				if key == "c150" {
					want = st.AppendBinary(nil)
				}
			})
			if n < 70 || len(got[0]) < len(want) || !slices.Equal(got[0][len(got[0])-len(want):], want) {
				t.Fatalf("c150 (%d transactions on the topic) is stored as %x, the replay of the whole topic's is %x", n, got[0], want)
			}
		})
	}
}
