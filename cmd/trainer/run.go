package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/connect"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
	"github.com/fraudstream/fraudstream/pkg/ops"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/trainer"
)

type registryFlags struct {
	Redis          connect.Redis
	Prefix         string
	Keep           int
	KeepCandidates int
}

// register adds the registry's address flags, and with keep the trimming
// flags of the commands that store versions.
func (r *registryFlags) register(fs *flag.FlagSet, keep bool) {
	r.Redis.Register(fs, "127.0.0.1:6379", "the model registry")
	fs.StringVar(&r.Prefix, "registry-prefix", "fraudstream:model:", "key prefix of the model registry")
	if keep {
		fs.IntVar(&r.Keep, "keep", 5, "promoted model versions kept in the registry (rollback targets)")
		fs.IntVar(&r.KeepCandidates, "keep-candidates", 5, "candidates that were not promoted kept in the registry, apart from --keep")
	}
}

// open connects to the registry and checks the connection once (within
// 5s): an error that retrying cannot cure (connect.Fatal: a refused
// password, an untrusted certificate) is returned, and so is any other when
// strict. Every call has a deadline: the registry bounds each one (5s) and
// the client passes that deadline to the socket.
func (r *registryFlags) open(ctx context.Context, strict bool) (reg *registry.Registry, c *redis.Client, closeFn func(), unreachable, err error) {
	o, err := r.Redis.Options(redis.Options{DialTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, ContextTimeoutEnabled: true})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	c = redis.NewClient(o)
	unreachable = r.Redis.Check(ctx, c)
	if unreachable != nil && (strict || connect.Fatal(unreachable)) {
		c.Close()
		return nil, nil, nil, nil, unreachable
	}
	reg, err = registry.New(registry.Config{Client: c, Prefix: r.Prefix, Keep: r.Keep, KeepCandidates: r.KeepCandidates})
	if err != nil {
		c.Close()
		return nil, nil, nil, nil, err
	}
	return reg, c, func() { c.Close() }, unreachable, nil
}

type runConfig struct {
	reg          registryFlags
	Brokers      string
	Kafka        connect.Kafka // TLS and SASL
	Topic        string
	Labels       string
	Every        time.Duration
	Window       time.Duration
	History      time.Duration
	EntityRows   int
	MaxRows      int
	MinRows      int
	RampStart    time.Duration
	Schema       string
	AllowSchema  bool
	Ignore       string
	Gate         trainer.Gate
	HoldBack     float64
	MinHeldBack  int
	Once         bool
	MetricsAddr  string
	AE           ae.Config
	SigningKey   string
	SeedEntities bool
	EntityTTL    time.Duration
}

