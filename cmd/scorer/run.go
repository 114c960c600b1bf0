package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/connect"
	"github.com/fraudstream/fraudstream/pkg/fleet"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
	"github.com/fraudstream/fraudstream/pkg/ops"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// runConfig is the streaming scorer's configuration (`scorer run`).
type runConfig struct {
	Brokers      string
	Group        string
	Tx           string
	Alerts       string
	Scores       string
	Dead         string
	CreateTopics bool
	Partitions   int
	Replication  int
	MinISR       int
	Kafka        connect.Kafka // TLS and SASL
	Redis        connect.Redis
	Prefix       string
	VerifyKeys   []string // public key files; empty: model signatures are not checked
	MetricsAddr  string
	Batch        int
	Linger       time.Duration
	Quantile     float64
	Policy       string
	Budget       float64
	RiskQ        float64
	Fixed        float64
	Segments     string
	SegmentMin   int
	Poll         time.Duration
	MaxBytes     int
	MaxUnusable  float64
	MaxKeys      int
	Drain        time.Duration
	EntityTTL    time.Duration
	// The review service's re-ranker in the decision (--reranker-blend).
	RerankerBlend  bool
	RerankerWeight float64
	ReviewPrefix   string
	StallAfter     time.Duration
	LogLevel       string
	StuckAfter     time.Duration
	// FleetSecretFile holds the HMAC secret of the fleet's windows.
	FleetSecretFile string
}

func runFlags(fs *flag.FlagSet, c *runConfig) {
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&c.Group, "group", "scorers", "consumer group shared by all scorer workers")
	fs.StringVar(&c.Tx, "transactions", "transactions", "topic of incoming transactions (JSON)")
	fs.StringVar(&c.Alerts, "alerts", "alerts", "topic for alerts")
	fs.StringVar(&c.Scores, "scores", "scores", "topic for every decision (empty: off)")
	fs.StringVar(&c.Dead, "dead-letter", "transactions-dead", "topic for transactions that cannot be scored")
	fs.BoolVar(&c.CreateTopics, "create-topics", false, "create missing topics with --partitions, --replication and --min-insync-replicas; without it a missing topic is an error that names it")
	fs.IntVar(&c.Partitions, "partitions", 6, "--create-topics: partitions of each topic created (the dead-letter topic too)")
	fs.IntVar(&c.Replication, "replication", 0, "--create-topics: replication factor (0: the broker's default.replication.factor)")
	fs.IntVar(&c.MinISR, "min-insync-replicas", 0, "--create-topics: min.insync.replicas of each topic created (0: the broker's default)")
	c.Kafka.Register(fs)
	c.Redis.Register(fs, "127.0.0.1:6379", "the model registry")
	fs.StringVar(&c.Prefix, "registry-prefix", "fraudstream:model:", "key prefix of the model registry")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9101", "listen address for /metrics, /healthz and /readyz (empty: off)")
	fs.IntVar(&c.Batch, "batch", 8192, "largest batch of transactions (the scorer's scratch grows to it only under a backlog)")
	fs.DurationVar(&c.Linger, "linger", 5*time.Millisecond, "how long a batch waits to fill after its first transaction")
	fs.StringVar(&c.Policy, "policy", "budget", "alert policy: budget (the top --budget of the fleet's recent traffic, warm-started from each model's calibration), risk (exceedance probability below --risk-q, Peaks-Over-Threshold), fixed (above --fixed-threshold) or calibrated (above --threshold-quantile of validation scores)")
	fs.Float64Var(&c.RiskQ, "risk-q", 1e-4, "risk policy: false-alarm probability per transaction")
	fs.Float64Var(&c.Fixed, "fixed-threshold", 0, "fixed policy: alert above this score")
	fs.StringVar(&c.Segments, "segment-fields", "", "budget policy: comma-separated fields whose values make a segment with its own budget (e.g. mcc,country,channel); empty: one fleet-wide budget")
	fs.IntVar(&c.SegmentMin, "segment-min", 20000, "scores a segment needs before it decides with its own threshold (it backs off to its parent, then the global budget)")
	fs.Float64Var(&c.Budget, "budget", 0.005, "budget policy: share of transactions to alert on (0.005 = 50 per 10,000)")
	fs.Float64Var(&c.Quantile, "threshold-quantile", 0.995, "calibrated policy: alert above this quantile of the model's validation scores")
	fs.DurationVar(&c.Poll, "model-poll", 10*time.Second, "how often to check the registry in case a notice was missed")
	offline.VerifyKeyFlag(fs, &c.VerifyKeys)
	fs.IntVar(&c.MaxBytes, "max-message-bytes", 64<<10, "a transaction larger than this goes to the dead-letter topic, cut to this size")
	fs.IntVar(&c.MaxKeys, "max-keys", 1000, "a transaction with more top-level keys than this goes to the dead-letter topic")
	fs.Float64Var(&c.MaxUnusable, "max-unusable", 0.5, "a transaction whose learned fields are more than this share missing or invalid goes to the dead-letter topic instead of being scored")
	fs.BoolVar(&c.RerankerBlend, "reranker-blend", false, "blend each score with the fraud probability the review service's re-ranker learned from analysts' labels (score × e^(w·(2p−1))); with no re-ranker for the model in use, nothing changes")
	fs.Float64Var(&c.RerankerWeight, "reranker-weight", 1, "--reranker-blend: w, so a score moves by at most a factor e^w either way")
	fs.StringVar(&c.ReviewPrefix, "review-prefix", "fraudstream:review:", "--reranker-blend: the review service's Redis key prefix")
	fs.DurationVar(&c.EntityTTL, "entity-ttl", pipeline.DefaultEntityTTL, "how long an entity (card, terminal) without transactions keeps its state in Redis, for models with an entity score")
	fs.DurationVar(&c.Drain, "drain-timeout", 10*time.Second, "on SIGTERM, how long the batch in flight may take to be written and committed (past it, it is left to be redelivered)")
	fs.DurationVar(&c.StuckAfter, "rejoin-after", 30*time.Second, "rejoin the consumer group when a fetch has waited this long while transactions wait on this worker's partitions (a stalled Kafka client)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error (debug adds the Kafka client's own error reports)")
	fs.DurationVar(&c.StallAfter, "stall-after", 2*time.Minute, "/healthz fails when transactions wait and no batch has been committed for this long, or a batch has been in flight this long")
	fs.StringVar(&c.FleetSecretFile, "fleet-secret-file", os.Getenv("FRAUDSTREAM_FLEET_SECRET_FILE"), "file holding the secret (at least 16 bytes, shared by all scorers) that authenticates the fleet budget's windows in Redis with HMAC-SHA256; windows without it are ignored (default $FRAUDSTREAM_FLEET_SECRET_FILE; empty: unauthenticated)")
}

