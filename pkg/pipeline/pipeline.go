// Package pipeline is the scoring path: a fetched batch of transaction
// messages is decoded, encoded and scored with the current model, each
// record is decided against a threshold, and alerts, per-record decisions
// and dead letters are written; the batch's offsets are committed only
// after those writes are acknowledged, so a crash loses nothing (delivery
// is at least once; see DecisionID for how consumers deduplicate).
//
// Faults do not stop it: a failed fetch, write or commit is retried with
// backoff, and a record the broker refuses for itself goes to the
// dead-letter topic, so a broker outage or one poisonous record never
// makes a worker exit (which would only move the problem to the next
// worker after a rebalance). Run returns only when its context ends.
//
// Model swaps are lock-free: a batch takes the current model (bundle and
// decider) when it starts and finishes with it, and every output names the
// model that produced it (TestBatchFinishesOnItsModel).
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// Model is a loaded bundle with its registry version and its decider.
type Model struct {
	Bundle  *model.Bundle
	Version string
	// Digest is the bundle's SHA-256 (model.Digest): the model's identity,
	// which a version number is not once Redis has lost its data.
	Digest  string
	Decider Decider
}

// id names the model in decision ids: its digest, or its version.
func (m *Model) id() string {
	if m.Digest != "" {
		return m.Digest
	}
	return m.Version
}

// Current holds the model in use; Swap replaces it for the next batch.
type Current struct{ p atomic.Pointer[Model] }

// Load returns the current model, or nil before the first Swap.
func (c *Current) Load() *Model { return c.p.Load() }

// Swap installs m for batches that start from now on.
func (c *Current) Swap(m *Model) { c.p.Store(m) }

// Source is where transactions come from (stream.Consumer).
type Source interface {
	FetchBatch(ctx context.Context, dst []kafka.Message, max int, linger time.Duration) ([]kafka.Message, error)
	Commit(ctx context.Context, msgs ...kafka.Message) error
}

// Sink is where outputs go (stream.Producer); Write returns once acknowledged.
type Sink interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Config configures a Pipeline.
type Config struct {
	Source Source       // required
	Sink   Sink         // required
	Models *Current     // required; Run waits until it holds a model
	Alerts string       // alerts topic; required
	Scores string       // scores topic; empty disables per-record decisions
	Dead   string       // dead-letter topic; required
	Logger *slog.Logger // nil: no logging
	// Metrics registers the pipeline's metrics; nil: none.
	Metrics prometheus.Registerer
	// BatchSize caps records per batch. Default 8192. The scorer's
	// scratch grows to it only when batches that large arrive.
	BatchSize int
	// Linger is how long a batch waits to fill after its first record.
	// Default 5ms.
	Linger time.Duration
	// Reasons per alert. Default 3.
	Reasons int
	// SegmentFields build each record's segment key ("grocery|FR|online"),
	// in order; empty: one global segment. A field the model lacks reads
	// as empty.
	SegmentFields []string
	// MaxRecordBytes: a record larger than this goes to the dead-letter
	// topic with its value cut to this size (headers say so), and no
	// output is larger than about this plus its own fields, which keeps
	// every write under a broker's message limit. Default 64 KiB.
	MaxRecordBytes int
	// MaxKeys: a record with more top-level keys than this goes to the
	// dead-letter topic. Default 1,000.
	MaxKeys int
	// MaxUnusable: a record whose learned fields are more than this share
	// missing or invalid is sent to the dead-letter topic instead of being
	// scored (an empty or wrong-typed object would otherwise be a top
	// alert). Default 0.5.
	MaxUnusable float64
	// RetryMin and RetryMax bound the backoff between retries of a failed
	// fetch, write or commit. Defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// CommitTimeout bounds one attempt to commit a batch's offsets; after
	// three failed attempts the commit is left to the next batch's.
	// Default 5s.
	CommitTimeout time.Duration
	// DrainTimeout bounds how long, after ctx ends, the batch in flight may
	// take to be written and committed; past it the batch is abandoned
	// uncommitted (it is redelivered). Default 10s.
	DrainTimeout time.Duration
	// FieldWindow is the number of records over which each field's
	// missing and invalid rates are compared with their history; a jump
	// is logged. Default 10,000.
	FieldWindow int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Entities keeps the entity states that a model with an entity score
	// (model.EntityPart) needs, shared by all workers; nil: such a model
	// scores by its DAE alone (logged once per model).
	Entities EntityStore
	// Rerank, when set, blends each score with the fraud probability the
	// analysts' labels taught (scorer run --reranker-blend); with no
	// re-ranker for the model in use, scores are left as they are.
	Rerank Reranker
}