// daemon is `trainer run`.
func daemon(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("trainer run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c runConfig
	daemonFlags(fs, &c)
	err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	log := ops.NewLogger(stderr)
	var key *model.SigningKey
	if c.SigningKey != "" {
		if key, err = model.LoadSigningKey(c.SigningKey); err != nil {
			return err
		}
	}
	sc, err := c.Kafka.Stream(strings.Split(c.Brokers, ","), "fraudstream-trainer")
	if err != nil {
		return err
	}
	log.Info("connections", "kafka", c.Kafka.String(), "redis", c.reg.Redis.String())
	if w := c.Kafka.Warning(); w != "" {
		log.Warn(w)
	}
	// A refused login or an untrusted certificate ends the trainer now, with
	// that error; an unreachable service is retried by the rounds.
	reg, rc, closeReg, unreachable, err := c.reg.open(ctx, false)
	if err != nil {
		return err
	}
	defer closeReg()
	if unreachable != nil {
		log.Warn("Redis unreachable; the rounds retry (its eviction policy is not checked)", "err", unreachable)
	} else {
		c.reg.Redis.LogEviction(ctx, log, rc)
	}
	if err := c.Kafka.Check(ctx, sc); connect.Fatal(err) {
		return err
	} else if err != nil {
		log.Warn("Kafka unreachable; the rounds retry", "err", err)
	}
	if err := checkSigning(ctx, reg, key, log); err != nil {
		return err
	}
	var schema *features.Schema
	if c.Schema != "" {
		f, err := os.Open(c.Schema)
		if err != nil {
			return err
		}
		schema, err = features.ReadSchema(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", c.Schema, err)
		}
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector())
	rounds := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_trainer_runs_total", Help: "Training rounds by outcome."}, []string{"outcome"})
	loss := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_trainer_loss", Help: "Last candidate's loss on held-back rows."})
	rows := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_trainer_rows", Help: "Rows the last round trained on."})
	dur := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_trainer_duration_seconds", Help: "Duration of the last round."})
	excluded := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_trainer_excluded_rows", Help: "Rows of the last round's window left out because their latest label is fraud."})
	for _, o := range []string{"promoted", "rejected", "skipped", "follower", "failed"} {
		rounds.WithLabelValues(o) // every outcome exported from the start, so rate() and increase() see its first round
	}
	share := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fraudstream_trainer_gate_alert_share",
		Help: "Last round's share of held-back rows above each model's own calibrated (1-budget) quantile."}, []string{"model"})
	metrics.MustRegister(rounds, loss, rows, dur, share, excluded)
	cfg := trainer.Config{Stream: sc, Topic: c.Topic, Labels: c.Labels, Registry: reg,
		Every: c.Every, Window: c.Window, HistoryWindow: c.History, EntityMaxRows: c.EntityRows, MaxRows: c.MaxRows, MinRows: c.MinRows, RampStart: c.RampStart, Schema: schema, AllowSchemaChange: c.AllowSchema, Ignore: offline.SplitList(c.Ignore),
		AE: c.AE, Gate: c.Gate, HoldBack: c.HoldBack, MinHeldBack: c.MinHeldBack, Logger: log, SigningKey: key,
		OnRound: func(r trainer.Round) {
			rounds.WithLabelValues(r.Outcome).Inc()
			if r.Outcome == "promoted" || r.Outcome == "rejected" {
				loss.Set(r.Loss)
				share.WithLabelValues("candidate").Set(r.Gate.AlertRate)
				share.WithLabelValues("current").Set(r.Gate.CurrentAlertRate)
				rows.Set(float64(r.Rows))
				excluded.Set(float64(r.Excluded))
				dur.Set(r.Duration.Seconds())
			}
		}}
	if c.SeedEntities {
		// The scorers' entity store: the same Redis and key prefix as
		// scorer run's (--registry-prefix + "entity:").
		cfg.Entities = &pipeline.RedisEntityStore{Client: rc, Prefix: c.reg.Prefix + "entity:", TTL: c.EntityTTL}
	}
	tr, err := trainer.New(cfg)
	if err != nil {
		return err
	}
	defer tr.Close()
	// A --schema the pinned schema refuses fails now, not every round.
	if err := tr.CheckSchema(ctx); errors.Is(err, trainer.ErrSchemaChange) {
		return err
	} else if err != nil {
		log.Warn("pinned schema not checked yet (the rounds check it)", "err", err)
	}
	if c.Once {
		r, err := tr.Train(ctx)
		if err != nil {
			return err
		}
		if r.Entity != "" {
			fmt.Fprintln(stderr, r.Entity)
		}
		if r.EntitySeed != "" {
			fmt.Fprintln(stderr, r.EntitySeed)
		}
		fmt.Fprintf(stderr, "round %s: version %d (%s), trained on %d rows; on %s: alert share %.2f%% (current model %.2f%%), KS %.3f (current %.3f) %s\n",
			r.Outcome, r.Version, registry.Short(r.Digest), r.Rows, r.HeldBack, 100*r.Gate.AlertRate, 100*r.Gate.CurrentAlertRate, r.Gate.ScoreShift, r.Gate.CurrentScoreShift, r.Reason)
		if r.Outcome == "skipped" {
			return errors.New(r.Reason)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if c.MetricsAddr != "" {
		// Ready while Redis and Kafka answer (checks bounded by 2s).
		srv, err := ops.Listen(c.MetricsAddr, metrics, func() error { return tr.Ready(ctx) })
		if err != nil {
			return err
		}
		wg.Go(func() { srv.Run(ctx) })
	}
	err = tr.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// daemonFlags registers `trainer run`'s flags.
func daemonFlags(fs *flag.FlagSet, c *runConfig) {
	c.reg.register(fs, true)
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	c.Kafka.Register(fs)
	fs.StringVar(&c.Topic, "transactions", "transactions", "topic of transactions to learn from")
	fs.StringVar(&c.Labels, "labels", "labels", "topic of analysts' labels: transactions whose latest label is fraud are not trained on (a topic that does not exist yet: no labels; empty: ignore labels)")
	fs.DurationVar(&c.Every, "every", time.Hour, "interval between training rounds")
	fs.DurationVar(&c.Window, "window", 24*time.Hour, "how far back each round reads")
	fs.DurationVar(&c.History, "history-window", 30*24*time.Hour, "with entity_fields in the schema: how far before --window each round also reads, to warm the entities' states (replayed in event time, not trained on) so the window's first days are not cold (negative: none)")
	fs.BoolVar(&c.SeedEntities, "seed-entities", true, "once a model with an entity score is promoted, store in Redis the states its replay built for the entities the scorers hold none of yet, or hold a younger state of whose transactions the replay has all (as after Redis came back empty); scorer run then goes on from that history, without counting those transactions again")
	fs.DurationVar(&c.EntityTTL, "entity-ttl", pipeline.DefaultEntityTTL, "--seed-entities: how long a seeded entity without transactions keeps its state (as scorer run's --entity-ttl)")
	fs.IntVar(&c.EntityRows, "entity-max-rows", 2_000_000, "transactions (history and window) a round's entity replay holds at most (about 190 bytes each with two entity fields, plus 16 per categorical field the entity score may count); beyond it the oldest history is left out; the catch-up before seeding reads at most a tenth more")
	fs.IntVar(&c.MaxRows, "max-rows", 200_000, "rows a round trains on at most (uniform sample of the window)")
	fs.IntVar(&c.MinRows, "min-rows", 20_000, "fewest rows worth training on (a round with fewer is skipped and retried with backoff)")
	fs.DurationVar(&c.RampStart, "ramp-start", time.Minute, "while rounds train on fewer rows than --max-rows, the next comes after this, doubling up to --every (negative: always --every)")
	fs.StringVar(&c.Schema, "schema", "", "schema file (JSON, as 'trainer schema' writes it); default: the registry's pinned schema ('trainer models schema'), else inferred from the first window and pinned with the first promoted model")
	fs.BoolVar(&c.AllowSchema, "allow-schema-change", false, "train on a --schema whose kinds differ from the pinned schema's (the changes are logged; it is pinned once its model is promoted)")
	fs.StringVar(&c.Ignore, "ignore", "", "comma-separated fields an inferred schema leaves out")
	fs.Float64Var(&c.HoldBack, "hold-back", 0.1, "share of the window kept out of training for the promotion gate, at most (rows newer than the current model's window)")
	fs.IntVar(&c.MinHeldBack, "min-held-back", 300, "fewest held-back rows the gate compares on; with fewer rows newer than the current model's window it compares on a random sample")
	fs.Float64Var(&c.Gate.Budget, "budget", 0.005, "alert share the gate measures at: each model alerts above its own calibrated (1-budget) quantile")
	fs.Float64Var(&c.Gate.MaxAlertShift, "max-alert-shift", 0.01, "a candidate that would move the alert share on the held-back rows by more than this (plus sampling noise) is not promoted (negative: off)")
	fs.Float64Var(&c.Gate.MaxScoreShift, "max-score-shift", 0.1, "a candidate whose calibration fits the held-back rows worse than the current model's by more than this KS distance (plus sampling noise) is not promoted (negative: off)")
	fs.BoolVar(&c.Once, "once", false, "train one round (leader lock not taken) and exit")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9102", "listen address for /metrics, /healthz and /readyz (ready while Redis and Kafka answer; empty: off)")
	offline.SigningKeyFlag(fs, &c.SigningKey, "every model stored in the registry (scorers with --verify-key load only signed models)")
	offline.AEFlags(fs, &c.AE)
}

// checkSigning fails when the registry requires signed models and there is
// no key to sign with, rather than every round; and says whether models
// are signed.
func checkSigning(ctx context.Context, reg *registry.Registry, key *model.SigningKey, log *slog.Logger) error {
	if key != nil {
		log.Info("models are signed", "key", key.ID().String())
		return nil
	}
	required, why, err := reg.SignaturesRequired(ctx)
	if err != nil {
		log.Warn("could not read whether the registry requires signed models (the rounds will tell)", "err", err)
		return nil
	}
	if required {
		return fmt.Errorf("the registry requires signed models (%s): give --signing-key KEY.pem, or lift the requirement with 'trainer models require-signatures --off'", why)
	}
	log.Warn("models are not signed (no --signing-key): scorers with --verify-key will refuse them")
	return nil
}

const modelsUsage = `usage: trainer models <command> [flags]

commands:
  list       the versions kept in the registry: short digest, current, pinned, promoted,
             and why a candidate was not promoted
  rollback   --to N [--no-pin]: make version N current again; pinned unless --no-pin
  pin        [--to N]: make version N (default: the current one) current and pin it
  unpin      clear the pin: training rounds may promote again
  publish    --model FILE [--no-pin] [--signing-key KEY.pem]: store a bundle fitted offline as
             the current version, signed with the key if given; pinned unless --no-pin
  schema     print the deployment's pinned schema (JSON)
  require-signatures [--off]: refuse (or accept again) unsigned models in publish, rollback
             and training rounds; the first signed model stored turns this on

While a version is pinned, training rounds record their candidates without promoting them
(reason "pinned"). Version numbers start again at 1 if Redis loses its data: the digest
identifies a model.

run 'trainer models <command> -h' for a command's flags`

// modelsCommand is one `trainer models` subcommand: its help, and flags
// registers its own flags and returns what it does.
type modelsCommand struct {
	help  string
	keep  bool // stores versions: takes the trimming flags
	flags func(fs *flag.FlagSet) modelsAction
}

type modelsAction func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error

var modelsCommands = map[string]modelsCommand{
	"list": {help: "list the versions kept in the registry", flags: func(fs *flag.FlagSet) modelsAction {
		return listModels
	}},
	"rollback": {help: "make an earlier version current again; pinned unless --no-pin, so that the next training round does not replace it",
		flags: func(fs *flag.FlagSet) modelsAction {
			to := fs.Int64("to", 0, "version to make current (see trainer models list)")
			noPin := fs.Bool("no-pin", false, "do not pin: the next training round may promote a newer model over it")
			return func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
				if *to <= 0 {
					return errors.New("rollback needs --to VERSION (see trainer models list)")
				}
				return point(ctx, reg, stdout, *to, !*noPin)
			}
		}},
	"pin": {help: "make a version current and pin it: training rounds record candidates without promoting them",
		flags: func(fs *flag.FlagSet) modelsAction {
			to := fs.Int64("to", 0, "version to pin (default: the current one)")
			return func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
				v := *to
				if v <= 0 {
					cur, err := reg.CurrentVersion(ctx)
					if err != nil {
						return err
					}
					v = cur
				}
				return point(ctx, reg, stdout, v, true)
			}
		}},
	"unpin": {help: "clear the pin: the next training round may promote a new version",
		flags: func(fs *flag.FlagSet) modelsAction {
			return func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
				v, ok, err := reg.Pinned(ctx)
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(stdout, "no version is pinned")
					return nil
				}
				if err := reg.Unpin(ctx); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "version %d is no longer pinned; the next training round may promote a new version\n", v)
				return nil
			}
		}},
	"publish": {help: "store a model bundle fitted offline (trainer fit) and make it current; pinned unless --no-pin. " +
		"The file is published as it is (signed or not) unless --signing-key signs it; an unsigned model is refused once the registry requires signatures", keep: true,
		flags: func(fs *flag.FlagSet) modelsAction {
			file := fs.String("model", "", "model bundle file to publish")
			noPin := fs.Bool("no-pin", false, "do not pin: the next training round may promote a newer model over it")
			var keyFile string
			offline.SigningKeyFlag(fs, &keyFile, "the bundle before it is published (replacing any signature it has)")
			return func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
				if *file == "" {
					return errors.New("publish needs --model FILE")
				}
				return publish(ctx, reg, stdout, *file, keyFile, !*noPin)
			}
		}},
	"require-signatures": {help: "refuse unsigned models from now on in publish, rollback and training rounds (scorers with --verify-key would refuse them); " +
		"the first signed model stored turns this on by itself. Versions already stored are not checked",
		flags: func(fs *flag.FlagSet) modelsAction {
			off := fs.Bool("off", false, "accept unsigned models again")
			return func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
				if err := reg.RequireSignatures(ctx, !*off, "required by an operator (trainer models require-signatures)"); err != nil {
					return err
				}
				if *off {
					fmt.Fprintln(stdout, "unsigned models are accepted again (scorers with --verify-key still refuse them)")
				} else {
					fmt.Fprintln(stdout, "signatures are required: unsigned models are refused by publish, rollback and training rounds")
				}
				return nil
			}
		}},
	"schema": {help: "print the deployment's pinned schema (JSON); training rounds use it instead of inferring one",
		flags: func(fs *flag.FlagSet) modelsAction {
			return func(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
				s, err := reg.Schema(ctx)
				if errors.Is(err, registry.ErrNoSchema) {
					return errors.New("no schema is pinned yet: the first promoted model's schema (or trainer run --schema) will be")
				}
				if err != nil {
					return err
				}
				return s.WriteJSON(stdout)
			}
		}},
}