func (c runConfig) validate() error {
	switch c.Policy {
	case "budget", "calibrated", "risk":
	case "fixed":
		if !(c.Fixed > 0) {
			return errors.New("--policy fixed needs --fixed-threshold above 0")
		}
	default:
		return fmt.Errorf("unknown --policy %q (budget, risk, fixed or calibrated)", c.Policy)
	}
	if !(c.Budget > 0 && c.Budget < 1) {
		return fmt.Errorf("--budget %v must be between 0 and 1", c.Budget)
	}
	if c.Segments != "" && c.Policy != "budget" {
		return fmt.Errorf("--segment-fields needs --policy budget, not %s", c.Policy)
	}
	if c.MaxKeys < 1 {
		return fmt.Errorf("--max-keys %d must be at least 1", c.MaxKeys)
	}
	if !(c.MaxUnusable > 0 && c.MaxUnusable <= 1) {
		return fmt.Errorf("--max-unusable %v must be a share above 0 and at most 1", c.MaxUnusable)
	}
	return nil
}

// serve runs the streaming scorer until ctx ends; it returns after every
// goroutine it started has stopped and the last batch is committed.
//
// Order matters: the worker loads a model before it joins the consumer
// group, so it never holds partitions it cannot score; and it keeps going
// through broker and Redis outages (the pipeline retries, the loader keeps
// the model it has), so that a fault does not turn into exits and a
// rebalance storm.
func serve(ctx context.Context, c runConfig, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := ops.NewLevelLogger(stderr, level)
	if err := c.validate(); err != nil {
		return err
	}
	host, _ := os.Hostname()
	worker := fmt.Sprintf("%s-%d", host, os.Getpid())
	// A client id of its own tells this worker apart in the group (liveness
	// looks up its partitions by it).
	sc, err := c.Kafka.Stream(offline.SplitList(c.Brokers), "fraudstream-scorer-"+worker)
	if err != nil {
		return err
	}
	sc.Logger = log
	redisOpts, err := c.Redis.Options(redis.Options{DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	log.Info("connections", "kafka", c.Kafka.String(), "redis", c.Redis.String())
	if w := c.Kafka.Warning(); w != "" {
		log.Warn(w)
	}
	// Model signatures: a bad key file fails now; without keys, whoever
	// can write to Redis chooses the model every worker runs.
	verifyKeys, err := model.LoadKeyring(c.VerifyKeys)
	if err != nil {
		return err
	}
	if verifyKeys == nil {
		log.Warn("model signatures are not checked (no --verify-key): any model written to the registry is loaded")
	} else {
		log.Info("models must be signed", "trusted_keys", verifyKeys.String())
	}
	if c.Policy != "budget" {
		log.Info("alert policy is not the fleet budget", "policy", c.Policy)
	}
	var fleetSecret []byte
	if c.FleetSecretFile != "" {
		var err error
		if fleetSecret, err = readFleetSecret(c.FleetSecretFile); err != nil {
			return err
		}
	} else if c.Policy == "budget" && c.Segments == "" {
		log.Warn("the fleet budget's windows are not authenticated: whoever can write to Redis can move every scorer's threshold; set --fleet-secret-file")
	}
	// A refused login or an untrusted certificate ends the worker now, with
	// that error; an unreachable broker is waited for (prepareTopics).
	if err := c.Kafka.Check(ctx, sc); connect.Fatal(err) {
		return err
	}
	admin, err := stream.NewAdmin(sc)
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := prepareTopics(ctx, c, admin, log); err != nil {
		return err
	}
	rc := redis.NewClient(redisOpts)
	defer rc.Close()
	if err := c.Redis.Check(ctx, rc); connect.Fatal(err) {
		return err
	} else if err != nil {
		log.Warn("Redis unreachable; the model loader retries (its eviction policy is not checked)", "err", err)
	} else {
		c.Redis.LogEviction(ctx, log, rc)
	}
	reg, err := registry.New(registry.Config{Client: rc, Prefix: c.Prefix})
	if err != nil {
		return err
	}
	// The writer's batch stays at its default (1,024 messages a partition):
	// kafka-go allocates that much room for every write, and a batch of
	// decisions larger than it goes out in several.
	prod, err := stream.NewProducer(sc, stream.ProducerOptions{})
	if err != nil {
		return err
	}
	defer prod.Close()

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_model_version", Help: "Registry version of the model in use."})
	loaded := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_model_loaded", Help: "1 once a model is loaded, else 0."})
	trainedAt := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_model_trained_timestamp_seconds", Help: "When the model in use was trained."})
	gl := &groupLag{admin: admin, group: c.Group, topic: c.Tx, log: log}
	metrics.MustRegister(version, loaded, trainedAt, gl)
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_model_rejected_total",
		Help: "Model bundles refused (each once), by reason: unsigned, unknown_key, bad_signature (with --verify-key) or corrupt."}, []string{"reason"})
	for _, r := range []string{model.ReasonUnsigned, model.ReasonUnknownKey, model.ReasonBadSignature, model.ReasonCorrupt} {
		rejected.WithLabelValues(r) // exported at zero, so that increase() sees the first refusal
	}
	metrics.MustRegister(rejected)
	// The records waiting on this worker's own partitions: what "stalled"
	// is judged on (a worker without partitions has none).
	metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraudstream_assigned_lag",
		Help: "Messages the group has not committed on the partitions assigned to this worker (0 when it has none)."},
		func() float64 { return float64(ownLag(context.Background(), admin, c.Group, c.Tx, sc.ClientID)) }))
	var rejoins atomic.Pointer[stream.Consumer]
	metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fraudstream_consumer_rejoins_total",
		Help: "Times the consumer was found stalled (a fetch waiting while records wait on its partitions) and rejoined its group."},
		func() float64 {
			if c := rejoins.Load(); c != nil {
				return float64(c.Rejoins())
			}
			return 0
		}))
	if c.Policy == "budget" {
		budget := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_alert_budget", Help: "The share of transactions the budget policy alerts on."})
		budget.Set(c.Budget)
		metrics.MustRegister(budget)
	}

	exchange, err := fleet.New(fleet.Config{Client: rc, Prefix: c.Prefix + "fleet:" + c.Group + ":", ID: worker, Secret: fleetSecret})
	if err != nil {
		return err
	}
	metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraudstream_fleet_other_model_peers",
		Help: "Live scorer workers on another model than this one's, left out of its alert budget (a rollout in progress)."},
		func() float64 { return float64(exchange.OtherModelPeers()) }))
	metrics.MustRegister(fleetRejected(exchange)...)
	models := &pipeline.Current{}
	segments := offline.SplitList(c.Segments)
	first := make(chan struct{})
	var firstOnce sync.Once
	var ready atomic.Bool
	loader, err := pipeline.NewLoader(pipeline.LoaderConfig{Registry: reg, Models: models, Logger: log, Poll: c.Poll,
		Verify: verifyKeys, OnReject: func(_ int64, reason string) { rejected.WithLabelValues(reason).Inc() },
		NewDecider: func(b *model.Bundle) pipeline.Decider { return newDecider(c, exchange, models.Load(), b, segments) },
		OnLoad: func(v int64, b *model.Bundle) {
			version.Set(float64(v))
			trainedAt.Set(float64(b.Meta.TrainedAt.Unix()))
			loaded.Set(1)
			if err := pipeline.CheckSegmentFields(b, segments); err != nil {
				log.Warn("the new model lacks segment fields; they read as empty", "err", err)
			}
			firstOnce.Do(func() { close(first) })
		}})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 4)
	wg.Go(func() { errc <- loader.Run(ctx) })
	var p *pipeline.Pipeline
	var pmu sync.Mutex // p is set once the worker has joined the group
	if c.MetricsAddr != "" {
		srv, err := ops.Listen(c.MetricsAddr, metrics, func() error {
			if !ready.Load() {
				return errors.New("no model loaded yet")
			}
			return nil
		})
		if err != nil {
			cancel()
			return err
		}
		srv.SetLive(func() error {
			pmu.Lock()
			pl := p
			pmu.Unlock()
			if pl == nil {
				return nil // waiting for a model is not a fault
			}
			return pl.Health().Stalled(time.Now(), ownLag(ctx, admin, c.Group, c.Tx, sc.ClientID), c.StallAfter)
		})
		wg.Go(func() { errc <- srv.Run(ctx) })
		log.Info("scorer started", "metrics", srv.Addr(), "group", c.Group, "transactions", c.Tx)
	}

	// Join the group only with a model in hand.
	log.Info("waiting for a model before joining the consumer group", "group", c.Group)
	select {
	case <-ctx.Done():
		return collect(cancel, &wg, errc, log)
	case <-first:
	}
	if err := pipeline.CheckSegmentFields(models.Load().Bundle, segments); err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("--segment-fields: %w", err)
	}
	src, err := stream.NewConsumer(sc, c.Tx, c.Group, stream.ConsumerOptions{})
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	rejoins.Store(src)
	defer func() {
		if err := src.Close(); err != nil {
			log.Warn("leaving the consumer group", "err", err)
		}
	}()
	var rerank pipeline.Reranker
	if c.RerankerBlend {
		rerank = &casework.Blender{Redis: rc, Prefix: c.ReviewPrefix, Weight: c.RerankerWeight}
		log.Info("scores are blended with the analysts' re-ranker", "weight", c.RerankerWeight, "review_prefix", c.ReviewPrefix)
	}
	pl, err := pipeline.New(pipeline.Config{Source: src, Sink: prod, Models: models, Alerts: c.Alerts, Scores: c.Scores, Dead: c.Dead,
		Logger: log, Metrics: metrics, BatchSize: c.Batch, Linger: c.Linger, SegmentFields: segments,
		MaxRecordBytes: c.MaxBytes, MaxKeys: c.MaxKeys, MaxUnusable: c.MaxUnusable, DrainTimeout: c.Drain,
		Entities: &pipeline.RedisEntityStore{Client: rc, Prefix: c.Prefix + "entity:", TTL: c.EntityTTL}, Rerank: rerank})
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	pmu.Lock()
	p = pl
	pmu.Unlock()
	ready.Store(true)
	if c.Policy == "budget" && c.Segments == "" {
		wg.Go(func() {
			exchange.Run(ctx, time.Second, func(err error) { log.Debug("fleet exchange failed; keeping the last view", "err", err) })
		})
	}
	// A guard against kafka-go's group reader stalling while it holds its
	// partitions (reported upstream); see stream.Consumer.Watch.
	wg.Go(func() { src.Watch(ctx, admin, 5*time.Second, c.StuckAfter, log) })
	wg.Go(func() {
		err := pl.Run(ctx)
		cancel() // a pipeline that stops takes the worker down
		errc <- err
	})
	log.Info("joined the consumer group", "group", c.Group, "model_version", models.Load().Version)
	return collect(cancel, &wg, errc, log)
}