// Pipeline scores a stream. Run it on one goroutine.
type Pipeline struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	// Per model: the scorer and the per-field counters and monitor.
	bundle  *model.Bundle
	sc      *model.Scorer
	fields  *fieldStats
	msgs    []kafka.Message
	out     []kafka.Message
	origin  []int32 // origin[i]: index in the batch of the record out[i] is for
	slots   []int
	reasons []model.Reason
	seg     []byte
	// Per model with an entity score: its view, and per batch the
	// transactions' entity inputs, values and which entity set a score.
	ev   *model.EntityView
	txs  []model.Tx
	vals []model.EntityValue
	pos  []Position // the batch's positions by slot, for StepEntities
	ent  []int
	dae  []float32

	// Health, read by other goroutines.
	started   atomic.Int64 // Unix ns when Run began deciding
	lastBatch atomic.Int64 // Unix ns of the last committed batch
	inFlight  atomic.Int64 // Unix ns when the batch in flight began; 0: none

	warnMu   sync.Mutex
	warnedAt map[string]time.Time
}

// New checks cfg and returns a pipeline.
func New(cfg Config) (*Pipeline, error) {
	switch {
	case cfg.Source == nil || cfg.Sink == nil || cfg.Models == nil:
		return nil, errors.New("pipeline: Source, Sink and Models are required")
	case cfg.Alerts == "" || cfg.Dead == "":
		return nil, errors.New("pipeline: the alerts and dead-letter topics are required")
	case cfg.MaxUnusable < 0 || cfg.MaxUnusable > 1:
		return nil, fmt.Errorf("pipeline: MaxUnusable %v is not a share between 0 and 1", cfg.MaxUnusable)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 8192
	}
	def(&cfg.Linger, 5*time.Millisecond)
	if cfg.Reasons <= 0 {
		cfg.Reasons = 3
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = 64 << 10
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 1000
	}
	if cfg.MaxUnusable == 0 {
		cfg.MaxUnusable = 0.5
	}
	def(&cfg.RetryMin, 100*time.Millisecond)
	def(&cfg.RetryMax, 5*time.Second)
	def(&cfg.DrainTimeout, 10*time.Second)
	def(&cfg.CommitTimeout, 5*time.Second)
	if cfg.FieldWindow <= 0 {
		cfg.FieldWindow = 10_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Pipeline{cfg: cfg, log: log, m: m, warnedAt: map[string]time.Time{}}, nil
}

// Run processes batches until ctx ends, then finishes the batch in flight
// (within DrainTimeout) and returns nil. Faults are retried, not returned;
// the only error is a consumer that was closed under it.
func (p *Pipeline) Run(ctx context.Context) error {
	for waited := 0; p.cfg.Models.Load() == nil; waited++ {
		if waited%30 == 0 {
			p.log.Info("waiting for a model")
		}
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
	p.started.Store(p.cfg.Now().UnixNano())
	backoff := p.cfg.RetryMin
	for {
		msgs, err := p.cfg.Source.FetchBatch(ctx, p.msgs[:0], p.cfg.BatchSize, p.cfg.Linger)
		p.msgs = msgs
		if len(msgs) > 0 {
			// Finish what was fetched even when ctx just ended.
			if perr := p.Process(ctx, msgs); perr != nil {
				if errors.Is(perr, errShutdown) {
					p.log.Warn("stopping with a batch not committed", "records", len(msgs), "err", perr)
					return nil
				}
				return perr
			}
		}
		switch {
		case err == nil, errors.Is(err, stream.ErrRejoined):
			backoff = p.cfg.RetryMin
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.EOF):
			return fmt.Errorf("pipeline: the consumer was closed: %w", err)
		default:
			// kafka-go's reader heals itself (it rejoins the group and
			// reconnects); exiting would only start a rebalance.
			p.m.fetchErrors.Inc()
			p.warnEvery("fetch", "fetching transactions failed; retrying", "retry_in", backoff, "err", err)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, p.cfg.RetryMax)
		}
	}
}

