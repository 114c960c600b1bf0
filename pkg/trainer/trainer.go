// Package trainer is the training daemon's loop: every interval, the
// leader among trainer replicas reads the recent window of transactions
// from Kafka, fits a candidate model, compares it with the current one on
// the same held-back rows (rows newer than the current model's training
// window, kept out of the candidate's training; see Gate), and stores it in
// the registry, promoted or, when refused by the gate or pinned by an
// operator, recorded with the reason.
package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
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
	// Every is the interval between rounds that promoted or rejected a
	// candidate. Default 1h.
	Every time.Duration
	// RetryMin and RetryMax bound the backoff after a round that failed or
	// was skipped: the next try comes after RetryMin, doubling up to
	// RetryMax, instead of a whole Every. Defaults 5s and min(Every, 5m).
	RetryMin, RetryMax time.Duration
	// RampStart: while a round trains on fewer rows than MaxRows (a young
	// deployment whose window is still filling), the next round comes
	// after RampStart, doubling each round up to Every, instead of a whole
	// Every: a first model from the first 20,000 rows is a bootstrap,
	// replaced as data arrives. Default 1m; negative: off.
	RampStart time.Duration
	// RoundTimeout bounds a round's I/O (the window read, the registry).
	// Default max(Every, 10m).
	RoundTimeout time.Duration
	// Window is how far back a round reads. Default 24h.
	Window time.Duration
	// MaxRows caps the rows a round trains on (uniform sample). Default 200,000.
	MaxRows int
	// MinRows is the fewest rows worth training on. Default 20,000: a first
	// model from a few thousand rows of a fresh stream (1,000 was the
	// default) alerted with precision 0.43 against the demo's 0.7.
	MinRows int
	// Schema fixes the schema (trainer run --schema). Nil: the registry's
	// pinned schema, else the current model's, else one inferred from the
	// window. The schema of the first promoted model is pinned; see
	// Trainer.schema.
	Schema *features.Schema
	// AllowSchemaChange lets Schema change the kinds of the pinned schema
	// (the change is logged, and pinned once a model trained on it is
	// promoted); without it such a Schema fails every round.
	AllowSchemaChange bool
	// Ignore lists fields an inferred schema leaves out.
	Ignore []string
	// AE configures training.
	AE ae.Config
	// Gate decides whether a candidate replaces the current model.
	Gate Gate
	// HoldBack is the share of the window kept out of training for the
	// gate, at most. Default 0.1.
	HoldBack float64
	// MinHeldBack is the fewest held-back rows the gate compares on, and
	// the fewest rows newer than the current model's training window that
	// make a fair comparison. Default 300.
	MinHeldBack int
	Logger      *slog.Logger
	Now         func() time.Time
	// Seed, when not zero, fixes a round's random choices (the window's
	// sample beyond MaxRows, the rows held back for the gate), so a test or
	// an investigation can repeat a round exactly. Zero seeds them from the
	// round's start time, so successive rounds sample afresh.
	Seed uint64
	// OnRound, when set, receives every round's outcome (metrics).
	OnRound func(Round)
	// SigningKey, when set, signs every candidate stored (model.Sign).
	SigningKey *model.SigningKey
	// Labels names the analysts' labels topic (pkg/labels). Transactions
	// whose latest label is fraud are kept out of each round's rows
	// (training and held back, and the entity score's fit, though they
	// still step their entities' states as they do online): the model
	// must not learn them as normal. Those labelled legitimate or unsure
	// stay. Empty: no labels; a topic that does not exist yet is no labels.
	Labels string
	// HistoryWindow is how far before the window a round reads to warm
	// the entities' states when the schema names entity_fields (see
	// fitEntity): those transactions step the states in event-time order
	// but fit nothing, so the window's first days are not scored as if
	// every card were new. Default 30 days (the entity score's window);
	// negative: none.
	HistoryWindow time.Duration
	// Entities, when set, is the scorers' entity store: once a candidate
	// with an entity score is promoted, its replay catches up with the
	// topic and the states of the entities it stepped are stored where the
	// store has none, or replace those it supersedes (seedEntities). Each
	// promotion offers the store every entity the replay holds (at most
	// one per transaction read), 1,000 to a round trip.
	Entities pipeline.EntityStore
	// EntityMaxRows bounds the transactions (history and window) a round's
	// entity replay holds while it fits: about 190 bytes each with two
	// entity fields (measured: 132 for the transaction read; 12 more for
	// its position, kept for seeding), plus 16 per candidate categorical
	// field, so about 380 MB at the default and more
	// with categorical fields, plus the entities' states; beyond it the
	// oldest history is left out. The catch-up before seeding reads at
	// most a tenth more (none when more than that arrived during the
	// round). The arrays grow by appending, so while one grows its old
	// and new copies are held together for a moment. Default 2,000,000.
	EntityMaxRows int
}