// collect waits for the goroutines and returns the first error.
func collect(cancel context.CancelFunc, wg *sync.WaitGroup, errc chan error, log *slog.Logger) error {
	wg.Wait()
	cancel()
	close(errc)
	var first error
	for err := range errc {
		if err != nil && first == nil {
			first = err
		}
	}
	log.Info("scorer stopped", "err", first)
	return first
}

// newDecider makes the decider for bundle b replacing prev (nil at first).
func newDecider(c runConfig, x *fleet.Exchange, prev *pipeline.Model, b *model.Bundle, segments []string) pipeline.Decider {
	switch c.Policy {
	case "calibrated":
		return pipeline.NewCalibrated(b, c.Quantile)
	case "risk":
		return pipeline.NewRisky(prev, b, c.RiskQ)
	case "fixed":
		return pipeline.NewFixed(c.Fixed)
	}
	if len(segments) > 0 {
		return pipeline.NewSegmented(prev, b, c.Budget, uint64(c.SegmentMin))
	}
	// The budget is the fleet's: workers on the same model share their
	// windows through Redis.
	return pipeline.NewFleetBudgeted(x, identity(b), b, c.Budget)
}

// identity names a bundle for the fleet: the digest of its encoding, which
// every worker computes alike from the same model.
func identity(b *model.Bundle) string {
	blob, err := b.MarshalBinary()
	if err != nil {
		return b.Describe()
	}
	return model.Digest(blob)
}

