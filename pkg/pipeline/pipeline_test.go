package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/fleet"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

var schema = &features.Schema{
	Fields: []features.Field{
		{Name: "tx_id", Kind: features.ID},
		{Name: "card_id", Kind: features.ID},
		{Name: "amount", Kind: features.Numeric},
		{Name: "merchant", Kind: features.Categorical},
		{Name: "ts", Kind: features.Timestamp, Layout: "2006-01-02T15:04:05Z07:00"},
	},
	IDField: "tx_id", KeyField: "card_id", TimeField: "ts",
}

func txn(rng *rand.Rand, id string, anomalous bool) map[string]any {
	m := rng.IntN(4)
	amt := math.Round(math.Exp(float64(m)+0.3*rng.NormFloat64())*100) / 100
	h := 8 + rng.IntN(12)
	if anomalous {
		amt, h = 25000, 3
	}
	return map[string]any{"tx_id": id, "card_id": fmt.Sprintf("card-%d", rng.IntN(50)), "amount": amt,
		"merchant": fmt.Sprintf("m%d", m), "ts": fmt.Sprintf("2026-11-%02dT%02d:%02d:00Z", 1+rng.IntN(27), h, rng.IntN(60))}
}

func bundle(t *testing.T) *model.Bundle {
	rng := rand.New(rand.NewPCG(1, 1))
	var rows [][]string
	for i := range 3000 {
		r := txn(rng, fmt.Sprint(i), false)
		rows = append(rows, []string{r["tx_id"].(string), r["card_id"].(string), fmt.Sprint(r["amount"]), r["merchant"].(string), r["ts"].(string)})
	}
	b, err := model.Fit(schema, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 8, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type env struct {
	cfg                      stream.Config
	tx, alerts, scores, dead string
}

func setup(t *testing.T, ctx context.Context) env {
	var cfg stream.Config
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		cfg = stream.Config{Brokers: strings.Split(b, ",")}
	} else {
		e, err := stream.StartEmbedded(0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		cfg = e.Config()
	}
	sfx := fmt.Sprint(time.Now().UnixNano())
	en := env{cfg: cfg, tx: "tx-" + sfx, alerts: "alerts-" + sfx, scores: "scores-" + sfx, dead: "dead-" + sfx}
	err := stream.EnsureTopics(ctx, cfg, stream.Topic{Name: en.tx, Partitions: 3}, stream.Topic{Name: en.alerts},
		stream.Topic{Name: en.scores, Partitions: 3}, stream.Topic{Name: en.dead})
	if err != nil {
		t.Fatal(err)
	}
	return en
}

// drain reads topic until done says so, or fails after a minute.
func drain(t *testing.T, ctx context.Context, cfg stream.Config, topic string, done func([]kafka.Message) bool) []kafka.Message {
	t.Helper()
	c, err := stream.NewConsumer(cfg, topic, "check-"+topic, stream.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got []kafka.Message
	for !done(got) {
		b, err := c.FetchBatch(ctx, nil, 1000, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("reading %s after %d messages: %v", topic, len(got), err)
		}
		got = append(got, b...)
	}
	return got
}

func TestPipelineEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	en := setup(t, ctx)
	b := bundle(t)
	cur := &Current{}
	cur.Swap(&Model{Bundle: b, Version: "v1", Decider: NewCalibrated(b, 0.995)})

	// 600 normal transactions, 6 strange ones, 3 that are not JSON.
	rng := rand.New(rand.NewPCG(7, 7))
	prod, _ := stream.NewProducer(en.cfg, stream.ProducerOptions{})
	defer prod.Close()
	var msgs []kafka.Message
	anomalies := map[string]bool{}
	for i := range 606 {
		id := fmt.Sprintf("t%04d", i)
		strange := i%101 == 100
		if strange {
			anomalies[id] = true
		}
		v, _ := json.Marshal(txn(rng, id, strange))
		msgs = append(msgs, kafka.Message{Topic: en.tx, Key: []byte(fmt.Sprint(i % 13)), Value: v})
	}
	for i := range 3 {
		msgs = append(msgs, kafka.Message{Topic: en.tx, Key: []byte("bad"), Value: []byte(fmt.Sprintf(`{"tx_id": "b%d", "amount": `, i))})
	}
	if err := prod.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	src, err := stream.NewConsumer(en.cfg, en.tx, "scorers", stream.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	p, err := New(Config{Source: src, Sink: prod, Models: cur, Alerts: en.alerts, Scores: en.scores, Dead: en.dead, Metrics: reg, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = p.Run(runCtx) })

	ids := map[string]string{}
	scores := drain(t, ctx, en.cfg, en.scores, func(got []kafka.Message) bool {
		for _, m := range got {
			var d Decision
			if err := json.Unmarshal(m.Value, &d); err != nil {
				t.Fatalf("score %q: %v", m.Value, err)
			}
			ids[d.TransactionID] = d.ModelVersion
		}
		return len(ids) >= 606
	})
	_ = scores
	for i := range 606 {
		if v, ok := ids[fmt.Sprintf("t%04d", i)]; !ok || v != "v1" {
			t.Fatalf("t%04d: decision %q (present %v)", i, v, ok)
		}
	}
	dead := drain(t, ctx, en.cfg, en.dead, func(got []kafka.Message) bool { return len(got) >= 3 })
	for _, m := range dead {
		if !strings.HasPrefix(string(m.Value), `{"tx_id": "b`) || stream.Header(m, stream.HeaderTopic) != en.tx ||
			stream.Header(m, stream.HeaderOffset) == "" || !strings.Contains(stream.Header(m, stream.HeaderReason), "undecodable") {
			t.Fatalf("dead letter %q %v", m.Value, m.Headers)
		}
	}
	alerts := map[string]Alert{}
	drain(t, ctx, en.cfg, en.alerts, func(got []kafka.Message) bool {
		for _, m := range got {
			var a Alert
			if err := json.Unmarshal(m.Value, &a); err != nil {
				t.Fatalf("alert %q: %v", m.Value, err)
			}
			alerts[a.TransactionID] = a
		}
		n := 0
		for id := range anomalies {
			if _, ok := alerts[id]; ok {
				n++
			}
		}
		return n == len(anomalies)
	})
	for id := range anomalies {
		a := alerts[id]
		if a.ModelVersion != "v1" || len(a.Reasons) == 0 || len(a.Reasons) > 3 || a.Reasons[0].Field != "amount" || a.Reasons[0].Observed != "25000" || !strings.HasPrefix(a.Reasons[0].Note, "above the training range") ||
			a.EntityKey == "" || !strings.HasPrefix(a.EventTime, "2026-11-") || !json.Valid(a.Transaction) || a.Score < a.Threshold {
			t.Fatalf("alert %+v", a)
		}
	}
	// A budget of about 0.5% of normal traffic, plus the anomalies.
	if len(alerts) > len(anomalies)+30 {
		t.Errorf("%d alerts for %d anomalies", len(alerts), len(anomalies))
	}

	// Swap the model mid-stream: later records carry the new version.
	cur.Swap(&Model{Bundle: b, Version: "v2", Decider: NewCalibrated(b, 0.995)})
	var more []kafka.Message
	for i := range 50 {
		v, _ := json.Marshal(txn(rng, fmt.Sprintf("u%04d", i), false))
		more = append(more, kafka.Message{Topic: en.tx, Value: v})
	}
	prod.Write(ctx, more...)
	v2 := map[string]string{}
	drain(t, ctx, en.cfg, en.scores, func(got []kafka.Message) bool {
		for _, m := range got {
			var d Decision
			json.Unmarshal(m.Value, &d)
			if strings.HasPrefix(d.TransactionID, "u") {
				v2[d.TransactionID] = d.ModelVersion
			}
		}
		return len(v2) == 50
	})
	for id, v := range v2 {
		if v != "v2" {
			t.Fatalf("%s scored by %s after the swap", id, v)
		}
	}

	stop()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	src.Close()
	// Every offset was committed after its outputs: the group has nothing left.
	again, _ := stream.NewConsumer(en.cfg, en.tx, "scorers", stream.ConsumerOptions{})
	defer again.Close()
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if left, err := again.FetchBatch(short, nil, 10, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("uncommitted records: %d, %v", len(left), err)
	}
	if got := testutil.ToFloat64(p.m.records.WithLabelValues("dead_letter")); got != 3 {
		t.Errorf("dead-letter counter %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "fraudstream_records_total"); err != nil || n != 3 {
		t.Errorf("outcome series: %d, %v", n, err)
	}
}

type memSource struct {
	mu        sync.Mutex
	committed []kafka.Message
}

func (m *memSource) FetchBatch(ctx context.Context, dst []kafka.Message, _ int, _ time.Duration) ([]kafka.Message, error) {
	<-ctx.Done()
	return dst, ctx.Err()
}
func (m *memSource) Commit(_ context.Context, msgs ...kafka.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.committed = append(m.committed, msgs...)
	return nil
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("accepted an empty config")
	}
}

// TestBudgetedHoldsTheRateFromTheStart: warm-started from the model's
// calibration, the budget decider alerts on about its budget from the first
// records of a new model.
func TestBudgetedHoldsTheRateFromTheStart(t *testing.T) {
	// Enough validation rows (2,000) for a calibration summary of the tail.
	rng0 := rand.New(rand.NewPCG(4, 4))
	var rows [][]string
	for i := range 20000 {
		r := txn(rng0, fmt.Sprint(i), false)
		rows = append(rows, []string{r["tx_id"].(string), r["card_id"].(string), fmt.Sprint(r["amount"]), r["merchant"].(string), r["ts"].(string)})
	}
	b, err := model.Fit(schema, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 4, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	d := NewBudgeted(b, 0.01)
	sc := b.NewScorer(1000)
	rng := rand.New(rand.NewPCG(9, 9))
	alerts := 0
	for batch := range 5 {
		for i := range 1000 {
			r := txn(rng, fmt.Sprint(batch*1000+i), false)
			sc.SetRow(i, []string{r["tx_id"].(string), r["card_id"].(string), fmt.Sprint(r["amount"]), r["merchant"].(string), r["ts"].(string)})
		}
		for _, s := range sc.Score(1000) {
			if _, a, _ := d.Decide(s, ""); a {
				alerts++
			}
		}
	}
	if alerts < 25 || alerts > 85 {
		t.Fatalf("%d alerts in 5,000 records for a 1%% budget", alerts)
	}
	if d.Policy() != "budget-1%" {
		t.Fatalf("policy %q", d.Policy())
	}
}

type captureSink struct{ msgs []kafka.Message }

func (c *captureSink) Write(_ context.Context, msgs ...kafka.Message) error {
	c.msgs = append(c.msgs, msgs...)
	return nil
}

// TestSegmentsInDecisions: with segment fields, each decision names the
// segment whose threshold decided it: the merchant once it has history,
// the global budget before.
func TestSegmentsInDecisions(t *testing.T) {
	b := bundle(t)
	cur := &Current{}
	cur.Swap(&Model{Bundle: b, Version: "1", Decider: NewSegmented(nil, b, 0.01, 300)})
	sink := &captureSink{}
	reg := prometheus.NewPedanticRegistry()
	p, err := New(Config{Source: &memSource{}, Sink: sink, Models: cur, Alerts: "a", Scores: "s", Dead: "d", SegmentFields: []string{"merchant"}, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 12))
	for batch := range 6 {
		var msgs []kafka.Message
		for i := range 500 {
			v, _ := json.Marshal(txn(rng, fmt.Sprintf("s%d-%d", batch, i), false))
			msgs = append(msgs, kafka.Message{Topic: "tx", Value: v})
		}
		if err := p.Process(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
	}
	used := map[string]int{}
	for _, m := range sink.msgs {
		if m.Topic != "s" {
			continue
		}
		var d Decision
		json.Unmarshal(m.Value, &d)
		used[d.Segment]++
		if !strings.HasPrefix(d.Policy, "segmented-budget") {
			t.Fatalf("policy %q", d.Policy)
		}
	}
	if used["global"] == 0 || used["m1"] == 0 || used["m3"] == 0 {
		t.Fatalf("segments used: %v", used)
	}
	if n, err := testutil.GatherAndCount(reg, "fraudstream_decisions_total"); err != nil || n < 4 {
		t.Fatalf("per-segment series: %d %v", n, err)
	}
}

// TestModelSwapKeepsTheAlertRate replays a stream through the pipeline with
// the production default, the fleet budget, and swaps in a genuinely
// different model halfway (another seed, twice the width, a linear network
// whose scores run on another scale). A peer worker still on the old model
// keeps publishing its window; it is left out after the swap, and the new
// model's budget, warm-started from its calibration, keeps the alert rate
// of the 10,000 records after the swap within ±20% of the budget.
func TestModelSwapKeepsTheAlertRate(t *testing.T) {
	fit := func(seed uint64, hidden int, linear bool) (*model.Bundle, string) {
		rng := rand.New(rand.NewPCG(seed, seed))
		var rows [][]string
		for i := range 20000 {
			r := txn(rng, fmt.Sprint(i), false)
			rows = append(rows, []string{r["tx_id"].(string), r["card_id"].(string), fmt.Sprint(r["amount"]), r["merchant"].(string), r["ts"].(string)})
		}
		b, err := model.Fit(schema, rows, model.FitOptions{AE: ae.Config{Seed: seed, Epochs: 4, Hidden: hidden, Bottleneck: 4, Linear: linear}})
		if err != nil {
			t.Fatal(err)
		}
		blob, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b, model.Digest(blob)
	}
	b1, d1 := fit(1, 16, false)
	b2, d2 := fit(2, 32, true)
	t.Logf("p99.5 of validation scores: old model %.2f, new model %.2f", b1.Calibration.Quantile(0.995), b2.Calibration.Quantile(0.995))
	const budget = 0.02
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	x, _ := fleet.New(fleet.Config{Client: rc, ID: "w1"})
	peerX, _ := fleet.New(fleet.Config{Client: rc, ID: "w0"})
	peer := NewFleetBudgeted(peerX, d1, b1, budget)
	peerScorer := b1.NewScorer(500)

	cur := &Current{}
	cur.Swap(&Model{Bundle: b1, Version: "1", Digest: d1, Decider: NewFleetBudgeted(x, d1, b1, budget)})
	sink := &captureSink{}
	p, _ := New(Config{Source: &memSource{}, Sink: sink, Models: cur, Alerts: "a", Dead: "d"})
	rng := rand.New(rand.NewPCG(13, 13))
	ctx := context.Background()
	send := func(n int) int {
		sink.msgs = sink.msgs[:0]
		for k := 0; k < n; k += 500 {
			var msgs []kafka.Message
			for i := range 500 {
				v, _ := json.Marshal(txn(rng, fmt.Sprintf("r%d", k+i), false))
				msgs = append(msgs, kafka.Message{Topic: "tx", Value: v})
				// The peer sees as much traffic, on the old model.
				peerScorer.SetJSON(i, v)
			}
			for _, s := range peerScorer.Score(500) {
				peer.Decide(s, "")
			}
			if err := p.Process(ctx, msgs); err != nil {
				t.Fatal(err)
			}
			if err := x.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := peerX.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return len(sink.msgs) // alerts only: no scores topic
	}
	before := send(20000)
	cur.Swap(&Model{Bundle: b2, Version: "2", Digest: d2, Decider: NewFleetBudgeted(x, d2, b2, budget)})
	after := send(10000)
	rate := float64(after) / 10000
	t.Logf("alert rate: %.2f%% before the swap, %.2f%% in the 10,000 records after it", 100*float64(before)/20000, 100*rate)
	if math.Abs(rate-budget)/budget > 0.20 {
		t.Fatalf("alert rate after the swap %.2f%%, budget %.0f%%", 100*rate, 100*budget)
	}
	if x.OtherModelPeers() != 1 {
		t.Fatalf("the peer on the old model was not left out (%d)", x.OtherModelPeers())
	}
}
