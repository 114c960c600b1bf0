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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/fleet"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
	"github.com/fraudstream/fraudstream/pkg/ops"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
	"github.com/fraudstream/fraudstream/pkg/threshold"
)

// runConfig is the streaming scorer's configuration (`scorer run`).
type runConfig struct {
	Brokers     string
	Group       string
	Tx          string
	Alerts      string
	Scores      string
	Dead        string
	Partitions  int
	Redis       string
	Prefix      string
	MetricsAddr string
	Batch       int
	Linger      time.Duration
	Quantile    float64
	Policy      string
	Budget      float64
	RiskQ       float64
	Fixed       float64
	Segments    string
	SegmentMin  int
	Poll        time.Duration
}

func runFlags(fs *flag.FlagSet, c *runConfig) {
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&c.Group, "group", "scorers", "consumer group shared by all scorer workers")
	fs.StringVar(&c.Tx, "transactions", "transactions", "topic of incoming transactions (JSON)")
	fs.StringVar(&c.Alerts, "alerts", "alerts", "topic for alerts")
	fs.StringVar(&c.Scores, "scores", "scores", "topic for every decision (empty: off)")
	fs.StringVar(&c.Dead, "dead-letter", "transactions-dead", "topic for undecodable transactions")
	fs.IntVar(&c.Partitions, "partitions", 6, "partitions of topics this scorer creates when they are missing")
	fs.StringVar(&c.Redis, "redis", "127.0.0.1:6379", "Redis address of the model registry")
	fs.StringVar(&c.Prefix, "registry-prefix", "fraudstream:model:", "key prefix of the model registry")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9101", "listen address for /metrics, /healthz and /readyz (empty: off)")
	fs.IntVar(&c.Batch, "batch", 1024, "largest batch of transactions")
	fs.DurationVar(&c.Linger, "linger", 5*time.Millisecond, "how long a batch waits to fill after its first transaction")
	fs.StringVar(&c.Policy, "policy", "budget", "alert policy: budget (the top --budget of the fleet's recent traffic, warm-started from each model's calibration), risk (exceedance probability below --risk-q, Peaks-Over-Threshold), fixed (above --fixed-threshold) or calibrated (above --threshold-quantile of validation scores)")
	fs.Float64Var(&c.RiskQ, "risk-q", 1e-4, "risk policy: false-alarm probability per transaction")
	fs.Float64Var(&c.Fixed, "fixed-threshold", 0, "fixed policy: alert above this score")
	fs.StringVar(&c.Segments, "segment-fields", "", "budget policy: comma-separated fields whose values make a segment with its own budget (e.g. mcc,country,channel); empty: one fleet-wide budget")
	fs.IntVar(&c.SegmentMin, "segment-min", 20000, "scores a segment needs before it decides with its own threshold (it backs off to its parent, then the global budget)")
	fs.Float64Var(&c.Budget, "budget", 0.005, "budget policy: share of transactions to alert on (0.005 = 50 per 10,000)")
	fs.Float64Var(&c.Quantile, "threshold-quantile", 0.995, "calibrated policy: alert above this quantile of the model's validation scores")
	fs.DurationVar(&c.Poll, "model-poll", 10*time.Second, "how often to check the registry in case a notice was missed")
}

