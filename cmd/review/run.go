package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/connect"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
	"github.com/fraudstream/fraudstream/pkg/ops"
	"github.com/fraudstream/fraudstream/pkg/reviewservice"
	"github.com/fraudstream/fraudstream/pkg/reviewweb"
)

// runConfig is the review service's configuration (`review run`).
type runConfig struct {
	Brokers         string
	Group           string
	Alerts          string
	Labels          string
	Transactions    string
	Dead            string
	CreateTopics    bool
	Kafka           connect.Kafka
	Redis           connect.Redis
	RegistryPrefix  string
	Prefix          string
	VerifyKeys      []string
	Addr            string
	Users           string
	TLSCert, TLSKey string
	InsecureCookies bool
	SessionTTL      time.Duration
	Recent          int
	Retention       time.Duration
	Refit           time.Duration
	RestoreWindow   time.Duration
	MetricsAddr     string
	LogLevel        string
}

func runFlags(fs *flag.FlagSet, c *runConfig) {
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&c.Group, "group", "fraudstream-review", "consumer group of the review service's replicas on the alerts topic")
	fs.StringVar(&c.Alerts, "alerts", "alerts", "topic of alerts to queue")
	fs.StringVar(&c.Labels, "labels", "labels", "topic the analysts' labels are written to (the system of record)")
	fs.StringVar(&c.Transactions, "transactions", "transactions", "topic of scored transactions, read for similar-transaction search and entity history (empty: off)")
	fs.StringVar(&c.Dead, "dead-letter", "alerts-dead", "topic for alerts-topic records that are not alerts")
	fs.BoolVar(&c.CreateTopics, "create-topics", false, "create the labels and dead-letter topics when missing")
	c.Kafka.Register(fs)
	c.Redis.Register(fs, "127.0.0.1:6379", "the model registry and the review queue")
	fs.StringVar(&c.RegistryPrefix, "registry-prefix", "fraudstream:model:", "key prefix of the model registry")
	fs.StringVar(&c.Prefix, "prefix", "fraudstream:review:", "key prefix of the review queue in Redis")
	offline.VerifyKeyFlag(fs, &c.VerifyKeys)
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address of the web page and the JSON API")
	fs.StringVar(&c.Users, "users", os.Getenv("FRAUDSTREAM_REVIEW_USERS"), "users file: name:role:bcrypt-hash per line, role analyst or viewer ('review passwd' writes a line); writable by its owner only (default $FRAUDSTREAM_REVIEW_USERS)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); without it, serve plain HTTP behind a TLS-terminating proxy")
	fs.StringVar(&c.TLSKey, "tls-key", "", "the certificate's private key (PEM)")
	fs.BoolVar(&c.InsecureCookies, "insecure-cookies", false, "drop the Secure attribute of the session cookie (plain HTTP on a trusted network only)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 12*time.Hour, "how long a sign-in lasts")
	fs.IntVar(&c.Recent, "recent", 1_000_000, "recent transactions held for similar-transaction search (about 540 bytes each with a 220-byte record)")
	fs.DurationVar(&c.Retention, "recent-retention", 7*24*time.Hour, "how far back the recent store reaches (read back from the transactions topic at start)")
	fs.DurationVar(&c.Refit, "refit-every", 30*time.Second, "shortest time between two fits of the re-ranker while labels arrive")
	fs.DurationVar(&c.RestoreWindow, "restore-window", 7*24*time.Hour, "when Redis holds no queue (first start, or it lost its data), queue the alerts of this long ago onwards again and index every label on the labels topic again")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9103", "listen address for /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
}

func (c *runConfig) validate() error {
	if c.Users == "" {
		return errors.New("--users is required: nobody may use the review page anonymously")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.Recent < 1 {
		return fmt.Errorf("--recent %d must be at least 1", c.Recent)
	}
	return nil
}

// serveReview makes the connections the flags describe and runs the
// service until ctx ends.
func serveReview(ctx context.Context, c runConfig, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := ops.NewLevelLogger(stderr, level)
	if err := c.validate(); err != nil {
		return err
	}
	users, err := reviewweb.LoadUsers(c.Users)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	sc, err := c.Kafka.Stream(offline.SplitList(c.Brokers), fmt.Sprintf("fraudstream-review-%s-%d", host, os.Getpid()))
	if err != nil {
		return err
	}
	sc.Logger = log
	if err := c.Kafka.Check(ctx, sc); connect.Fatal(err) {
		return err
	}
	redisOpts, err := c.Redis.Options(redis.Options{DialTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second})
	if err != nil {
		return err
	}
	rc := redis.NewClient(redisOpts)
	defer rc.Close()
	log.Info("connections", "kafka", c.Kafka.String(), "redis", c.Redis.String())
	if err := c.Redis.Check(ctx, rc); connect.Fatal(err) {
		return err
	} else if err != nil {
		log.Warn("Redis unreachable at start; its eviction policy is not checked", "err", err)
	} else {
		c.Redis.LogEviction(ctx, log, rc)
	}
	verifyKeys, err := model.LoadKeyring(c.VerifyKeys)
	if err != nil {
		return err
	}
	if verifyKeys == nil {
		log.Warn("model signatures are not checked (no --verify-key)")
	}
	return reviewservice.Run(ctx, reviewservice.Config{Stream: sc, Redis: rc, Alerts: c.Alerts, Labels: c.Labels, Transactions: c.Transactions,
		Dead: c.Dead, Group: c.Group, CreateTopics: c.CreateTopics, RegistryPrefix: c.RegistryPrefix, Prefix: c.Prefix, Verify: verifyKeys,
		Users: users, Addr: c.Addr, TLSCert: c.TLSCert, TLSKey: c.TLSKey, InsecureCookies: c.InsecureCookies, SessionTTL: c.SessionTTL,
		Recent: c.Recent, Retention: c.Retention, Refit: c.Refit, RestoreWindow: c.RestoreWindow, MetricsAddr: c.MetricsAddr, Logger: log})
}