// warnEvery logs a warning at most once per 10 seconds per kind, so an
// outage is visible without flooding the log.
func (p *Pipeline) warnEvery(kind, msg string, args ...any) {
	now := p.cfg.Now()
	p.warnMu.Lock()
	last, seen := p.warnedAt[kind]
	if seen && now.Sub(last) < 10*time.Second {
		p.warnMu.Unlock()
		return
	}
	p.warnedAt[kind] = now
	p.warnMu.Unlock()
	p.log.Warn(msg, args...)
}

// Process decides one batch, writes its outputs and commits it. Writes and
// the commit are retried until acknowledged; once ctx ends they have
// DrainTimeout left, after which Process returns an error wrapping
// errShutdown and the batch stays uncommitted.
func (p *Pipeline) Process(ctx context.Context, msgs []kafka.Message) error {
	start := p.cfg.Now()
	p.inFlight.Store(start.UnixNano())
	defer p.inFlight.Store(0)
	cur := p.cfg.Models.Load()
	p.prepare(cur.Bundle, len(msgs))
	p.out, p.origin = p.out[:0], p.origin[:0]
	n := p.decode(msgs)
	scores := p.sc.Score(n)
	p.dae = append(p.dae[:0], scores...)
	if err := p.joinEntities(ctx, msgs, n, scores); err != nil {
		return err
	}
	if p.cfg.Rerank != nil {
		if err := p.cfg.Rerank.Adjust(ctx, cur, p.sc, n, p.dae, scores); err != nil {
			p.warnEvery("rerank", "the labels' re-ranker is unavailable; deciding on the scores alone", "err", err)
		}
	}
	if err := p.decide(cur, msgs, scores); err != nil {
		return err
	}
	pctx, cancel := p.drainContext(ctx)
	defer cancel()
	if err := p.deliver(pctx, msgs); err != nil {
		return err
	}
	if err := p.commit(pctx, msgs); err != nil {
		return err
	}
	done := p.cfg.Now()
	p.lastBatch.Store(done.UnixNano())
	p.m.lastBatch.Set(float64(done.UnixNano()) / 1e9)
	p.m.batch.Observe(done.Sub(start).Seconds())
	for _, m := range msgs {
		if !m.Time.IsZero() {
			p.m.e2e.Observe(done.Sub(m.Time).Seconds())
		}
	}
	return nil
}

// scorerCap sizes the scorer's scratch (about 2.8 KB a record for a
// 30-field card record, 23 MB at 8,192) to the batches seen rather than to
// limit: a worker keeping up fills batches of tens of records, and only a
// backlog grows it, doubling from 256, up to limit (or n, if larger).
func scorerCap(have, n, limit int) int {
	c := max(have, 256)
	for c < n {
		c *= 2
	}
	return min(c, max(limit, n))
}

