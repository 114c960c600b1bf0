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
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
	"github.com/fraudstream/fraudstream/pkg/ops"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
	"github.com/fraudstream/fraudstream/pkg/trainer"
)

type registryFlags struct {
	Redis  string
	Prefix string
	Keep   int
}

func (r *registryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.Redis, "redis", "127.0.0.1:6379", "Redis address of the model registry")
	fs.StringVar(&r.Prefix, "registry-prefix", "fraudstream:model:", "key prefix of the model registry")
	fs.IntVar(&r.Keep, "keep", 5, "model versions kept in the registry")
}

func (r *registryFlags) open() (*registry.Registry, func(), error) {
	c := redis.NewClient(&redis.Options{Addr: r.Redis})
	reg, err := registry.New(registry.Config{Client: c, Prefix: r.Prefix, Keep: r.Keep})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return reg, func() { c.Close() }, nil
}

type runConfig struct {
	reg         registryFlags
	Brokers     string
	Topic       string
	Every       time.Duration
	Window      time.Duration
	MaxRows     int
	MinRows     int
	Schema      string
	Ignore      string
	Gate        float64
	Once        bool
	MetricsAddr string
	AE          ae.Config
}

// daemon is `trainer run`.
func daemon(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("trainer run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c runConfig
	daemonFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	reg, closeReg, err := c.reg.open()
	if err != nil {
		return err
	}
	defer closeReg()
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
	metrics.MustRegister(rounds, loss, rows, dur)
	cfg := trainer.Config{Stream: stream.Config{Brokers: strings.Split(c.Brokers, ","), ClientID: "fraudstream-trainer"}, Topic: c.Topic, Registry: reg,
		Every: c.Every, Window: c.Window, MaxRows: c.MaxRows, MinRows: c.MinRows, Schema: schema, Ignore: offline.SplitList(c.Ignore),
		AE: c.AE, Gate: c.Gate, Logger: log,
		OnRound: func(r trainer.Round) {
			rounds.WithLabelValues(r.Outcome).Inc()
			if r.Outcome == "promoted" || r.Outcome == "rejected" {
				loss.Set(r.Loss)
				rows.Set(float64(r.Rows))
				dur.Set(r.Duration.Seconds())
			}
		}}
	tr, err := trainer.New(cfg)
	if err != nil {
		return err
	}
	if c.Once {
		r, err := tr.Train(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "round %s: version %d, %d rows, held-back loss %.4f (current %.4f) %s\n", r.Outcome, r.Version, r.Rows, r.Loss, r.Current, r.Reason)
		if r.Outcome == "skipped" {
			return errors.New(r.Reason)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if c.MetricsAddr != "" {
		srv, err := ops.Listen(c.MetricsAddr, metrics, nil)
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
	c.reg.register(fs)
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&c.Topic, "transactions", "transactions", "topic of transactions to learn from")
	fs.DurationVar(&c.Every, "every", time.Hour, "interval between training rounds")
	fs.DurationVar(&c.Window, "window", 24*time.Hour, "how far back each round reads")
	fs.IntVar(&c.MaxRows, "max-rows", 200_000, "rows a round trains on at most (uniform sample of the window)")
	fs.IntVar(&c.MinRows, "min-rows", 1000, "fewest rows worth training on")
	fs.StringVar(&c.Schema, "schema", "", "schema file; default: the current model's, or inferred")
	fs.StringVar(&c.Ignore, "ignore", "", "comma-separated fields an inferred schema leaves out")
	fs.Float64Var(&c.Gate, "gate", 1.25, "a candidate whose held-back loss exceeds the current model's by this factor is not promoted")
	fs.BoolVar(&c.Once, "once", false, "train one round (leader lock not taken) and exit")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9102", "listen address for /metrics and /healthz (empty: off)")
	offline.AEFlags(fs, &c.AE)
}

// models is `trainer models list|rollback`.
func models(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: trainer models list | rollback --to N | publish --model FILE")
	}
	fs := flag.NewFlagSet("trainer models "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf registryFlags
	rf.register(fs)
	to := fs.Int64("to", 0, "version to make current (rollback)")
	file := fs.String("model", "", "model bundle file to publish as the current version (publish)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	reg, closeReg, err := rf.open()
	if err != nil {
		return err
	}
	defer closeReg()
	switch args[0] {
	case "list":
		list, err := reg.List(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "VERSION\tCURRENT\tPROMOTED\tSTORED\tROWS\tVAL LOSS\tNOTE")
		for _, in := range list {
			cur := ""
			if in.Current {
				cur = "*"
			}
			note := in.Reason
			if note == "" {
				note = in.Summary
			}
			fmt.Fprintf(w, "%d\t%s\t%v\t%s\t%d\t%.4f\t%s\n", in.Version, cur, in.Promoted, in.Stored.Format(time.RFC3339), in.Rows, in.ValLoss, note)
		}
		return w.Flush()
	case "rollback":
		if *to <= 0 {
			return errors.New("rollback needs --to VERSION (see trainer models list)")
		}
		if err := reg.Rollback(ctx, *to); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "version %d is current\n", *to)
		return nil
	case "publish":
		b, err := model.ReadFile(*file)
		if err != nil {
			return err
		}
		blob, err := b.MarshalBinary()
		if err != nil {
			return err
		}
		v, err := reg.Store(ctx, blob, registry.Info{Digest: model.Digest(blob), Summary: b.Describe(), ValLoss: b.Meta.ValLoss, Rows: b.Meta.Rows, TrainedBy: "publish " + *file}, true)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s as version %d\n", *file, v)
		return nil
	}
	return fmt.Errorf("unknown models command %q (list, rollback, publish)", args[0])
}