// models is `trainer models <command>`.
func models(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, modelsUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, modelsUsage)
		return nil
	}
	mc, ok := modelsCommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "trainer models: unknown command %q\n%s\n", args[0], modelsUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("trainer models "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf registryFlags
	rf.register(fs, mc.keep)
	do := mc.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: trainer models %s [flags]\n\n%s\n\nflags:\n", args[0], mc.help)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	reg, _, closeReg, _, err := rf.open(ctx, true)
	if err != nil {
		return err
	}
	defer closeReg()
	return do(ctx, reg, stdout)
}

// publish stores a bundle file, signed with the key in keyFile if given,
// and makes it current.
func publish(ctx context.Context, reg *registry.Registry, stdout io.Writer, file, keyFile string, pin bool) error {
	var key *model.SigningKey
	if keyFile != "" {
		k, err := model.LoadSigningKey(keyFile)
		if err != nil {
			return err
		}
		key = k
	}
	// The file's own bytes are published: re-encoding would drop a signature.
	blob, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	b, err := model.Unmarshal(blob)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if key != nil {
		if blob, err = model.Sign(blob, key); err != nil {
			return err
		}
	}
	v, err := reg.Store(ctx, blob, registry.Info{Summary: b.Describe(), ValLoss: b.Meta.ValLoss, Rows: b.Meta.Rows, TrainedBy: "publish " + file}, false)
	if errors.Is(err, registry.ErrUnsigned) {
		return fmt.Errorf("%s is not signed and the registry requires signed models: publish it with --signing-key KEY.pem (or fit it with trainer fit --signing-key)", file)
	}
	if err != nil {
		return err
	}
	signed := "unsigned"
	if id, ok, _ := model.Signer(blob); ok {
		signed = "signed by key " + id.String()
	}
	fmt.Fprintf(stdout, "published %s as version %d (%s)\n", file, v, signed)
	return point(ctx, reg, stdout, v, pin)
}