// prepareTopics checks that the topics exist or, with --create-topics,
// creates the missing ones. Unreachable brokers are retried with backoff;
// a missing topic is an error that names it, and so are refused
// credentials and untrusted certificates (connect.Fatal), which retrying
// cannot cure.
func prepareTopics(ctx context.Context, c runConfig, admin *stream.Admin, log *slog.Logger) error {
	names := []string{c.Tx, c.Alerts, c.Dead}
	if c.Scores != "" {
		names = append(names, c.Scores)
	}
	backoff := time.Second
	for {
		var err error
		if c.CreateTopics {
			var topics []stream.Topic
			for _, n := range names {
				topics = append(topics, stream.Topic{Name: n, Partitions: c.Partitions, Replication: c.Replication, MinISR: c.MinISR})
			}
			err = admin.EnsureTopics(ctx, topics...)
		} else {
			err = admin.CheckTopics(ctx, names...)
		}
		var missing *stream.MissingTopicsError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &missing), ctx.Err() != nil:
			return err
		case connect.Fatal(err):
			return c.Kafka.Explain(err)
		}
		log.Warn("Kafka unreachable; retrying", "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// groupLag reports the consumer group's lag per partition at scrape time,
// through the worker's one long-lived admin client.
type groupLag struct {
	admin        *stream.Admin
	group, topic string
	log          *slog.Logger
	warned       atomic.Int64 // Unix seconds of the last warning
}

var groupLagDesc = prometheus.NewDesc("fraudstream_consumer_group_lag", "Messages of a partition the scorer group has not committed yet.", []string{"partition"}, nil)

func (g *groupLag) Describe(ch chan<- *prometheus.Desc) { ch <- groupLagDesc }

func (g *groupLag) Collect(ch chan<- prometheus.Metric) {
	lag, err := g.read(context.Background())
	if err != nil {
		return
	}
	for p, n := range lag {
		ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue, float64(n), strconv.Itoa(p))
	}
}

func (g *groupLag) read(ctx context.Context) (map[int]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	lag, err := g.admin.GroupLag(ctx, g.group, g.topic)
	if err != nil {
		if now := time.Now().Unix(); now-g.warned.Load() >= 60 {
			g.warned.Store(now)
			g.log.Warn("consumer group lag unavailable", "err", err)
		}
		return nil, err
	}
	return lag, nil
}

// ownLag returns the messages waiting on this worker's partitions, or 0
// when it has none or they cannot be read: a broker that cannot be reached
// is not a reason to restart the worker, and a worker without partitions
// (more workers than partitions) has nothing to be late with.
func ownLag(ctx context.Context, admin *stream.Admin, group, topic, clientID string) int64 {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, lag, err := admin.MemberLag(ctx, group, topic, clientID)
	if err != nil {
		return 0
	}
	return lag
}