// prepare makes the scorer and field counters fit bundle b and n records.
func (p *Pipeline) prepare(b *model.Bundle, n int) {
	if p.bundle == b && p.sc.Cap() >= n {
		return
	}
	if p.bundle != b {
		p.fields = newFieldStats(b, p.m, p.cfg.FieldWindow)
		var err error
		if p.ev, err = b.NewEntityView(); err != nil {
			p.log.Warn("the model's entity score is unusable; scoring by the autoencoder alone", "err", err)
		} else if p.ev != nil && p.cfg.Entities == nil {
			p.log.Warn("the model has an entity score but this scorer has no entity store; scoring by the autoencoder alone")
		}
	}
	schema := &b.Encoder.Schema
	cols := []int{schema.Index(schema.IDField), schema.Index(schema.KeyField), schema.Index(schema.TimeField)}
	for _, f := range p.cfg.SegmentFields {
		cols = append(cols, schema.Index(f))
	}
	if p.ev != nil {
		cols = append(cols, p.ev.Columns()...)
	}
	have := 0
	if p.sc != nil {
		have = p.sc.Cap()
	}
	p.bundle = b
	p.sc = b.NewScorer(scorerCap(have, n, p.cfg.BatchSize))
	p.sc.SetMaxKeys(p.cfg.MaxKeys)
	p.sc.Remember(cols...)
}

// decode encodes msgs into scorer slots; records that cannot be scored go
// to the dead-letter topic with the reason. It returns the slots filled.
func (p *Pipeline) decode(msgs []kafka.Message) int {
	if cap(p.slots) < len(msgs) {
		p.slots = make([]int, len(msgs))
	}
	p.slots = p.slots[:len(msgs)]
	nf := p.sc.Fields()
	n := 0
	for i, m := range msgs {
		p.slots[i] = -1
		if len(m.Value) > p.cfg.MaxRecordBytes {
			p.dead(i, m, fmt.Errorf("record of %d bytes is larger than the limit of %d bytes", len(m.Value), p.cfg.MaxRecordBytes))
			continue
		}
		if _, err := p.sc.SetJSON(n, m.Value); err != nil {
			p.dead(i, m, fmt.Errorf("undecodable transaction: %w", err))
			continue
		}
		missing, invalid := p.sc.Unusable(n)
		p.fields.observe(p.sc.FieldStates(n), missing+invalid > 0)
		if float64(missing+invalid) > p.cfg.MaxUnusable*float64(nf) {
			p.dead(i, m, fmt.Errorf("unusable transaction: %s", p.fields.describe(p.sc.FieldStates(n), missing, invalid)))
			continue
		}
		p.slots[i] = n
		n++
	}
	p.fields.flush(p.log)
	return n
}

func (p *Pipeline) dead(i int, m kafka.Message, reason error) {
	p.out = append(p.out, p.deadLetter(m, reason))
	p.origin = append(p.origin, int32(i))
	p.m.records.WithLabelValues("dead_letter").Inc()
}