// point makes version v current, pinned or not, and says what that means.
func point(ctx context.Context, reg *registry.Registry, stdout io.Writer, v int64, pin bool) error {
	if err := reg.Rollback(ctx, v, pin); err != nil {
		return err
	}
	p, err := reg.Pointer(ctx)
	if err != nil {
		return err
	}
	if pin {
		fmt.Fprintf(stdout, "version %d (%s) is current and pinned: training rounds record candidates without promoting them until 'trainer models unpin'\n", v, registry.Short(p.Digest))
	} else {
		fmt.Fprintf(stdout, "version %d (%s) is current, not pinned: the next training round may promote a newer model over it\n", v, registry.Short(p.Digest))
	}
	return nil
}

func listModels(ctx context.Context, reg *registry.Registry, stdout io.Writer) error {
	list, err := reg.List(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tCURRENT\tDIGEST\tPINNED\tPROMOTED\tSTORED\tROWS\tVAL LOSS\tSIGNER\tNOTE")
	for _, in := range list {
		cur, pin := "", ""
		if in.Current {
			cur = "*"
		}
		if in.Pinned {
			pin = "pinned"
		}
		note := in.Reason
		if note == "" {
			note = in.Summary
		}
		signer := in.Signer
		if signer == "" {
			signer = "-"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%v\t%s\t%d\t%.4f\t%s\t%s\n", in.Version, cur, registry.Short(in.Digest), pin, in.Promoted, in.Stored.Format(time.RFC3339), in.Rows, in.ValLoss, signer, note)
	}
	return w.Flush()
}