// maxLabels bounds the label records a round reads (the labels given
// within its window).
const maxLabels = 2_000_000

// Round is one training round's outcome. Loss, Current and Gate are those
// of the comparison on held-back rows.
type Round struct {
	Outcome string // promoted, rejected, skipped, follower, failed
	Version int64
	// Digest is the stored candidate's identity (version numbers restart
	// when Redis loses its data; digests do not repeat).
	Digest  string
	Reason  string
	Rows    int
	BadRows int
	Loss    float64 // candidate's loss on the held-back rows (its own units)
	Current float64 // current model's loss on the same rows (NaN if none; its own units)
	// HeldBack says which rows the gate compared on.
	HeldBack string
	// Excluded counts the window's rows left out because their
	// transaction's latest label is fraud.
	Excluded  int
	Gate      Verdict
	Duration  time.Duration
	TrainLoss float64
	// Entity says what the entity score's fit did (see fitEntity); empty
	// when the schema names no entity_fields.
	Entity string
	// EntitySeed says what seeding the scorers' entity states did (see
	// seedEntities); empty when nothing was seeded.
	EntitySeed string
}

// Trainer runs training rounds.
type Trainer struct {
	cfg   Config
	log   *slog.Logger
	lock  *registry.Lock
	admin *stream.Admin
	// beforeSeed, when a test sets it, runs between a promotion and the
	// entity seeding (the scorers' traffic meanwhile).
	beforeSeed func(context.Context)
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
	def(&cfg.RetryMin, 5*time.Second)
	if cfg.RampStart == 0 {
		cfg.RampStart = time.Minute
	}
	def(&cfg.RetryMax, min(cfg.Every, 5*time.Minute))
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	def(&cfg.RoundTimeout, max(cfg.Every, 10*time.Minute))
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 200_000
	}
	if cfg.MinRows <= 0 {
		cfg.MinRows = 20_000
	}
	cfg.Gate.defaults()
	if cfg.HoldBack <= 0 || cfg.HoldBack >= 0.5 {
		cfg.HoldBack = 0.1
	}
	if cfg.MinHeldBack <= 0 {
		cfg.MinHeldBack = 300
	}
	if cfg.HistoryWindow == 0 {
		cfg.HistoryWindow = model.DefaultEntityWindow
	}
	cfg.HistoryWindow = max(cfg.HistoryWindow, 0)
	if cfg.EntityMaxRows <= 0 {
		cfg.EntityMaxRows = 2_000_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	admin, err := stream.NewAdmin(cfg.Stream)
	if err != nil {
		return nil, err
	}
	return &Trainer{cfg: cfg, log: log, admin: admin}, nil
}

// Close releases the trainer's Kafka client (the readiness check's).
func (t *Trainer) Close() error { return t.admin.Close() }

// readyTimeout bounds a readiness check.
const readyTimeout = 2 * time.Second