// decide decides every scored record of the batch with cur's decider and
// queues its decision and, for alerts, the alert.
func (p *Pipeline) decide(cur *Model, msgs []kafka.Message, scores []float32) error {
	schema := &cur.Bundle.Encoder.Schema
	idCol, keyCol, timeCol := schema.Index(schema.IDField), schema.Index(schema.KeyField), schema.Index(schema.TimeField)
	segCols := make([]int, 0, len(p.cfg.SegmentFields))
	for _, f := range p.cfg.SegmentFields {
		segCols = append(segCols, schema.Index(f))
	}
	policy := cur.Decider.Policy() // once per batch: it formats a string
	modelID := cur.id()
	for i, m := range msgs {
		s := p.slots[i]
		if s < 0 {
			continue
		}
		score := scores[s]
		segment := ""
		if len(segCols) > 0 {
			p.seg = p.seg[:0]
			for k, c := range segCols {
				if k > 0 {
					p.seg = append(p.seg, '|')
				}
				p.seg = append(p.seg, p.sc.Raw(s, c)...)
			}
			segment = string(p.seg)
		}
		thr, alert, used := cur.Decider.Decide(score, segment)
		if math.IsInf(float64(thr), 1) {
			thr = math.MaxFloat32 // no threshold yet (warming up); JSON has no infinity
		}
		p.m.observeSegment(used, alert, thr)
		p.m.score.Observe(float64(score))
		id := p.sc.Raw(s, idCol)
		if id == "" {
			id = fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
		}
		did := DecisionID(m, modelID)
		if p.cfg.Scores != "" {
			d, err := json.Marshal(Decision{DecisionID: did, TransactionID: id, Score: score, Threshold: thr, Alert: alert, Policy: policy,
				Segment: used, ModelVersion: cur.Version, ModelDigest: cur.Digest, Source: sourceOf(m)})
			if err != nil {
				return fmt.Errorf("pipeline: encode decision: %w", err)
			}
			p.out = append(p.out, kafka.Message{Topic: p.cfg.Scores, Key: m.Key, Value: d})
			p.origin = append(p.origin, int32(i))
		}
		if !alert {
			p.m.records.WithLabelValues("scored").Inc()
			continue
		}
		p.m.records.WithLabelValues("alert").Inc()
		key := string(m.Key)
		if keyCol >= 0 {
			if k := p.sc.Raw(s, keyCol); k != "" {
				key = k
			}
		}
		a := Alert{DecisionID: did, TransactionID: id, EntityKey: key, EventTime: p.sc.Raw(s, timeCol), Score: score, Threshold: thr,
			Policy: policy, Segment: used, ModelVersion: cur.Version, ModelDigest: cur.Digest, Source: sourceOf(m),
			Transaction: json.RawMessage(m.Value)}
		if s < len(p.ent) && p.ent[s] >= 0 {
			a.Reasons = append(a.Reasons, p.entityReason(s, p.ent[s], p.dae[s], score))
		}
		p.reasons = p.sc.Reasons(s, p.cfg.Reasons, p.reasons)
		for _, r := range p.reasons {
			ar := AlertReason{Field: r.Name, Contribution: r.Contribution, Observed: p.sc.Observed(s, r.Field), Expected: p.sc.Expected(s, r.Field),
				Note: p.sc.Note(s, r)}
			if r.Probability >= 0 {
				prob := r.Probability
				ar.Probability = &prob
			}
			a.Reasons = append(a.Reasons, ar)
		}
		v, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("pipeline: encode alert: %w", err)
		}
		p.out = append(p.out, kafka.Message{Topic: p.cfg.Alerts, Key: m.Key, Value: v})
		p.origin = append(p.origin, int32(i))
	}
	return nil
}

// Health is a snapshot for liveness checks.
type Health struct {
	// Started is when Run began deciding (zero before a model was loaded).
	Started time.Time
	// LastBatch is when the last batch was committed (zero: none yet).
	LastBatch time.Time
	// InFlightSince is when the batch being written began (zero: none).
	InFlightSince time.Time
}

// Health returns the pipeline's progress; safe from any goroutine.
func (p *Pipeline) Health() Health {
	t := func(ns int64) time.Time {
		if ns == 0 {
			return time.Time{}
		}
		return time.Unix(0, ns)
	}
	return Health{Started: t(p.started.Load()), LastBatch: t(p.lastBatch.Load()), InFlightSince: t(p.inFlight.Load())}
}

// Stalled reports why the pipeline is not making progress, or nil: a batch
// in flight for longer than after, or records waiting (lag > 0) while no
// batch has completed for longer than after.
func (h Health) Stalled(now time.Time, lag int64, after time.Duration) error {
	if !h.InFlightSince.IsZero() && now.Sub(h.InFlightSince) > after {
		return fmt.Errorf("a batch has been in flight for %s", now.Sub(h.InFlightSince).Round(time.Second))
	}
	if h.Started.IsZero() || lag <= 0 {
		return nil
	}
	last := h.LastBatch
	if last.IsZero() {
		last = h.Started
	}
	if now.Sub(last) > after {
		return fmt.Errorf("%d records waiting and no batch committed for %s", lag, now.Sub(last).Round(time.Second))
	}
	return nil
}

// CheckSegmentFields reports segment fields that bundle b's schema lacks,
// naming the fields it has.
func CheckSegmentFields(b *model.Bundle, fields []string) error {
	schema := &b.Encoder.Schema
	var unknown []string
	for _, f := range fields {
		if schema.Index(f) < 0 {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("segment fields %s are not in the model's schema (fields: %s)", strings.Join(unknown, ", "), strings.Join(schema.Names(), ", "))
	}
	return nil
}