// serve runs the streaming scorer until ctx ends; it returns after every
// goroutine it started has stopped and the last batch is committed.
func serve(ctx context.Context, c runConfig, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
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
	sc := stream.Config{Brokers: strings.Split(c.Brokers, ","), ClientID: "fraudstream-scorer"}
	if err := stream.EnsureTopics(ctx, sc,
		stream.Topic{Name: c.Tx, Partitions: c.Partitions}, stream.Topic{Name: c.Alerts, Partitions: c.Partitions},
		stream.Topic{Name: c.Dead, Partitions: 1}); err != nil {
		return err
	}
	if c.Scores != "" {
		if err := stream.EnsureTopics(ctx, sc, stream.Topic{Name: c.Scores, Partitions: c.Partitions}); err != nil {
			return err
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: c.Redis})
	defer rc.Close()
	reg, err := registry.New(registry.Config{Client: rc, Prefix: c.Prefix})
	if err != nil {
		return err
	}
	src, err := stream.NewConsumer(sc, c.Tx, c.Group, stream.ConsumerOptions{})
	if err != nil {
		return err
	}
	defer src.Close()
	prod, err := stream.NewProducer(sc, stream.ProducerOptions{})
	if err != nil {
		return err
	}
	defer prod.Close()

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_model_version", Help: "Registry version of the model in use."})
	trainedAt := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_model_trained_timestamp_seconds", Help: "When the model in use was trained."})
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraudstream_consumer_lag", Help: "Messages behind the end of the partitions this worker reads."},
		func() float64 { return float64(src.Stats().Lag) })
	metrics.MustRegister(version, trainedAt, lag, &groupLag{cfg: sc, group: c.Group, topic: c.Tx, log: log})

	host, _ := os.Hostname()
	exchange, err := fleet.New(fleet.Config{Client: rc, Prefix: c.Prefix + "fleet:" + c.Group + ":", ID: fmt.Sprintf("%s-%d", host, os.Getpid())},
		threshold.NewBudget(c.Budget, threshold.WindowConfig{}))
	if err != nil {
		return err
	}
	var ready atomic.Bool
	models := &pipeline.Current{}
	loader, err := pipeline.NewLoader(pipeline.LoaderConfig{Registry: reg, Models: models, Logger: log, Poll: c.Poll,
		NewDecider: func(b *model.Bundle) pipeline.Decider {
			switch c.Policy {
			case "calibrated":
				return pipeline.NewCalibrated(b, c.Quantile)
			case "risk":
				return pipeline.NewRisky(c.RiskQ)
			case "fixed":
				return pipeline.NewFixed(c.Fixed)
			}
			if c.Segments != "" {
				return pipeline.NewSegmented(b, c.Budget, uint64(c.SegmentMin))
			}
			// The budget is the fleet's: workers share their windows through Redis.
			return pipeline.NewFleetBudgeted(exchange, b, c.Budget)
		},
		OnLoad: func(v int64, b *model.Bundle) {
			version.Set(float64(v))
			trainedAt.Set(float64(b.Meta.TrainedAt.Unix()))
			ready.Store(true)
		}})
	if err != nil {
		return err
	}
	p, err := pipeline.New(pipeline.Config{Source: src, Sink: prod, Models: models, Alerts: c.Alerts, Scores: c.Scores, Dead: c.Dead,
		Logger: log, Metrics: metrics, BatchSize: c.Batch, Linger: c.Linger, SegmentFields: offline.SplitList(c.Segments)})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() { errc <- loader.Run(ctx) })
	if c.Policy == "budget" && c.Segments == "" {
		wg.Go(func() { exchange.Run(ctx, time.Second) })
	}
	wg.Go(func() {
		err := p.Run(ctx)
		cancel() // a pipeline that stops takes the worker down
		errc <- err
	})
	if c.MetricsAddr != "" {
		srv, err := ops.Listen(c.MetricsAddr, metrics, func() error {
			if !ready.Load() {
				return errors.New("no model loaded yet")
			}
			return nil
		})
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Go(func() { errc <- srv.Run(ctx) })
		log.Info("scorer started", "metrics", srv.Addr(), "group", c.Group, "transactions", c.Tx)
	}
	wg.Wait()
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

// groupLag reports the consumer group's lag per partition at scrape time.
type groupLag struct {
	cfg          stream.Config
	group, topic string
	log          *slog.Logger
}

var groupLagDesc = prometheus.NewDesc("fraudstream_consumer_group_lag", "Messages of a partition the scorer group has not committed yet.", []string{"partition"}, nil)

func (g *groupLag) Describe(ch chan<- *prometheus.Desc) { ch <- groupLagDesc }

func (g *groupLag) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	lag, err := stream.GroupLag(ctx, g.cfg, g.group, g.topic)
	if err != nil {
		g.log.Warn("consumer group lag unavailable", "err", err)
		return
	}
	for p, n := range lag {
		ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue, float64(n), strconv.Itoa(p))
	}
}
