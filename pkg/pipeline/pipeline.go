// Package pipeline is the scoring path: a fetched batch of transaction
// messages is decoded, encoded and scored with the current model, each
// record is decided against a threshold, and alerts, per-record scores and
// dead letters are written; the batch's offsets are committed only after
// those writes are acknowledged, so a crash loses nothing (at-least-once).
//
// Model swaps are lock-free: a batch takes the current model when it
// starts and finishes with it, and every output names the version that
// produced it.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/fleet"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/stream"
	"github.com/fraudstream/fraudstream/pkg/threshold"
)

// Decider turns a score into a decision. The adaptive thresholds implement
// it; Calibrated is the stand-in until then. Implementations used by one
// pipeline are called from its goroutine only.
type Decider interface {
	// Decide decides score for a record of segment ("" when segments are
	// off) and names the segment whose threshold was used.
	Decide(score float32, segment string) (threshold float32, alert bool, used string)
	// Policy names the rule, for outputs ("calibrated-p99.5", "budget", …).
	Policy() string
}

// Calibrated alerts above a fixed quantile of the model's validation scores.
type Calibrated struct {
	Threshold float32
	Quantile  float64
}

// NewCalibrated reads the threshold from a bundle's calibration summary.
func NewCalibrated(b *model.Bundle, quantile float64) *Calibrated {
	return &Calibrated{Threshold: float32(b.Calibration.Quantile(quantile)), Quantile: quantile}
}

// Decide implements Decider.
func (c *Calibrated) Decide(score float32, _ string) (float32, bool, string) {
	return c.Threshold, score >= c.Threshold, globalSegment
}

// Policy implements Decider.
func (c *Calibrated) Policy() string {
	return "calibrated-p" + strconv.FormatFloat(c.Quantile*100, 'g', 4, 64)
}

// Model is a loaded bundle with its registry version and its decider.
type Model struct {
	Bundle  *model.Bundle
	Version string
	// Digest is the bundle's SHA-256 (model.Digest): the model's identity,
	// which a version number is not once Redis has lost its data.
	Digest  string
	Decider Decider
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
	Scores string       // scores topic; empty disables per-record scores
	Dead   string       // dead-letter topic; required
	Logger *slog.Logger // nil: no logging
	// Metrics registers the pipeline's metrics; nil: none.
	Metrics prometheus.Registerer
	// BatchSize caps records per batch. Default 1024.
	BatchSize int
	// Linger is how long a batch waits to fill after its first record.
	// Default 5ms.
	Linger time.Duration
	// Reasons per alert. Default 3.
	Reasons int
	// SegmentFields build each record's segment key ("grocery|FR|online"),
	// in order; empty: one global segment.
	SegmentFields []string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Pipeline scores a stream. Run it on one goroutine.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	scorers map[*model.Bundle]*model.Scorer
	msgs    []kafka.Message
	out     []kafka.Message
	reasons []model.Reason
	seg     []byte
}

