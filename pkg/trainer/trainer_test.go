package trainer

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

func setup(t *testing.T, n int) (stream.Config, *registry.Registry) {
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	ctx := context.Background()
	if err := stream.EnsureTopics(ctx, cfg, stream.Topic{Name: "transactions", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs []kafka.Message
	for i := range n {
		m := rng.IntN(4)
		v, _ := json.Marshal(map[string]any{"tx_id": fmt.Sprint(i), "card_id": fmt.Sprint(rng.IntN(99)),
			"amount": math.Round(math.Exp(float64(m)+0.3*rng.NormFloat64())*100) / 100, "merchant": fmt.Sprintf("m%d", m),
			"event_time": time.Now().Add(-time.Duration(rng.IntN(3600)) * time.Second).UTC().Format(time.RFC3339)})
		msgs = append(msgs, kafka.Message{Topic: "transactions", Key: []byte(fmt.Sprint(i)), Value: v})
	}
	msgs = append(msgs, kafka.Message{Topic: "transactions", Value: []byte("not json")})
	p, _ := stream.NewProducer(cfg, stream.ProducerOptions{})
	defer p.Close()
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	return cfg, reg
}

func newTrainer(t *testing.T, cfg stream.Config, reg *registry.Registry, owner string) *Trainer {
	// A fixed seed: the rounds' samples, and so their gates, repeat.
	tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: owner, MinRows: 500, Seed: 1,
		AE: ae.Config{Seed: 1, Epochs: 5, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTrainPromoteGateAndLeadership(t *testing.T) {
	ctx := context.Background()
	cfg, reg := setup(t, 3000)
	a := newTrainer(t, cfg, reg, "a")
	r, err := a.LeadAndTrain(ctx)
	if err != nil || r.Outcome != "promoted" || r.Version != 1 || r.BadRows != 1 || r.Rows < 2500 {
		t.Fatalf("first round: %+v, %v", r, err)
	}
	p, blob, err := reg.Current(ctx)
	if err != nil || p.Version != 1 || p.Digest != r.Digest {
		t.Fatal(p, r.Digest, err)
	}
	b, err := model.Unmarshal(blob)
	if err != nil || b.Encoder.Schema.IDField != "tx_id" || b.Meta.TimeFrom.IsZero() {
		t.Fatalf("stored bundle: %v %+v", err, b.Meta)
	}
	// A second replica is a follower while a leads.
	bt := newTrainer(t, cfg, reg, "b")
	if r, err := bt.LeadAndTrain(ctx); err != nil || r.Outcome != "follower" {
		t.Fatalf("second replica: %+v %v", r, err)
	}
}

func TestTooFewRowsSkips(t *testing.T) {
	cfg, reg := setup(t, 100)
	tr := newTrainer(t, cfg, reg, "a")
	r, err := tr.Train(context.Background())
	if err != nil || r.Outcome != "skipped" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := reg.CurrentVersion(context.Background()); err == nil {
		t.Fatal("a model was published from 100 rows")
	}
}

// TestPinAndFencing: a round while an operator has pinned a version records
// its candidate as not promoted, "pinned"; a trainer whose leader lock was
// taken over stores nothing.
func TestPinAndFencing(t *testing.T) {
	ctx := context.Background()
	cfg, reg := setup(t, 3000)
	a := newTrainer(t, cfg, reg, "a")
	if r, err := a.LeadAndTrain(ctx); err != nil || r.Outcome != "promoted" {
		t.Fatalf("first round: %+v %v", r, err)
	}
	if err := reg.Rollback(ctx, 1, true); err != nil {
		t.Fatal(err)
	}
	r, err := a.LeadAndTrain(ctx)
	if err != nil || r.Outcome != "rejected" || !strings.HasPrefix(r.Reason, "pinned") {
		t.Fatalf("round while pinned: %+v %v", r, err)
	}
	// The same window again: (almost) no rows newer than version 1's, so
	// the gate falls back to a random sample and says so.
	if !strings.Contains(r.HeldBack, "random rows of the window: only ") || !strings.Contains(r.HeldBack, "newer than version 1") {
		t.Fatalf("held back: %s", r.HeldBack)
	}
	if p, _ := reg.Pointer(ctx); p.Version != 1 {
		t.Fatalf("a pinned registry moved to %d", p.Version)
	}
	list, _ := reg.List(ctx)
	if len(list) != 2 || list[1].Promoted || !strings.HasPrefix(list[1].Reason, "pinned") || list[1].Digest != r.Digest {
		t.Fatalf("registry: %+v", list)
	}
	reg.Unpin(ctx)

	// Another replica takes the lock while a still believes it leads (a's
	// lock lapsed during a long round): a's store is refused.
	a.lock.Release(ctx)
	b := newTrainer(t, cfg, reg, "b")
	if r, err := b.LeadAndTrain(ctx); err != nil || r.Outcome != "promoted" {
		t.Fatalf("b: %+v %v", r, err)
	}
	before, _ := reg.List(ctx)
	if _, err := a.Train(ctx); !errors.Is(err, registry.ErrNotLeader) {
		t.Fatalf("a stored with a lost lock: %v", err)
	}
	if after, _ := reg.List(ctx); len(after) != len(before) {
		t.Fatalf("a fenced-out round stored a version: %+v", after)
	}
	if a.lock != nil {
		t.Fatal("a still thinks it leads")
	}
}

// produce writes gen rows (gateSchema order) as JSON messages to a new
// topic; extra names a key added to every message with a distinct value.
func produce(t *testing.T, cfg stream.Config, topic string, rows [][]string, extra ...string) {
	t.Helper()
	ctx := context.Background()
	if err := stream.EnsureTopics(ctx, cfg, stream.Topic{Name: topic, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	names := gateSchema.Names()
	msgs := make([]kafka.Message, len(rows))
	for i, row := range rows {
		m := map[string]string{}
		for j, n := range names {
			m[n] = row[j]
		}
		for _, k := range extra {
			m[k] = fmt.Sprint("j", i)
		}
		v, _ := json.Marshal(m)
		msgs[i] = kafka.Message{Topic: topic, Key: []byte(row[0]), Value: v}
	}
	p, _ := stream.NewProducer(cfg, stream.ProducerOptions{})
	defer p.Close()
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// shift moves gen rows' event times by d.
func shift(rows [][]string, d time.Duration) [][]string {
	for _, r := range rows {
		tm, _ := time.Parse(time.RFC3339, r[4])
		r[4] = tm.Add(d).Format(time.RFC3339)
	}
	return rows
}

// TestTrainGateOnNewerRows: a round holds back rows newer than the current
// model's training window and compares both models on them; a window with
// an 8% campaign that the current model flags is not promoted, a window of
// ordinary traffic is.
func TestTrainGateOnNewerRows(t *testing.T) {
	ctx := context.Background()
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	rng := rand.New(rand.NewPCG(5, 5))
	produce(t, cfg, "week1", gen(rng, 5000, normal, 0))
	produce(t, cfg, "week2-campaign", shift(gen(rng, 5000, normal, 0.08), 7*24*time.Hour))
	produce(t, cfg, "week2", shift(gen(rng, 5000, normal, 0), 7*24*time.Hour))
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	// A fixed clock makes the rounds' samples, and so the test, repeatable.
	now := time.Now()
	trainer := func(topic string, holdBack float64) *Trainer {
		tr, err := New(Config{Stream: cfg, Topic: topic, Registry: reg, Owner: "a", MinRows: 500, HoldBack: holdBack, Now: func() time.Time { return now },
			AE: ae.Config{Seed: 1, Epochs: 20, Hidden: 16, Bottleneck: 4, ValidationFraction: 0.2}})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	r, err := trainer("week1", 0.1).Train(ctx)
	if err != nil || r.Outcome != "promoted" || !strings.Contains(r.HeldBack, "no current model") {
		t.Fatalf("first round: %+v %v", r, err)
	}
	_, blob, _ := reg.Current(ctx)
	v1, _ := model.Unmarshal(blob)
	if end := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC); !v1.Meta.TimeTo.Before(end) || v1.Meta.TimeTo.Before(end.Add(-time.Hour)) {
		t.Fatalf("version 1's training window ends %s, want the newest event time of week 1", v1.Meta.TimeTo)
	}

	r, err = trainer("week2-campaign", 0.3).Train(ctx)
	t.Logf("campaign round: %+v; schema %+v", r.Gate, v1.Encoder.Schema)
	if err != nil || r.Outcome != "rejected" || !strings.Contains(r.Reason, "campaign") || !strings.Contains(r.HeldBack, "newer than version 1") {
		t.Fatalf("campaign round: %+v %v", r, err)
	}
	if p, _ := reg.Pointer(ctx); p.Version != 1 {
		t.Fatalf("the campaign candidate became current (%d)", p.Version)
	}
	r, err = trainer("week2", 0.3).Train(ctx)
	if err != nil || r.Outcome != "promoted" || r.Gate.Rows != 1500 || !strings.Contains(r.HeldBack, "1500 of the 5000 rows newer than version 1") {
		t.Fatalf("ordinary round: %+v %v", r, err)
	}
}

// TestRunRetriesWithBackoff: after rounds that fail (Redis down) or are
// skipped (too few rows) the daemon tries again after RetryMin, doubling,
// not after a whole Every (an hour here), and promotes as soon as it can.
func TestRunRetriesWithBackoff(t *testing.T) {
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	rng := rand.New(rand.NewPCG(9, 9))
	produce(t, cfg, "transactions", gen(rng, 100, normal, 0))
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1}), Timeout: time.Second})
	mr.Close()
	rounds := make(chan Round, 100)
	tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500, Every: time.Hour, Seed: 1,
		RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond, AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4},
		OnRound: func(r Round) { rounds <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	next := func(want string) {
		t.Helper()
		for {
			select {
			case r := <-rounds:
				if r.Outcome == want {
					return
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no %s round within 30s (Every is an hour: no retry)", want)
			}
		}
	}
	next("failed")
	next("failed")
	mr.Restart()
	next("skipped")
	next("skipped")
	produce(t, cfg, "transactions", gen(rng, 3000, normal, 0))
	next("promoted")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReady(t *testing.T) {
	ctx := context.Background()
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	produce(t, e.Config(), "transactions", gen(rand.New(rand.NewPCG(1, 1)), 10, normal, 0))
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})})
	mk := func(topic string) *Trainer {
		tr, err := New(Config{Stream: e.Config(), Topic: topic, Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	tr := mk("transactions")
	if err := tr.Ready(ctx); err != nil {
		t.Fatalf("ready with Redis and Kafka up: %v", err)
	}
	if err := mk("elsewhere").Ready(ctx); err == nil || !strings.Contains(err.Error(), "kafka") || !strings.Contains(err.Error(), "elsewhere does not exist") {
		t.Fatalf("missing topic: %v", err)
	}
	mr.Close()
	if err := tr.Ready(ctx); err == nil || !strings.Contains(err.Error(), "redis") {
		t.Fatalf("Redis down: %v", err)
	}
	mr.Restart()
	e.Close()
	if err := tr.Ready(ctx); err == nil || !strings.Contains(err.Error(), "kafka") || strings.Contains(err.Error(), "redis") {
		t.Fatalf("Kafka down: %v", err)
	}
}

// TestSchemaPinned: the first promoted model's schema is pinned; later
// rounds train on it (decoding only its fields) even when the window would
// infer other kinds; a --schema that changes kinds is refused unless
// allowed, and pinned once a model trained on it is promoted.
func TestSchemaPinned(t *testing.T) {
	ctx := context.Background()
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	rng := rand.New(rand.NewPCG(3, 3))
	produce(t, cfg, "day1", gen(rng, 2000, normal, 0))
	// Day 2: merchant ids that look like numbers, and a key never seen.
	day2 := gen(rng, 2000, normal, 0)
	for _, r := range day2 {
		r[1] = strings.TrimPrefix(r[1], "m")
	}
	produce(t, cfg, "day2", shift(day2, 24*time.Hour), "junk")
	names := append(gateSchema.Names(), "junk")
	if got := features.InferSchema(names, withJunk(day2), features.InferOptions{}); got.Fields[1].Kind == features.Categorical || got.Index("junk") < 0 {
		t.Fatalf("test data: day 2 alone should infer merchant other than categorical and see junk: %+v", got.Fields)
	}
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	trainer := func(topic string, s *features.Schema, allow bool) *Trainer {
		// The gate is off: day 2's merchant ids are new to day 1's model,
		// which flags what a model trained on day 2 finds normal, and the
		// gate rightly doubts such a candidate on some held-back samples
		// (about one in sixty drawn from the clock; CI met one). Its checks
		// are TestGate*'s; this test is about the schema.
		tr, err := New(Config{Stream: cfg, Topic: topic, Registry: reg, Owner: "a", MinRows: 500, Schema: s, AllowSchemaChange: allow,
			Seed: 1, Gate: Gate{MaxAlertShift: -1, MaxScoreShift: -1},
			AE: ae.Config{Seed: 1, Epochs: 10, Hidden: 16, Bottleneck: 4}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	if r, err := trainer("day1", nil, false).Train(ctx); err != nil || r.Outcome != "promoted" {
		t.Fatalf("day 1: %+v %v", r, err)
	}
	pinned, err := reg.Schema(ctx)
	if err != nil || pinned.Fields[pinned.Index("merchant")].Kind != features.Categorical {
		t.Fatalf("pinned after the first promotion: %+v %v", pinned, err)
	}
	// Day 2 trains on the pinned schema, whatever day 2 alone would infer.
	r, err := trainer("day2", nil, false).Train(ctx)
	if err != nil || r.Outcome == "failed" || r.Version != 2 {
		t.Fatalf("day 2: %+v %v", r, err)
	}
	blob, _ := reg.Get(ctx, r.Version)
	b2, _ := model.Unmarshal(blob)
	if d := features.DiffSchemas(pinned, &b2.Encoder.Schema); len(d) != 0 || b2.Encoder.Schema.Index("junk") >= 0 {
		t.Fatalf("day 2's model strays from the pinned schema: %v, %+v", d, b2.Encoder.Schema.Fields)
	}

	// An operator's schema that turns channel into an id.
	edited := *pinned
	edited.Fields = slices.Clone(pinned.Fields)
	edited.Fields[edited.Index("channel")].Kind = features.ID
	refused := trainer("day1", &edited, false)
	if err := refused.CheckSchema(ctx); !errors.Is(err, ErrSchemaChange) || !strings.Contains(err.Error(), "channel: categorical -> id") {
		t.Fatalf("check of a kind-changing schema: %v", err)
	}
	if _, err := refused.Train(ctx); !errors.Is(err, ErrSchemaChange) {
		t.Fatalf("round with a kind-changing schema: %v", err)
	}
	r, err = trainer("day2", &edited, true).Train(ctx)
	if err != nil || r.Outcome != "promoted" {
		t.Fatalf("allowed schema change: %+v %v", r, err)
	}
	if s, _ := reg.Schema(ctx); s.Fields[s.Index("channel")].Kind != features.ID {
		t.Fatalf("the allowed schema was not pinned on promotion: %+v", s.Fields)
	}
}

func withJunk(rows [][]string) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = append(slices.Clone(r), fmt.Sprint("j", i))
	}
	return out
}

// TestTrainDecodesMessages: the window is decoded one message per record
// (a pretty-printed message is one record, not several bad lines) and a
// message with 60,000 keys is one bad row, not 60,000 columns for every row.
func TestTrainDecodesMessages(t *testing.T) {
	ctx := context.Background()
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	rows := gen(rand.New(rand.NewPCG(4, 4)), 1000, normal, 0)
	produce(t, cfg, "transactions", rows)
	var wide strings.Builder
	wide.WriteString("{")
	for i := range 60000 {
		fmt.Fprintf(&wide, `"k%d":%d,`, i, i)
	}
	wide.WriteString(`"amount":"1"}`)
	pretty := "{\n  \"tx_id\": \"pretty\",\n  \"merchant\": \"m1\",\n  \"channel\": \"pos\",\n  \"amount\": \"12.5\"\n}"
	p, _ := stream.NewProducer(cfg, stream.ProducerOptions{})
	defer p.Close()
	if err := p.Write(ctx, kafka.Message{Topic: "transactions", Value: []byte(wide.String())}, kafka.Message{Topic: "transactions", Value: []byte(pretty)}); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	// The gate is off: it doubted this two-epoch model on about one
	// held-back sample in fifteen, and this test is about decoding.
	tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, MinRows: 500, Seed: 1, Gate: Gate{MaxAlertShift: -1, MaxScoreShift: -1},
		AE: ae.Config{Seed: 1, Epochs: 2, Hidden: 8, Bottleneck: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	r, err := tr.Train(ctx)
	if err != nil || r.Outcome != "promoted" || r.BadRows != 1 || r.Rows+r.Gate.Rows != 1001 {
		t.Fatalf("round: %+v %v", r, err)
	}
	_, blob, _ := reg.Current(ctx)
	b, _ := model.Unmarshal(blob)
	if n := len(b.Encoder.Schema.Fields); n != 5 {
		t.Fatalf("schema of %d fields: %+v", n, b.Encoder.Schema.Fields)
	}
}

// TestRampSchedule: a young deployment retrains after 1m, 2m, 4m... while
// its rounds train on fewer rows than MaxRows, then every Every.
func TestRampSchedule(t *testing.T) {
	tr := &Trainer{cfg: Config{Every: time.Hour, MaxRows: 200_000, RampStart: time.Minute}}
	ramp := tr.cfg.RampStart
	var waits []time.Duration
	for _, rows := range []int{29_000, 120_000, 190_000} {
		var w time.Duration
		w, ramp = tr.next(Round{Outcome: "promoted", Rows: rows}, ramp)
		waits = append(waits, w)
	}
	w, _ := tr.next(Round{Outcome: "promoted", Rows: 200_000}, ramp)
	waits = append(waits, w)
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, time.Hour}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	// Followers and skipped rounds keep their own schedules; off when negative.
	if w, _ := tr.next(Round{Outcome: "follower"}, time.Minute); w != time.Hour {
		t.Fatalf("follower waits %v", w)
	}
	tr.cfg.RampStart = -1
	if w, _ := tr.next(Round{Outcome: "promoted", Rows: 10}, -1); w != time.Hour {
		t.Fatalf("ramp off: %v", w)
	}
}

// TestLabelledFraudIsKeptOut: transactions whose latest label on the
// labels topic is fraud are not trained on; one relabelled legitimate
// later is, as are those without a label. The fraud rows carry an amount
// of 1,000,000 that nothing else has, so the fitted encoder's range shows
// whether they were in training.
func TestLabelledFraudIsKeptOut(t *testing.T) {
	ctx := context.Background()
	cfg, reg := setup(t, 3000)
	now := time.Now().UTC()
	var txs, lbls []kafka.Message
	label := func(id, l string, at time.Time) kafka.Message {
		v, _ := json.Marshal(map[string]any{"transaction_id": id, "label": l, "analyst": "ana", "at": at, "source": "case"})
		return kafka.Message{Topic: "labels", Key: []byte(id), Value: v}
	}
	for i := range 60 {
		id, amount := fmt.Sprintf("f%d", i), 1e6
		if i >= 50 {
			amount = 5e5 // relabelled legitimate below: stays in
		}
		v, _ := json.Marshal(map[string]any{"tx_id": id, "card_id": "7", "amount": amount, "merchant": "m1", "event_time": now.Format(time.RFC3339)})
		txs = append(txs, kafka.Message{Topic: "transactions", Key: []byte(id), Value: v})
		lbls = append(lbls, label(id, "fraud", now))
		if i >= 50 {
			lbls = append(lbls, label(id, "legitimate", now.Add(time.Minute)))
		}
	}
	lbls = append(lbls, label("1", "unsure", now), kafka.Message{Topic: "labels", Value: []byte("not a label")})
	if err := stream.EnsureTopics(ctx, cfg, stream.Topic{Name: "labels", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p, _ := stream.NewProducer(cfg, stream.ProducerOptions{})
	defer p.Close()
	if err := p.Write(ctx, append(txs, lbls...)...); err != nil {
		t.Fatal(err)
	}
	maxAmount := func(r Round) float64 {
		blob, err := reg.Get(ctx, r.Version)
		if err != nil {
			t.Fatal(err)
		}
		b, err := model.Unmarshal(blob)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range b.Encoder.Fields {
			if f.Name == "amount" {
				return f.Max
			}
		}
		t.Fatal("no amount field")
		return 0
	}

	tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500, Labels: "labels",
		AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tr.Train(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Excluded != 50 {
		t.Errorf("excluded %d rows, want the 50 labelled fraud", r.Excluded)
	}
	// The entity score's fit (card_id is inferred as an entity) steps the
	// cards' states with them, as a scorer does, but fits nothing on them.
	if !strings.Contains(r.Entity, "50 labelled fraud only stepped the states") {
		t.Errorf("entity fit %q does not keep the labelled fraud out", r.Entity)
	}
	if m := maxAmount(r); m >= 1e6 {
		t.Errorf("the model's amount range reaches %v: it trained on labelled fraud", m)
	}
	// Without the labels topic the same window trains on them.
	tr2, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500,
		AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := tr2.Train(ctx)
	if err != nil || r2.Excluded != 0 || maxAmount(r2) != 1e6 {
		t.Fatalf("without labels: %+v %v", r2, err)
	}
	// A labels topic that does not exist is no labels, not an error.
	tr3, _ := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: "a", MinRows: 500, Labels: "no-such-topic",
		AE: ae.Config{Seed: 1, Epochs: 2, Hidden: 16, Bottleneck: 4}})
	if r3, err := tr3.Train(ctx); err != nil || r3.Excluded != 0 {
		t.Fatalf("missing labels topic: %+v %v", r3, err)
	}
}
