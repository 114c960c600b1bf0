// Package trainer is the training daemon's loop: every interval, the
// leader among trainer replicas reads the recent window of transactions
// from Kafka, fits a candidate model, compares it with the current one on
// the same held-back rows, and stores it in the registry, promoted or, when
// clearly worse or broken, recorded with the reason.
package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// Config configures a Trainer. Zero values select the defaults.
type Config struct {
	Stream   stream.Config      // required
	Topic    string             // transactions topic; required
	Registry *registry.Registry // required
	// Owner names this replica in the leader lock. Default: host name + pid.
	Owner string
	// Every is the interval between rounds. Default 1h.
	Every time.Duration
	// Window is how far back a round reads. Default 24h.
	Window time.Duration
	// MaxRows caps the rows a round trains on (uniform sample). Default 200,000.
	MaxRows int
	// MinRows is the fewest rows worth training on. Default 1,000.
	MinRows int
	// Schema fixes the schema; nil reuses the current model's, or infers one.
	Schema *features.Schema
	// Ignore lists fields an inferred schema leaves out.
	Ignore []string
	// AE configures training.
	AE ae.Config
	// Gate is the loss ratio above which a candidate is not promoted: its
	// loss on the held-back rows against the current model's. Default 1.25.
	Gate float64
	// HoldBack is the share of the window kept out of training for the
	// gate. Default 0.1.
	HoldBack float64
	Logger   *slog.Logger
	Now      func() time.Time
	// OnRound, when set, receives every round's outcome (metrics).
	OnRound func(Round)
}

// Round is one training round's outcome.
type Round struct {
	Outcome string // promoted, rejected, skipped, follower, failed
	Version int64
	// Digest is the stored candidate's identity (version numbers restart
	// when Redis loses its data; digests do not repeat).
	Digest    string
	Reason    string
	Rows      int
	BadRows   int
	Loss      float64 // candidate's loss on the held-back rows
	Current   float64 // current model's loss on the same rows (NaN if none)
	Duration  time.Duration
	TrainLoss float64
}

// Trainer runs training rounds.
type Trainer struct {
	cfg  Config
	log  *slog.Logger
	lock *registry.Lock
}

// New checks cfg and fills defaults.
func New(cfg Config) (*Trainer, error) {
	if err := cfg.Stream.Validate(); err != nil {
		return nil, err
	}
	if cfg.Topic == "" || cfg.Registry == nil {
		return nil, errors.New("trainer: a topic and a registry are required")
	}
	if cfg.Owner == "" {
		h, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Every, time.Hour)
	def(&cfg.Window, 24*time.Hour)
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 200_000
	}
	if cfg.MinRows <= 0 {
		cfg.MinRows = 1000
	}
	if cfg.Gate <= 0 {
		cfg.Gate = 1.25
	}
	if cfg.HoldBack <= 0 || cfg.HoldBack >= 0.5 {
		cfg.HoldBack = 0.1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Trainer{cfg: cfg, log: log}, nil
}