// New checks cfg and returns a pipeline.
func New(cfg Config) (*Pipeline, error) {
	switch {
	case cfg.Source == nil || cfg.Sink == nil || cfg.Models == nil:
		return nil, errors.New("pipeline: Source, Sink and Models are required")
	case cfg.Alerts == "" || cfg.Dead == "":
		return nil, errors.New("pipeline: the alerts and dead-letter topics are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1024
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.Reasons <= 0 {
		cfg.Reasons = 3
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
	return &Pipeline{cfg: cfg, log: log, m: m, scorers: map[*model.Bundle]*model.Scorer{}}, nil
}

// Run processes batches until ctx ends. It returns nil on cancellation
// after the batch in flight has been written and committed, or the first
// error that would otherwise lose data (a failed write or commit).
func (p *Pipeline) Run(ctx context.Context) error {
	for p.cfg.Models.Load() == nil {
		p.log.Info("waiting for a model")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	for {
		msgs, err := p.cfg.Source.FetchBatch(ctx, p.msgs[:0], p.cfg.BatchSize, p.cfg.Linger)
		p.msgs = msgs
		if len(msgs) > 0 {
			// Finish what was fetched even when ctx just ended.
			if perr := p.Process(context.WithoutCancel(ctx), msgs); perr != nil {
				return perr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pipeline: fetch: %w", err)
		}
	}
}

// Alert is the JSON written to the alerts topic.
type Alert struct {
	TransactionID string          `json:"transaction_id"`
	EntityKey     string          `json:"entity_key"`
	EventTime     string          `json:"event_time,omitempty"`
	Score         float32         `json:"score"`
	Threshold     float32         `json:"threshold"`
	Policy        string          `json:"policy"`
	Segment       string          `json:"segment"`
	ModelVersion  string          `json:"model_version"`
	Reasons       []AlertReason   `json:"reasons"`
	Transaction   json.RawMessage `json:"transaction"`
}

// AlertReason is one field's part in an alert.
type AlertReason struct {
	Field        string  `json:"field"`
	Contribution float32 `json:"contribution"`
	Observed     string  `json:"observed"`
	Expected     string  `json:"expected"`
}

// Decision is the compact JSON written to the scores topic for every record.
type Decision struct {
	TransactionID string  `json:"id"`
	Score         float32 `json:"score"`
	Threshold     float32 `json:"threshold"`
	Alert         bool    `json:"alert"`
	Policy        string  `json:"policy"`
	Segment       string  `json:"segment"`
	ModelVersion  string  `json:"model_version"`
}

const globalSegment = "global"

// Process scores one batch, writes its outputs and commits it.
func (p *Pipeline) Process(ctx context.Context, msgs []kafka.Message) error {
	start := p.cfg.Now()
	cur := p.cfg.Models.Load()
	schema := &cur.Bundle.Encoder.Schema
	idCol, keyCol, timeCol := schema.Index(schema.IDField), schema.Index(schema.KeyField), schema.Index(schema.TimeField)
	segCols := make([]int, 0, len(p.cfg.SegmentFields))
	for _, f := range p.cfg.SegmentFields {
		segCols = append(segCols, schema.Index(f))
	}
	sc := p.scorer(cur.Bundle, len(msgs), append([]int{idCol, keyCol, timeCol}, segCols...)...)
	policy := cur.Decider.Policy() // once per batch: it formats a string
	out := p.out[:0]
	// Decode and encode; bad messages go to the dead-letter topic.
	slots := make([]int, len(msgs))
	n := 0
	for i, m := range msgs {
		if _, err := sc.SetJSON(n, m.Value); err != nil {
			slots[i] = -1
			out = append(out, stream.DeadLetter(p.cfg.Dead, m, fmt.Errorf("undecodable transaction: %w", err)))
			p.m.records.WithLabelValues("dead_letter").Inc()
			continue
		}
		slots[i] = n
		n++
	}
	scores := sc.Score(n)
	for i, m := range msgs {
		s := slots[i]
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
				p.seg = append(p.seg, sc.Raw(s, c)...)
			}
			segment = string(p.seg)
		}
		thr, alert, used := cur.Decider.Decide(score, segment)
		if math.IsInf(float64(thr), 1) {
			thr = math.MaxFloat32 // no threshold yet (warming up); JSON has no infinity
		}
		p.m.observeSegment(used, alert, thr)
		id := sc.Raw(s, idCol)
		if id == "" {
			id = fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
		}
		p.m.score.Observe(float64(score))
		if p.cfg.Scores != "" {
			d, err := json.Marshal(Decision{TransactionID: id, Score: score, Threshold: thr, Alert: alert, Policy: policy, Segment: used, ModelVersion: cur.Version})
			if err != nil {
				return fmt.Errorf("pipeline: encode decision: %w", err)
			}
			out = append(out, kafka.Message{Topic: p.cfg.Scores, Key: m.Key, Value: d})
		}
		if !alert {
			p.m.records.WithLabelValues("scored").Inc()
			continue
		}
		p.m.records.WithLabelValues("alert").Inc()
		key := string(m.Key)
		if keyCol >= 0 {
			if k := sc.Raw(s, keyCol); k != "" {
				key = k
			}
		}
		a := Alert{TransactionID: id, EntityKey: key, EventTime: sc.Raw(s, timeCol), Score: score, Threshold: thr,
			Policy: policy, Segment: used, ModelVersion: cur.Version, Transaction: json.RawMessage(m.Value)}
		p.reasons = sc.Reasons(s, p.cfg.Reasons, p.reasons)
		for _, r := range p.reasons {
			a.Reasons = append(a.Reasons, AlertReason{Field: r.Name, Contribution: r.Contribution, Observed: sc.Observed(s, r.Field), Expected: sc.Expected(s, r.Field)})
		}
		v, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("pipeline: encode alert: %w", err)
		}
		out = append(out, kafka.Message{Topic: p.cfg.Alerts, Key: m.Key, Value: v})
	}
	p.out = out
	if err := p.cfg.Sink.Write(ctx, out...); err != nil {
		p.m.failures.Inc()
		return fmt.Errorf("pipeline: write outputs of %d records: %w", len(msgs), err)
	}
	if err := p.cfg.Source.Commit(ctx, msgs...); err != nil {
		p.m.failures.Inc()
		return fmt.Errorf("pipeline: commit %d records: %w", len(msgs), err)
	}
	done := p.cfg.Now()
	p.m.batch.Observe(done.Sub(start).Seconds())
	for _, m := range msgs {
		if !m.Time.IsZero() {
			p.m.e2e.Observe(done.Sub(m.Time).Seconds())
		}
	}
	return nil
}

// scorer returns a scorer for bundle b with room for n records; scorers of
// models no longer current are dropped.
func (p *Pipeline) scorer(b *model.Bundle, n int, remember ...int) *model.Scorer {
	sc, ok := p.scorers[b]
	if !ok || sc.Cap() < n {
		clear(p.scorers)
		sc = b.NewScorer(max(n, p.cfg.BatchSize))
		sc.Remember(remember...)
		p.scorers[b] = sc
	}
	return sc
}

// maxSegmentLabels bounds the label cardinality of per-segment metrics.
const maxSegmentLabels = 50

func (m *metrics) observeSegment(segment string, alert bool, threshold float32) {
	if !m.segments[segment] {
		if len(m.segments) >= maxSegmentLabels {
			segment = "other"
		} else {
			m.segments[segment] = true
		}
	}
	m.decided.WithLabelValues(segment, strconv.FormatBool(alert)).Inc()
	m.threshold.WithLabelValues(segment).Set(float64(threshold))
}

type metrics struct {
	threshold *prometheus.GaugeVec
	segments  map[string]bool
	decided   *prometheus.CounterVec
	records   *prometheus.CounterVec
	score     prometheus.Histogram
	batch     prometheus.Histogram
	e2e       prometheus.Histogram
	failures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		segments: map[string]bool{},
		threshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fraudstream_threshold",
			Help: "The latest threshold used, by segment (the first 50 segments; later ones are \"other\")."}, []string{"segment"}),
		decided: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_decisions_total",
			Help: "Decisions by the segment whose threshold decided them and by alert (the first 50 segments; later ones count as \"other\")."}, []string{"segment", "alert"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_records_total", Help: "Records processed, by outcome (scored, alert, dead_letter)."}, []string{"outcome"}),
		score:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fraudstream_score", Help: "Anomaly scores.", Buckets: prometheus.ExponentialBuckets(1, 1.5, 20)}),
		batch:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fraudstream_batch_seconds", Help: "Time from a batch's start to its commit.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fraudstream_end_to_end_seconds",
			Help: "Time from a transaction's Kafka timestamp to its decision being written and committed.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_batch_failures_total", Help: "Batches whose outputs or commit failed."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.threshold, m.decided, m.records, m.score, m.batch, m.e2e, m.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("pipeline: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Budgeted alerts the top Rate of recent traffic (threshold.Budget),
// warm-started from the model's calibration so that a model swap does not
// jump the alert rate.
type Budgeted struct {
	b *threshold.Budget
}

// NewBudgeted returns a budget decider for bundle b.
func NewBudgeted(b *model.Bundle, rate float64) *Budgeted {
	bd := threshold.NewBudget(rate, threshold.WindowConfig{})
	bd.Seed(b.Calibration.Probs, b.Calibration.Values, 20000)
	return &Budgeted{b: bd}
}

// Decide implements Decider.
func (d *Budgeted) Decide(score float32, _ string) (float32, bool, string) {
	t, a := d.b.Decide(float64(score))
	return float32(t), a, globalSegment
}

// Policy implements Decider.
func (d *Budgeted) Policy() string {
	return "budget-" + strconv.FormatFloat(d.b.Rate*100, 'g', 4, 64) + "%"
}

// FleetBudgeted decides with an alert budget shared by every scorer worker
// through a fleet.Exchange.
type FleetBudgeted struct {
	x *fleet.Exchange
}

// NewFleetBudgeted installs a budget for bundle b, warm-started from its
// calibration, in the exchange and returns a decider that uses it.
func NewFleetBudgeted(x *fleet.Exchange, b *model.Bundle, rate float64) *FleetBudgeted {
	bd := threshold.NewBudget(rate, threshold.WindowConfig{})
	bd.Seed(b.Calibration.Probs, b.Calibration.Values, 20000)
	x.Replace(bd)
	return &FleetBudgeted{x: x}
}

// Decide implements Decider.
func (d *FleetBudgeted) Decide(score float32, _ string) (float32, bool, string) {
	t, a := d.x.Decide(float64(score))
	return float32(t), a, globalSegment
}

// Policy implements Decider.
func (d *FleetBudgeted) Policy() string {
	return "fleet-budget-" + strconv.FormatFloat(d.x.Rate()*100, 'g', 4, 64) + "%"
}

// Risky alerts when a score's estimated exceedance probability under
// normal traffic is below Q (threshold.Risk, Peaks-Over-Threshold). It
// learns its tail from the first scores of each model; until then nothing
// alerts.
type Risky struct {
	r *threshold.Risk
}

// NewRisky returns a risk decider with false-alarm probability q.
func NewRisky(q float64) *Risky { return &Risky{r: threshold.NewRisk(q)} }

// Decide implements Decider.
func (d *Risky) Decide(score float32, _ string) (float32, bool, string) {
	t, a := d.r.Decide(float64(score))
	return float32(t), a, globalSegment
}

// Policy implements Decider.
func (d *Risky) Policy() string { return "risk-q" + strconv.FormatFloat(d.r.Q, 'g', 3, 64) }

// Segmented keeps a budget per segment (threshold.Segmented): a segment with
// too little history backs off to its parent and then to the global budget,
// which is warm-started from the model's calibration. Segment budgets are
// per worker; only a global budget is shared by the fleet.
type Segmented struct {
	s *threshold.Segmented
}

// NewSegmented returns a segmented budget decider for bundle b.
func NewSegmented(b *model.Bundle, rate float64, minCount uint64) *Segmented {
	s := threshold.NewSegmented(rate, minCount, threshold.WindowConfig{})
	s.Global().Seed(b.Calibration.Probs, b.Calibration.Values, 20000)
	return &Segmented{s: s}
}

// Decide implements Decider.
func (d *Segmented) Decide(score float32, segment string) (float32, bool, string) {
	t, a, used := d.s.Decide(segment, float64(score))
	if used == "" {
		used = globalSegment
	}
	return float32(t), a, used
}

// Policy implements Decider.
func (d *Segmented) Policy() string {
	return "segmented-budget-" + strconv.FormatFloat(d.s.Rate*100, 'g', 4, 64) + "%"
}

// FixedThreshold alerts above a static score (threshold.Fixed), for
// operators who want one.
type FixedThreshold struct{ f threshold.Fixed }

// NewFixed returns a fixed-threshold decider.
func NewFixed(score float64) *FixedThreshold { return &FixedThreshold{threshold.Fixed{Score: score}} }

// Decide implements Decider.
func (d *FixedThreshold) Decide(score float32, _ string) (float32, bool, string) {
	t, a := d.f.Decide(float64(score))
	return float32(t), a, globalSegment
}

// Policy implements Decider.
func (d *FixedThreshold) Policy() string { return "fixed" }
