package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

// scriptedSink fails writes as its script says, then records what it is
// given. Each step sees the messages of one Write call.
type scriptedSink struct {
	mu      sync.Mutex
	calls   int
	script  func(call int, msgs []kafka.Message) error
	written []kafka.Message
}

func (s *scriptedSink) Write(_ context.Context, msgs ...kafka.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.script != nil {
		if err := s.script(s.calls, msgs); err != nil {
			var we kafka.WriteErrors
			if errors.As(err, &we) {
				for i, e := range we {
					if e == nil {
						s.written = append(s.written, msgs[i])
					}
				}
			}
			return err
		}
	}
	s.written = append(s.written, msgs...)
	return nil
}

func (s *scriptedSink) on(topic string) []kafka.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []kafka.Message
	for _, m := range s.written {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func batchOf(t *testing.T, seed uint64, n int) []kafka.Message {
	rng := rand.New(rand.NewPCG(seed, seed))
	var msgs []kafka.Message
	for i := range n {
		v, err := json.Marshal(txn(rng, fmt.Sprintf("f%d-%d", seed, i), false))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Topic: "tx", Partition: 1, Offset: int64(i), Value: v})
	}
	return msgs
}

func newTestPipeline(t *testing.T, sink Sink, src Source, cfg Config) *Pipeline {
	t.Helper()
	b := bundle(t)
	cur := &Current{}
	cur.Swap(&Model{Bundle: b, Version: "v1", Digest: "d1d1d1d1d1d1d1d1", Decider: NewCalibrated(b, 0.995)})
	cfg.Source, cfg.Sink, cfg.Models = src, sink, cur
	cfg.Alerts, cfg.Scores, cfg.Dead = "alerts", "scores", "dead"
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var errRefused = &dialError{}

// dialError stands in for a dial error (connection refused), which
// kafka-go returns as is while the broker is down.
type dialError struct{}

func (*dialError) Error() string { return "dial tcp 127.0.0.1:9092: " + syscall.ECONNREFUSED.Error() }

// TestTransientWriteErrorsAreRetried: while the broker is unreachable the
// batch is retried with backoff, not abandoned (today's main returned the
// error and the scorer exited); once it is back, every output is written
// once and the batch is committed.
func TestTransientWriteErrorsAreRetried(t *testing.T) {
	sink := &scriptedSink{script: func(call int, _ []kafka.Message) error {
		if call <= 5 {
			return errRefused
		}
		return nil
	}}
	src := &memSource{}
	p := newTestPipeline(t, sink, src, Config{})
	msgs := batchOf(t, 1, 200)
	if err := p.Process(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if sink.calls != 6 || len(sink.on("scores")) != 200 || len(src.committed) != 200 {
		t.Fatalf("%d write calls, %d decisions, %d committed", sink.calls, len(sink.on("scores")), len(src.committed))
	}
}

// TestRefusedRecordGoesToDeadLetter: the broker refuses one record's output
// for itself (MESSAGE_TOO_LARGE, not retriable); that record goes to the
// dead-letter topic with the broker's reason and the rest of the batch is
// written and committed, instead of the whole batch failing for ever.
func TestRefusedRecordGoesToDeadLetter(t *testing.T) {
	sink := &scriptedSink{script: func(_ int, msgs []kafka.Message) error {
		var we kafka.WriteErrors
		for i, m := range msgs {
			if m.Topic != "dead" && bytes.Contains(m.Value, []byte(`"f2-7"`)) {
				if we == nil {
					we = make(kafka.WriteErrors, len(msgs))
				}
				we[i] = kafka.MessageSizeTooLarge
			}
		}
		if we != nil {
			return we
		}
		return nil
	}}
	src := &memSource{}
	p := newTestPipeline(t, sink, src, Config{})
	msgs := batchOf(t, 2, 50)
	if err := p.Process(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	dead := sink.on("dead")
	if len(dead) != 1 || stream.Header(dead[0], stream.HeaderOffset) != "7" ||
		!strings.Contains(stream.Header(dead[0], stream.HeaderReason), "refused by the broker") {
		t.Fatalf("dead letters: %d %v", len(dead), dead)
	}
	if len(sink.on("scores")) != 49 || len(src.committed) != 50 {
		t.Fatalf("%d decisions, %d committed", len(sink.on("scores")), len(src.committed))
	}
}

// TestBadRecordsAreSetAside: an oversized record, a record with more keys
// than MaxKeys, an empty object and a wrong-typed object go to the dead-letter topic with their reasons (today's
// main scored the last two as top alerts); invalid values are counted per
// field.
func TestBadRecordsAreSetAside(t *testing.T) {
	sink := &scriptedSink{}
	src := &memSource{}
	reg := prometheus.NewPedanticRegistry()
	p := newTestPipeline(t, sink, src, Config{MaxRecordBytes: 4096, MaxKeys: 50, Metrics: reg})
	msgs := batchOf(t, 3, 20)
	big := append([]byte(`{"tx_id":"big","note":"`), bytes.Repeat([]byte("x"), 10_000)...)
	big = append(big, `"}`...)
	bad := []string{`{}`, `{"tx_id":12345,"card_id":["x"],"amount":"lots","ts":true,"merchant":7}`}
	msgs = append(msgs, kafka.Message{Topic: "tx", Offset: 100, Value: big})
	for i, v := range bad {
		msgs = append(msgs, kafka.Message{Topic: "tx", Offset: int64(101 + i), Value: []byte(v)})
	}
	// One invalid value in an otherwise good record: scored, and counted.
	msgs = append(msgs, kafka.Message{Topic: "tx", Offset: 103, Value: []byte(`{"tx_id":"half","amount":"EUR 12.50","merchant":"m1","ts":"2026-11-03T10:00:00Z"}`)})
	// A good record with 47 extra keys (50 in all) is scored; with 48, it is
	// not a transaction record.
	wide := func(extra int) []byte {
		var b strings.Builder
		b.WriteString(`{"tx_id":"wide","amount":12.5,"merchant":"m1"`)
		for k := range extra {
			fmt.Fprintf(&b, `,"k%d":%d`, k, k)
		}
		b.WriteString(`}`)
		return []byte(b.String())
	}
	msgs = append(msgs, kafka.Message{Topic: "tx", Offset: 104, Value: wide(47)}, kafka.Message{Topic: "tx", Offset: 105, Value: wide(48)})
	if err := p.Process(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	dead := map[string]kafka.Message{}
	for _, m := range sink.on("dead") {
		dead[stream.Header(m, stream.HeaderOffset)] = m
	}
	if m := dead["100"]; len(m.Value) != 4096 || stream.Header(m, HeaderTruncated) != "true" ||
		stream.Header(m, HeaderOriginalSize) != fmt.Sprint(len(big)) || !strings.Contains(stream.Header(m, stream.HeaderReason), "larger than the limit") {
		t.Errorf("oversized record: %d bytes, headers %v", len(m.Value), m.Headers)
	}
	if r := stream.Header(dead["101"], stream.HeaderReason); !strings.Contains(r, "3 of 3 learned fields are missing or invalid") {
		t.Errorf("empty object: %q", r)
	}
	if r := stream.Header(dead["102"], stream.HeaderReason); !strings.Contains(r, "invalid: amount") || !strings.Contains(r, "ts") {
		t.Errorf("wrong-typed object: %q", r)
	}
	if r := stream.Header(dead["105"], stream.HeaderReason); !strings.Contains(r, "more than 50 keys") {
		t.Errorf("record with 51 keys: %q", r)
	}
	if len(dead) != 4 || len(sink.on("scores")) != 22 || len(src.committed) != len(msgs) {
		t.Fatalf("%d dead letters, %d decisions, %d committed", len(dead), len(sink.on("scores")), len(src.committed))
	}
	if v := testutil.ToFloat64(p.m.invalid.WithLabelValues("amount")); v != 2 {
		t.Errorf("invalid amounts counted: %v, want 2", v)
	}
	if v := testutil.ToFloat64(p.m.missing.WithLabelValues("merchant")); v != 1 {
		t.Errorf("missing merchants counted: %v, want 1", v)
	}
	// A batch of nothing but bad records: all dead-lettered and committed,
	// nothing to score (this panicked once in the network's padded layers).
	only := []kafka.Message{{Topic: "tx", Offset: 200, Value: []byte(`not json`)}, {Topic: "tx", Offset: 201, Value: []byte(`{}`)}}
	if err := p.Process(context.Background(), only); err != nil {
		t.Fatal(err)
	}
	if d := len(sink.on("dead")); d != 6 {
		t.Errorf("%d dead letters after a batch of 2 bad records, want 6", d)
	}
}

// TestDecisionIDsAreDeterministic: a redelivered record decided by the same
// model gets the same decision id; by another model, another id with the
// same source.
func TestDecisionIDsAreDeterministic(t *testing.T) {
	run := func(digest string) []Decision {
		sink := &scriptedSink{}
		p := newTestPipeline(t, sink, &memSource{}, Config{})
		cur := p.cfg.Models.Load()
		p.cfg.Models.Swap(&Model{Bundle: cur.Bundle, Version: "v1", Digest: digest, Decider: cur.Decider})
		if err := p.Process(context.Background(), batchOf(t, 4, 30)); err != nil {
			t.Fatal(err)
		}
		var out []Decision
		for _, m := range sink.on("scores") {
			var d Decision
			if err := json.Unmarshal(m.Value, &d); err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	a, again, other := run("aaaaaaaaaaaaaaaaaaaa"), run("aaaaaaaaaaaaaaaaaaaa"), run("bbbbbbbbbbbbbbbbbbbb")
	seen := map[string]bool{}
	for i := range a {
		if a[i].DecisionID != again[i].DecisionID || a[i].DecisionID == other[i].DecisionID || a[i].Source != other[i].Source {
			t.Fatalf("record %d: ids %q, %q, %q", i, a[i].DecisionID, again[i].DecisionID, other[i].DecisionID)
		}
		if seen[a[i].DecisionID] {
			t.Fatalf("decision id %q repeats within a batch", a[i].DecisionID)
		}
		seen[a[i].DecisionID] = true
	}
	if a[3].DecisionID != "tx/1/3@aaaaaaaaaaaa" {
		t.Fatalf("decision id %q", a[3].DecisionID)
	}
}

// swapOnFirst swaps the current model the first time it decides: a model
// promoted while a batch is being decided.
type swapOnFirst struct {
	Decider
	cur  *Current
	next *Model
	once sync.Once
}

func (s *swapOnFirst) Decide(score float32, seg string) (float32, bool, string) {
	s.once.Do(func() { s.cur.Swap(s.next) })
	return s.Decider.Decide(score, seg)
}

// TestBatchFinishesOnItsModel: a model swapped in while a batch is being
// decided does not touch that batch (its version and threshold are the old
// model's throughout); the next batch uses the new model.
func TestBatchFinishesOnItsModel(t *testing.T) {
	sink := &scriptedSink{}
	p := newTestPipeline(t, sink, &memSource{}, Config{})
	old := p.cfg.Models.Load()
	next := &Model{Bundle: old.Bundle, Version: "v2", Digest: "d2", Decider: &Calibrated{Threshold: 1e9, Quantile: 0.5}}
	p.cfg.Models.Swap(&Model{Bundle: old.Bundle, Version: "v1", Digest: "d1", Decider: &swapOnFirst{Decider: old.Decider, cur: p.cfg.Models, next: next}})
	thr := old.Decider.(*Calibrated).Threshold
	if err := p.Process(context.Background(), batchOf(t, 5, 300)); err != nil {
		t.Fatal(err)
	}
	if err := p.Process(context.Background(), batchOf(t, 6, 10)); err != nil {
		t.Fatal(err)
	}
	for i, m := range sink.on("scores") {
		var d Decision
		json.Unmarshal(m.Value, &d)
		want, wantThr := "v1", thr
		if i >= 300 {
			want, wantThr = "v2", 1e9
		}
		if d.ModelVersion != want || d.Threshold != wantThr {
			t.Fatalf("decision %d: model %s threshold %v, want %s and %v", i, d.ModelVersion, d.Threshold, want, wantThr)
		}
	}
}

// blockingSource's commits hang until their context ends, as kafka-go's do
// when the group coordinator is down.
type blockingSource struct{ memSource }

func (b *blockingSource) Commit(ctx context.Context, _ ...kafka.Message) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestShutdownIsBounded: SIGTERM while the coordinator is unreachable ends
// the batch within DrainTimeout, uncommitted (it will be redelivered),
// instead of hanging until SIGKILL.
func TestShutdownIsBounded(t *testing.T) {
	sink := &scriptedSink{}
	p := newTestPipeline(t, sink, &blockingSource{}, Config{DrainTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	err := p.Process(ctx, batchOf(t, 7, 10))
	if !errors.Is(err, errShutdown) {
		t.Fatalf("err %v, want the shutdown error", err)
	}
	if len(sink.on("scores")) != 10 {
		t.Fatalf("outputs were not written before the drain deadline: %d", len(sink.on("scores")))
	}
}

// TestStuckCommitIsLeftToTheNextBatch: a commit that hangs (no group
// generation while the group rejoins after a broker restart) is given up
// after its bounded attempts, and the worker goes on to the next batch,
// whose commit covers these offsets; today's main waited for ever.
func TestStuckCommitIsLeftToTheNextBatch(t *testing.T) {
	sink := &scriptedSink{}
	p := newTestPipeline(t, sink, &blockingSource{}, Config{CommitTimeout: 10 * time.Millisecond})
	if err := p.Process(context.Background(), batchOf(t, 9, 10)); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(p.m.commitFailures); n != commitAttempts {
		t.Fatalf("%v commit attempts failed, want %d", n, commitAttempts)
	}
}

// flakySource fails its first fetches, then delivers one batch, then waits.
type flakySource struct {
	memSource
	fails int
	batch []kafka.Message
}

func (f *flakySource) FetchBatch(ctx context.Context, dst []kafka.Message, _ int, _ time.Duration) ([]kafka.Message, error) {
	if f.fails > 0 {
		f.fails--
		return dst, errors.New("fetch: failed to dial: connection refused")
	}
	if f.batch != nil {
		dst, f.batch = append(dst, f.batch...), nil
		return dst, nil
	}
	<-ctx.Done()
	return dst, ctx.Err()
}

// TestFetchErrorsDoNotStopRun: fetch errors are retried (today's main
// returned "pipeline: fetch: failed to dial" and the scorer exited).
func TestFetchErrorsDoNotStopRun(t *testing.T) {
	src := &flakySource{fails: 4, batch: batchOf(t, 8, 25)}
	sink := &scriptedSink{}
	p := newTestPipeline(t, sink, src, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for {
		src.mu.Lock()
		n := len(src.committed)
		src.mu.Unlock()
		if n == 25 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before the batch was committed", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h := p.Health(); h.LastBatch.IsZero() || h.Stalled(time.Now(), 0, time.Minute) != nil {
		t.Fatalf("health after a committed batch: %+v", h)
	}
}

func TestStalled(t *testing.T) {
	now := time.Unix(1000, 0)
	h := Health{Started: now.Add(-10 * time.Minute), LastBatch: now.Add(-3 * time.Minute)}
	if h.Stalled(now, 0, time.Minute) != nil {
		t.Error("idle without lag is not stalled")
	}
	if h.Stalled(now, 5, time.Minute) == nil {
		t.Error("lag with no batch for 3 minutes should be stalled")
	}
	h.InFlightSince = now.Add(-2 * time.Minute)
	if err := h.Stalled(now, 0, time.Minute); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Errorf("a batch in flight for 2 minutes: %v", err)
	}
	if (Health{}).Stalled(now, 100, time.Minute) != nil {
		t.Error("before a model is loaded there is nothing to stall")
	}
}

// TestScorerScratchFollowsTheBatches: the scorer's scratch is sized to the
// batches that arrive, not to BatchSize (23 MB at the default 8,192 for a
// card record), and grows when a backlog brings larger ones; every record
// of every batch is still decided.
func TestScorerScratchFollowsTheBatches(t *testing.T) {
	sink := &scriptedSink{script: func(int, []kafka.Message) error { return nil }}
	src := &memSource{}
	p := newTestPipeline(t, sink, src, Config{})
	if p.cfg.BatchSize != 8192 {
		t.Fatalf("default batch size %d", p.cfg.BatchSize)
	}
	decided := 0
	for i, tc := range []struct{ n, atLeast, atMost int }{
		{50, 50, 256}, {200, 200, 256}, {300, 300, 512}, {40, 300, 512}, {3000, 3000, 4096},
	} {
		if err := p.Process(context.Background(), batchOf(t, uint64(10+i), tc.n)); err != nil {
			t.Fatal(err)
		}
		decided += tc.n
		if c := p.sc.Cap(); c < tc.atLeast || c > tc.atMost {
			t.Fatalf("after a batch of %d: scratch for %d records, want %d-%d", tc.n, c, tc.atLeast, tc.atMost)
		}
		if got := len(sink.on("scores")); got != decided {
			t.Fatalf("after a batch of %d: %d decisions, want %d", tc.n, got, decided)
		}
	}
	if got := scorerCap(0, 9000, 8192); got != 9000 {
		t.Fatalf("a batch above the limit: scratch for %d, want 9000", got)
	}
}
