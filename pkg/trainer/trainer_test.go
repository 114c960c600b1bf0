package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
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

func newTrainer(t *testing.T, cfg stream.Config, reg *registry.Registry, owner string, gate float64) *Trainer {
	tr, err := New(Config{Stream: cfg, Topic: "transactions", Registry: reg, Owner: owner, Gate: gate, MinRows: 500,
		AE: ae.Config{Seed: 1, Epochs: 5, Hidden: 16, Bottleneck: 4}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTrainPromoteGateAndLeadership(t *testing.T) {
	ctx := context.Background()
	cfg, reg := setup(t, 3000)
	a := newTrainer(t, cfg, reg, "a", 0)
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
	bt := newTrainer(t, cfg, reg, "b", 0)
	if r, err := bt.LeadAndTrain(ctx); err != nil || r.Outcome != "follower" {
		t.Fatalf("second replica: %+v %v", r, err)
	}
	// A candidate judged against an impossible gate is recorded, not promoted.
	strict := newTrainer(t, cfg, reg, "a", 1e-6)
	r, err = strict.Train(ctx)
	if err != nil || r.Outcome != "rejected" || r.Reason == "" || math.IsNaN(r.Current) {
		t.Fatalf("strict gate: %+v %v", r, err)
	}
	if cur, _ := reg.CurrentVersion(ctx); cur != 1 {
		t.Fatalf("a rejected candidate became current: %d", cur)
	}
	list, _ := reg.List(ctx)
	if len(list) != 2 || list[1].Promoted || list[1].Reason == "" {
		t.Fatalf("registry: %+v", list)
	}
}

func TestTooFewRowsSkips(t *testing.T) {
	cfg, reg := setup(t, 100)
	tr := newTrainer(t, cfg, reg, "a", 0)
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
	a := newTrainer(t, cfg, reg, "a", 0)
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
	b := newTrainer(t, cfg, reg, "b", 0)
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