// Run trains a round now and then every interval until ctx ends. Only the
// replica holding the leader lock trains; the lock lapses if it dies.
func (t *Trainer) Run(ctx context.Context) error {
	defer func() {
		if t.lock != nil {
			t.lock.Release(context.WithoutCancel(ctx))
		}
	}()
	tick := time.NewTicker(t.cfg.Every)
	defer tick.Stop()
	for {
		r, err := t.LeadAndTrain(ctx)
		if err != nil && ctx.Err() == nil {
			t.log.Error("training round failed", "err", err)
		} else if err == nil {
			t.log.Info("training round", "outcome", r.Outcome, "version", r.Version, "rows", r.Rows, "reason", r.Reason)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// LeadAndTrain takes or renews the leader lock and, as leader, trains one round.
func (t *Trainer) LeadAndTrain(ctx context.Context) (Round, error) {
	ttl := 2*t.cfg.Every + time.Minute
	if t.lock != nil {
		ok, err := t.lock.Renew(ctx, ttl)
		if err != nil {
			return Round{Outcome: "failed"}, err
		}
		if !ok {
			t.lock = nil
		}
	}
	if t.lock == nil {
		l, ok, err := t.cfg.Registry.TryLead(ctx, t.cfg.Owner, ttl)
		if err != nil {
			return Round{Outcome: "failed"}, err
		}
		if !ok {
			r := Round{Outcome: "follower", Reason: "another trainer holds the leader lock"}
			t.report(r)
			return r, nil
		}
		t.lock = l
	}
	return t.Train(ctx)
}

func (t *Trainer) report(r Round) {
	if t.cfg.OnRound != nil {
		t.cfg.OnRound(r)
	}
}

// Train runs one round regardless of leadership (trainer run --once).
func (t *Trainer) Train(ctx context.Context) (r Round, err error) {
	start := t.cfg.Now()
	defer func() {
		r.Duration = t.cfg.Now().Sub(start)
		if err != nil {
			r.Outcome = "failed"
		}
		t.report(r)
	}()
	since := start.Add(-t.cfg.Window)
	values, err := stream.ReadWindow(ctx, t.cfg.Stream, t.cfg.Topic, since, t.cfg.MaxRows, uint64(start.UnixNano()))
	if err != nil {
		return r, err
	}
	table, bad, err := features.ReadTable(bytes.NewReader(bytes.Join(values, []byte("\n"))), features.JSONL)
	if err != nil && len(values) > 0 {
		return r, fmt.Errorf("trainer: decode window: %w", err)
	}
	r.BadRows = len(bad)
	if table == nil || len(table.Rows) < t.cfg.MinRows {
		n := 0
		if table != nil {
			n = len(table.Rows)
		}
		r.Outcome, r.Rows, r.Reason = "skipped", n, fmt.Sprintf("%d usable transactions since %s, fewer than %d", n, since.Format(time.RFC3339), t.cfg.MinRows)
		return r, nil
	}
	cur, curPtr := t.current(ctx)
	schema := t.cfg.Schema
	if schema == nil && cur != nil {
		schema = &cur.Encoder.Schema
	}
	if schema == nil {
		schema = features.InferSchema(table.Names, table.Rows, features.InferOptions{Ignore: t.cfg.Ignore})
	}
	rows := features.Project(schema, table.Names, table.Rows)
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 3))
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	hold := int(float64(len(rows)) * t.cfg.HoldBack)
	held, train := rows[:hold], rows[hold:]
	r.Rows = len(train)
	cand, err := model.Fit(schema, train, model.FitOptions{AE: t.cfg.AE, Source: "kafka:" + t.cfg.Topic, BadRows: len(bad), Now: t.cfg.Now})
	if err != nil {
		return r, err
	}
	cand.Meta.TimeFrom, cand.Meta.TimeTo = since.UTC(), start.UTC()
	r.TrainLoss = cand.Meta.TrainLoss
	r.Loss, r.Current = cand.Loss(held), math.NaN()
	promote, reason := true, ""
	if err := smoke(cand, held); err != nil {
		promote, reason = false, "smoke test: "+err.Error()
	} else if cur != nil && sameFields(cur, cand) {
		r.Current = cur.Loss(held)
		if r.Loss > t.cfg.Gate*r.Current {
			promote = false
			reason = fmt.Sprintf("loss %.4f on held-back rows against %.4f for version %d (%s) (gate ×%.2f)", r.Loss, r.Current, curPtr.Version, registry.Short(curPtr.Digest), t.cfg.Gate)
		}
	}
	return t.store(ctx, r, cand, promote, reason)
}

// store records the candidate, promoted or with the reason it was not. An
// operator's pin wins over the gate: the candidate is recorded as not
// promoted, "pinned". As leader the write is fenced by the lock.
func (t *Trainer) store(ctx context.Context, r Round, cand *model.Bundle, promote bool, reason string) (Round, error) {
	pinned, isPinned, err := t.cfg.Registry.Pinned(ctx)
	if err != nil {
		return r, err
	}
	if promote && isPinned {
		promote, reason = false, pinnedReason(pinned)
	}
	blob, err := cand.MarshalBinary()
	if err != nil {
		return r, err
	}
	store := t.cfg.Registry.Store
	if t.lock != nil {
		store = t.lock.Store
	}
	info := registry.Info{Summary: cand.Describe(), ValLoss: cand.Meta.ValLoss, Rows: cand.Meta.Rows, TrainedBy: t.cfg.Owner, Reason: reason}
	r.Version, err = store(ctx, blob, info, promote)
	if errors.Is(err, registry.ErrPinned) { // pinned while this round ran
		promote, info.Reason = false, "pinned: an operator pinned a version during the round"
		r.Version, err = store(ctx, blob, info, false)
	}
	if errors.Is(err, registry.ErrNotLeader) {
		t.lock = nil
	}
	if err != nil && r.Version == 0 {
		return r, err
	}
	if err != nil {
		t.log.Warn("candidate stored, registry housekeeping failed", "version", r.Version, "err", err)
	}
	r.Digest = model.Digest(blob)
	r.Outcome, r.Reason = "promoted", info.Reason
	if !promote {
		r.Outcome = "rejected"
	}
	return r, nil
}

func pinnedReason(v int64) string {
	return fmt.Sprintf("pinned: an operator pinned version %d (trainer models unpin lets rounds promote again)", v)
}

// current returns the registry's current model, if any can be loaded.
func (t *Trainer) current(ctx context.Context) (*model.Bundle, registry.Pointer) {
	p, blob, err := t.cfg.Registry.Current(ctx)
	if err != nil {
		if !errors.Is(err, registry.ErrNoModel) {
			t.log.Warn("current model unavailable; judging the candidate without it", "err", err)
		}
		return nil, registry.Pointer{}
	}
	b, err := model.Unmarshal(blob)
	if err != nil {
		t.log.Warn("current model does not load; training from scratch", "version", p.Version, "digest", registry.Short(p.Digest), "err", err)
		return nil, registry.Pointer{}
	}
	return b, p
}

// smoke checks that a candidate scores held-back rows with finite scores
// and a sane calibration.
func smoke(b *model.Bundle, rows [][]string) error {
	if q := b.Calibration.Quantile(0.995); math.IsNaN(q) || math.IsInf(q, 0) || q <= 0 {
		return fmt.Errorf("calibration p99.5 is %v", q)
	}
	sc := b.NewScorer(1024)
	for from := 0; from < len(rows); from += 1024 {
		n := min(1024, len(rows)-from)
		for i := range n {
			sc.SetRow(i, rows[from+i])
		}
		for _, s := range sc.Score(n) {
			if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
				return errors.New("non-finite score on held-back rows")
			}
		}
	}
	return nil
}

// sameFields reports whether two bundles learn the same fields, the
// condition for comparing their losses.
func sameFields(a, b *model.Bundle) bool {
	fa, fb := model.Layout(a.Encoder), model.Layout(b.Encoder)
	if len(fa) != len(fb) {
		return false
	}
	for i := range fa {
		if fa[i].Name != fb[i].Name || fa[i].Numeric != fb[i].Numeric {
			return false
		}
	}
	return true
}