// Ready reports whether the trainer can reach its inputs: Redis (a ping)
// and Kafka (a connection to a broker, then the transactions topic's
// metadata, which says whether the topic exists). The checks are cheap and
// bounded by 2s together.
func (t *Trainer) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	redisErr := make(chan error, 1)
	go func() { redisErr <- t.cfg.Registry.Ping(ctx) }()
	kafkaErr := dialBroker(ctx, t.cfg.Stream)
	if kafkaErr == nil {
		kafkaErr = t.admin.CheckTopics(ctx, t.cfg.Topic)
	}
	var errs []error
	if err := <-redisErr; err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if kafkaErr != nil {
		errs = append(errs, fmt.Errorf("kafka: %w", kafkaErr))
	}
	return errors.Join(errs...)
}

// dialBroker opens (and closes) a connection to the first broker that
// answers: a fresh connection, where metadata could come from the client's
// cache.
func dialBroker(ctx context.Context, cfg stream.Config) error {
	d := &kafka.Dialer{ClientID: cfg.ClientID, TLS: cfg.TLS, SASLMechanism: cfg.SASL, Timeout: readyTimeout}
	var errs []error
	for _, b := range cfg.Brokers {
		c, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			return c.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run trains a round now and then every interval until ctx ends. After a
// round that failed or was skipped (too few rows, Kafka or Redis
// unreachable) it tries again with backoff (RetryMin doubling to RetryMax)
// rather than a whole interval, so that a deployment without a model gets
// one as soon as it can. Only the replica holding the leader lock trains;
// the lock lapses if it dies.
func (t *Trainer) Run(ctx context.Context) error {
	defer func() {
		if t.lock != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
			t.lock.Release(rctx)
			cancel()
		}
	}()
	backoff, ramp := t.cfg.RetryMin, t.cfg.RampStart
	for {
		rctx, cancel := context.WithTimeout(ctx, t.cfg.RoundTimeout)
		r, err := t.LeadAndTrain(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		wait, ramp = t.next(r, ramp)
		switch {
		case err != nil:
			wait, backoff = backoff, min(2*backoff, t.cfg.RetryMax)
			t.log.Error("training round failed", "err", err, "retry_in", wait)
		case r.Outcome == "skipped":
			wait, backoff = backoff, min(2*backoff, t.cfg.RetryMax)
			t.log.Info("training round skipped", "reason", r.Reason, "retry_in", wait)
		default:
			backoff = t.cfg.RetryMin
			t.log.Info("training round", "outcome", r.Outcome, "version", r.Version, "digest", registry.Short(r.Digest),
				"rows", r.Rows, "reason", r.Reason, "held_back", r.HeldBack, "next_in", wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// next returns the wait before the round after r, and the ramp for the one
// after that: Every, except while rounds train on fewer rows than MaxRows,
// when the wait is the ramp, which doubles up to Every.
func (t *Trainer) next(r Round, ramp time.Duration) (time.Duration, time.Duration) {
	if ramp <= 0 || ramp >= t.cfg.Every || r.Rows >= t.cfg.MaxRows {
		return t.cfg.Every, ramp
	}
	switch r.Outcome {
	case "promoted", "rejected":
		return ramp, min(2*ramp, t.cfg.Every)
	}
	return t.cfg.Every, ramp
}

// LeadAndTrain takes or renews the leader lock and, as leader, trains one round.
func (t *Trainer) LeadAndTrain(ctx context.Context) (Round, error) {
	ttl := 2*t.cfg.Every + time.Minute
	failed := func(err error) (Round, error) {
		r := Round{Outcome: "failed", Reason: err.Error()}
		t.report(r)
		return r, err
	}
	if t.lock != nil {
		ok, err := t.lock.Renew(ctx, ttl)
		if err != nil {
			return failed(err)
		}
		if !ok {
			t.lock = nil
		}
	}
	if t.lock == nil {
		l, ok, err := t.cfg.Registry.TryLead(ctx, t.cfg.Owner, ttl)
		if err != nil {
			return failed(err)
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
	seed := t.cfg.Seed
	if seed == 0 {
		seed = uint64(start.UnixNano())
	}
	values, err := stream.ReadWindow(ctx, t.cfg.Stream, t.cfg.Topic, since, t.cfg.MaxRows, seed)
	if err != nil {
		return r, err
	}
	cur, curPtr := t.current(ctx)
	schema, pinned, err := t.schema(ctx, cur)
	if err != nil {
		return r, err
	}
	// Decode only the schema's fields when there is one: a record's other
	// keys cannot widen the table.
	var names []string
	if schema != nil {
		names = schema.Names()
	}
	table, bad, err := features.DecodeMessages(values, names, features.MessageOptions{})
	if err != nil && len(values) > 0 {
		return r, fmt.Errorf("trainer: decode window: %w", err)
	}
	r.BadRows = len(bad)
	if table != nil && table.DroppedKeys > 0 {
		t.log.Warn("keys left out while discovering the window's columns", "dropped", table.DroppedKeys)
	}
	if table == nil || len(table.Rows) < t.cfg.MinRows {
		n := 0
		if table != nil {
			n = len(table.Rows)
		}
		r.Outcome, r.Rows, r.Reason = "skipped", n, fmt.Sprintf("%d usable transactions since %s, fewer than %d", n, since.Format(time.RFC3339), t.cfg.MinRows)
		return r, nil
	}
	inferred := schema == nil
	if inferred {
		schema = features.InferSchema(table.Names, table.Rows, features.InferOptions{Ignore: t.cfg.Ignore})
	}
	rows := features.Project(schema, table.Names, table.Rows)
	if inferred {
		if notes := features.InferEntities(schema, rows); len(notes) > 0 {
			t.log.Info("entities inferred", "amount", schema.AmountField, "time", schema.TimeField, "entities", strings.Join(notes, ", "))
		}
	}
	var book *labels.Book
	if table.Rows, rows, r.Excluded, book, err = t.excludeFraud(ctx, schema, since, table.Rows, rows); err != nil {
		return r, err
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	heldIdx, how := t.holdBack(schema, rows, cur, curPtr, rng)
	r.HeldBack = how
	heldSet := make([]bool, len(rows))
	held := make([][]string, 0, len(heldIdx))
	for _, i := range heldIdx {
		heldSet[i] = true
		held = append(held, table.Rows[i])
	}
	train := make([][]string, 0, len(rows)-len(heldIdx))
	for i, row := range rows {
		if !heldSet[i] {
			train = append(train, row)
		}
	}
	rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
	r.Rows = len(train)
	cand, err := model.Fit(schema, train, model.FitOptions{AE: t.cfg.AE, Source: "kafka:" + t.cfg.Topic, BadRows: len(bad), Now: t.cfg.Now})
	if err != nil {
		return r, err
	}
	cand.Meta.TimeFrom, cand.Meta.TimeTo = trainingWindow(schema, train, since, start)
	var rep *entityReplay
	if len(schema.EntityFields) > 0 {
		if r.Entity, rep, err = t.fitEntity(ctx, cand, since, book); err != nil {
			return r, err
		}
		t.log.Info("entity score", "fit", r.Entity)
	}
	r.TrainLoss = cand.Meta.TrainLoss
	curName := ""
	if cur != nil {
		curName = fmt.Sprintf("version %d (%s)", curPtr.Version, registry.Short(curPtr.Digest))
	}
	r.Gate = t.cfg.Gate.judge(cand, cur, curName, table.Names, held)
	r.Loss, r.Current = r.Gate.Loss, r.Gate.CurrentLoss
	if !r.Gate.Promote {
		t.log.Info("candidate not promoted", "reason", r.Gate.Reason, "held_back", how)
	}
	r, err = t.store(ctx, r, cand, r.Gate.Promote, r.Gate.Reason)
	if err == nil && r.Outcome == "promoted" {
		if t.beforeSeed != nil {
			t.beforeSeed(ctx)
		}
		r.EntitySeed = t.seedEntities(ctx, cand, rep)
	}
	if err == nil && r.Outcome == "promoted" && !sameSchema(pinned, schema) {
		// The deployment's schema from now on: later rounds use it instead
		// of inferring one.
		pin := t.cfg.Registry.PinSchema
		if t.lock != nil {
			pin = t.lock.PinSchema
		}
		if err := pin(ctx, schema); err != nil {
			t.log.Error("schema not pinned; the next round pins it", "err", err)
		} else {
			t.log.Info("schema pinned", "fields", len(schema.Fields), "changes", fmt.Sprint(features.DiffSchemas(pinned, schema)))
		}
	}
	return r, err
}

// excludeFraud drops the rows (raw and projected alike) whose transaction's
// latest label, among the labels given since the window began, is fraud. A
// label for a transaction in the window was given after it, so after since.
// It returns the labels read too (nil: none).
func (t *Trainer) excludeFraud(ctx context.Context, schema *features.Schema, since time.Time, raw, rows [][]string) ([][]string, [][]string, int, *labels.Book, error) {
	if t.cfg.Labels == "" {
		return raw, rows, 0, nil, nil
	}
	values, err := t.admin.ReadWindow(ctx, t.cfg.Labels, since, maxLabels, 1)
	var missing *stream.MissingTopicsError
	if errors.As(err, &missing) {
		return raw, rows, 0, nil, nil
	}
	if err != nil {
		// Training without the labels would learn confirmed fraud as normal.
		return nil, nil, 0, nil, fmt.Errorf("trainer: read the labels: %w", err)
	}
	book := labels.NewBook()
	for _, v := range values {
		book.Add(v)
	}
	if book.Bad > 0 {
		t.log.Warn("label records skipped", "topic", t.cfg.Labels, "bad", book.Bad)
	}
	if book.Len() == 0 {
		return raw, rows, 0, nil, nil
	}
	id := schema.Index(schema.IDField)
	if id < 0 {
		t.log.Warn("labels not applied: the schema names no transaction id field", "labels", book.Len())
		return raw, rows, 0, nil, nil
	}
	keptRaw, kept := raw[:0], rows[:0]
	for i, row := range rows {
		if book.Fraud(row[id]) {
			continue
		}
		keptRaw, kept = append(keptRaw, raw[i]), append(kept, row)
	}
	n := len(rows) - len(kept)
	if n > 0 {
		t.log.Info("labelled fraud kept out of training", "rows", n, "labels", book.Len())
	}
	return keptRaw, kept, n, book, nil
}

// ErrSchemaChange means a configured schema changes kinds of the pinned one
// and the change was not allowed.
var ErrSchemaChange = errors.New("trainer: the configured schema changes the pinned schema's kinds")

// schema returns the schema a round trains with, and the pinned one (nil
// when none). Once a deployment has pinned a schema, rounds use it and
// infer nothing; a configured schema (--schema) is used instead only when
// it keeps the pinned kinds, or with AllowSchemaChange (the changes are
// logged). Without a pin, the configured schema, else the current model's
// (deployments from before pinning), else nil: infer from the window.
func (t *Trainer) schema(ctx context.Context, cur *model.Bundle) (schema, pinned *features.Schema, err error) {
	pinned, err = t.cfg.Registry.Schema(ctx)
	if errors.Is(err, registry.ErrNoSchema) {
		pinned, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	switch {
	case t.cfg.Schema != nil && pinned != nil:
		if changes := features.DiffSchemas(pinned, t.cfg.Schema); len(changes) > 0 {
			if !t.cfg.AllowSchemaChange {
				return nil, nil, fmt.Errorf("%w: %s (trainer models schema prints the pinned one); pass --allow-schema-change (Config.AllowSchemaChange) to train on it", ErrSchemaChange, joinChanges(changes))
			}
			t.log.Warn("schema change allowed", "changes", joinChanges(changes))
		}
		return t.cfg.Schema, pinned, nil
	case t.cfg.Schema != nil:
		return t.cfg.Schema, nil, nil
	case pinned != nil:
		return pinned, pinned, nil
	case cur != nil:
		return &cur.Encoder.Schema, nil, nil
	}
	return nil, nil, nil
}

// CheckSchema reports a configured schema that the pinned one refuses (see
// Config.AllowSchemaChange), so that a daemon fails at start rather than
// in every round.
func (t *Trainer) CheckSchema(ctx context.Context) error {
	_, _, err := t.schema(ctx, nil)
	return err
}

func joinChanges(cs []features.SchemaChange) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, "; ")
}

// sameSchema: a and b would be written identically (reasons aside).
func sameSchema(a, b *features.Schema) bool {
	if a == nil || b == nil {
		return a == b
	}
	enc := func(s *features.Schema) string {
		c := *s
		c.Fields = slices.Clone(s.Fields)
		for i := range c.Fields {
			c.Fields[i].Reason = ""
		}
		var buf bytes.Buffer
		c.WriteJSON(&buf)
		return buf.String()
	}
	return enc(a) == enc(b)
}

// holdBack picks the rows (indices into rows, schema order) kept out of
// training for the gate. They are the rows newer than the current model's
// training window, so that the current model is judged on rows it has not
// seen: a uniform sample of them, at most HoldBack of the window (at least
// MinHeldBack). When there are fewer than MinHeldBack such rows (rounds
// close together, little traffic, no time field, or a model that records
// no window), the fallback is a uniform sample of the whole window; it
// overlaps the current model's training data, so the comparison favours
// the current model, and how says so.
func (t *Trainer) holdBack(schema *features.Schema, rows [][]string, cur *model.Bundle, curPtr registry.Pointer, rng *rand.Rand) (idx []int, how string) {
	n := len(rows)
	want := min(max(int(t.cfg.HoldBack*float64(n)), t.cfg.MinHeldBack), n/3)
	ti := schema.Index(schema.TimeField)
	if cur == nil {
		all := rng.Perm(n)
		return all[:want], fmt.Sprintf("%d random rows of the window (no current model)", want)
	}
	name := fmt.Sprintf("version %d (%s)", curPtr.Version, registry.Short(curPtr.Digest))
	var reason string
	switch {
	case ti < 0:
		reason = "the schema has no time field"
	case cur.Meta.TimeTo.IsZero():
		reason = name + " records no training window"
	default:
		layout := schema.Fields[ti].Layout
		var fresh []int
		for i, row := range rows {
			if ti < len(row) {
				if tm, ok := features.ParseTime(row[ti], layout); ok && tm.After(cur.Meta.TimeTo) {
					fresh = append(fresh, i)
				}
			}
		}
		if len(fresh) >= t.cfg.MinHeldBack {
			rng.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
			k := min(len(fresh), max(want, t.cfg.MinHeldBack))
			return fresh[:k], fmt.Sprintf("%d of the %d rows newer than %s's training window (ends %s)", k, len(fresh), name, cur.Meta.TimeTo.Format(time.RFC3339))
		}
		reason = fmt.Sprintf("only %d rows are newer than %s's training window (ends %s), fewer than %d", len(fresh), name, cur.Meta.TimeTo.Format(time.RFC3339), t.cfg.MinHeldBack)
	}
	all := rng.Perm(n)
	return all[:want], fmt.Sprintf("%d random rows of the window: %s; they overlap its training data, which favours it", want, reason)
}

// trainingWindow is the event-time range of the training rows (times after
// the round started, from skewed clocks, left out), or the window read
// when the schema has no time field or no time parses.
func trainingWindow(schema *features.Schema, train [][]string, since, start time.Time) (from, to time.Time) {
	if ti := schema.Index(schema.TimeField); ti >= 0 {
		layout := schema.Fields[ti].Layout
		for _, row := range train {
			if ti >= len(row) {
				continue
			}
			tm, ok := features.ParseTime(row[ti], layout)
			if !ok || tm.After(start) {
				continue
			}
			if from.IsZero() || tm.Before(from) {
				from = tm
			}
			if tm.After(to) {
				to = tm
			}
		}
	}
	if to.IsZero() {
		return since.UTC(), start.UTC()
	}
	return from.UTC(), to.UTC()
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
	if t.cfg.SigningKey != nil {
		if blob, err = model.Sign(blob, t.cfg.SigningKey); err != nil {
			return r, err
		}
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
