// Package reviewservice runs the review service: the alerts consumer that
// fills the queue (pkg/casework), the web page and API (pkg/reviewweb), the
// recent-transactions store fed from the transactions topic, and the
// leader's rebuilds and re-ranker fits. cmd/review gives it its flags and
// connections; the demo runs it on the embedded broker and Redis.
package reviewservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/ops"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/review"
	"github.com/fraudstream/fraudstream/pkg/reviewweb"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// Config configures the service. Connections are made by the caller.
type Config struct {
	Stream stream.Config         // required
	Redis  redis.UniversalClient // required: the model registry and the queue
	// Topics.
	Alerts, Labels, Transactions, Dead string
	Group                              string
	CreateTopics                       bool
	RegistryPrefix, Prefix             string
	Verify                             *model.Keyring
	Users                              *reviewweb.Users // required
	Addr                               string
	TLSCert, TLSKey                    string
	InsecureCookies                    bool
	SessionTTL                         time.Duration
	Recent                             int
	Retention                          time.Duration
	Refit                              time.Duration
	// RestoreWindow: when Redis holds no queue (a first start, or Redis
	// lost its data), the alerts of this long ago onwards are queued
	// again and every label on the labels topic indexed again. Default 7 days.
	RestoreWindow time.Duration
	// MetricsAddr serves /metrics, /healthz and /readyz ("" off).
	MetricsAddr string
	Logger      *slog.Logger
	// Ready, when set, is called once the page serves, with its base URL
	// and the queue (the demo's simulated analyst uses it).
	Ready func(url string, cases *casework.Service)
}

// kafkaLabels writes labels to the labels topic, keyed by transaction id.
type kafkaLabels struct {
	p     *stream.Producer
	topic string
	m     *metrics
}

func (k kafkaLabels) WriteLabels(ctx context.Context, ls []labels.Label) error {
	msgs := make([]kafka.Message, len(ls))
	for i, l := range ls {
		v, err := json.Marshal(l)
		if err != nil {
			return err
		}
		msgs[i] = kafka.Message{Topic: k.topic, Key: []byte(l.TransactionID), Value: v}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := k.p.Write(ctx, msgs...); err != nil {
		return err
	}
	for _, l := range ls {
		k.m.labels.WithLabelValues(l.Label, l.Source).Inc()
	}
	return nil
}

// Run runs the service until ctx ends; it returns after every goroutine it
// started has stopped.
func Run(ctx context.Context, c Config) error {
	if c.Redis == nil || c.Users == nil {
		return errors.New("reviewservice: Redis and users are required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("a TLS certificate and its key go together")
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c.Recent < 1 {
		c.Recent = 1_000_000
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Refit <= 0 {
		c.Refit = 30 * time.Second
	}
	if c.RestoreWindow <= 0 {
		c.RestoreWindow = 7 * 24 * time.Hour
	}
	if c.Group == "" {
		c.Group = "fraudstream-review"
	}
	host, _ := os.Hostname()
	replica := fmt.Sprintf("%s-%d", host, os.Getpid())
	sc, rc, verifyKeys := c.Stream, c.Redis, c.Verify
	if c.CreateTopics {
		if err := stream.EnsureTopics(ctx, sc, stream.Topic{Name: c.Labels, Partitions: 3}, stream.Topic{Name: c.Dead, Partitions: 1}); err != nil {
			return err
		}
	}
	reg, err := registry.New(registry.Config{Client: rc, Prefix: c.RegistryPrefix})
	if err != nil {
		return err
	}
	prod, err := stream.NewProducer(sc, stream.ProducerOptions{BatchSize: 256})
	if err != nil {
		return err
	}
	defer prod.Close()

	models := &pipeline.Current{}
	swapped := make(chan struct{}, 1)
	loader, err := pipeline.NewLoader(pipeline.LoaderConfig{Registry: reg, Models: models, Logger: log, Verify: verifyKeys,
		NewDecider: func(*model.Bundle) pipeline.Decider { return pipeline.NewFixed(0) },
		OnLoad: func(v int64, _ *model.Bundle) {
			log.Info("model loaded", "version", v)
			select {
			case swapped <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		return err
	}
	current := func() *casework.Model {
		m := models.Load()
		if m == nil {
			return nil
		}
		d := m.Digest
		if d == "" {
			d = "v" + m.Version
		}
		return &casework.Model{Bundle: m.Bundle, Version: m.Version, Digest: d}
	}
	recent := &recentStore{capacity: c.Recent, retention: c.Retention}
	sink := &kafkaLabels{p: prod, topic: c.Labels}
	svc, err := casework.New(casework.Config{Redis: rc, Prefix: c.Prefix, Labels: sink, Model: current, Logger: log})
	if err != nil {
		return err
	}
	m := newMetrics(svc, recent)
	sink.m = m
	web, err := reviewweb.New(reviewweb.Config{Service: svc, Users: c.Users, SessionTTL: c.SessionTTL, InsecureCookies: c.InsecureCookies, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: m.instrument(web), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 8)
	wg.Go(func() { errc <- loader.Run(ctx) })
	if c.MetricsAddr != "" {
		opsSrv, err := ops.Listen(c.MetricsAddr, m.reg, func() error {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return rc.Ping(pctx).Err()
		})
		if err != nil {
			cancel()
			return err
		}
		wg.Go(func() { errc <- opsSrv.Run(ctx) })
	}
	wg.Go(func() {
		var err error
		if c.TLSCert != "" {
			err = srv.ServeTLS(ln, c.TLSCert, c.TLSKey)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	})
	scheme := "http"
	if c.TLSCert != "" {
		scheme = "https"
	} else if !c.InsecureCookies {
		log.Warn("serving plain HTTP with Secure cookies: put a TLS-terminating proxy in front (browsers send Secure cookies only over HTTPS, or to localhost)")
	}
	log.Info("review service started", "addr", scheme+"://"+ln.Addr().String(), "alerts", c.Alerts, "labels", c.Labels, "group", c.Group)
	if c.Ready != nil {
		c.Ready(scheme+"://"+ln.Addr().String(), svc)
	}

	// The queue takes alerts at once (cases wait for a model to be
	// described); the recent store needs a model to embed with.
	wg.Go(func() { errc <- consumeAlerts(ctx, c, sc, svc, prod, m, log) })
	wg.Go(func() { lead(ctx, c, sc, svc, replica, log) })
	wg.Go(func() {
		// Follow model swaps: embed the recent store again, rebuild the queue.
		for {
			select {
			case <-ctx.Done():
				return
			case <-swapped:
			}
			m := current()
			if m == nil {
				continue
			}
			if c.Transactions != "" {
				recent.swap(ctx, &wg, c, sc, svc, m, log)
			}
			if err := svc.MarkRebuild(ctx); err != nil {
				log.Warn("asking for a queue rebuild failed", "err", err)
			}
		}
	})
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	cancel()
	wg.Wait()
	return nil
}

// consumeAlerts queues the alerts topic, committing a batch once its cases
// are in Redis and its bad records are on the dead-letter topic.
func consumeAlerts(ctx context.Context, c Config, sc stream.Config, svc *casework.Service, prod *stream.Producer, m *metrics, log *slog.Logger) error {
	cons, err := stream.NewConsumer(sc, c.Alerts, c.Group, stream.ConsumerOptions{})
	if err != nil {
		return err
	}
	defer cons.Close()
	buf := make([]kafka.Message, 0, 256)
	backoff := func(d *time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(*d):
		}
		*d = min(2**d, 10*time.Second)
		return true
	}
	for ctx.Err() == nil {
		msgs, err := cons.FetchBatch(ctx, buf[:0], cap(buf), 20*time.Millisecond)
		if err != nil && len(msgs) == 0 {
			if ctx.Err() == nil {
				log.Warn("reading alerts failed; retrying", "err", err)
				d := time.Second
				backoff(&d)
			}
			continue
		}
		vals := make([][]byte, len(msgs))
		for i, m := range msgs {
			vals[i] = m.Value
		}
		d := 100 * time.Millisecond
		for {
			added, bad, err := svc.Ingest(ctx, vals)
			if err == nil {
				var dead []kafka.Message
				for i, e := range bad {
					dead = append(dead, stream.DeadLetter(c.Dead, msgs[i], e))
				}
				if err = writeWithDeadline(ctx, prod, dead); err == nil {
					m.queued.Add(float64(added))
					m.dead.Add(float64(len(bad)))
					log.Debug("alerts queued", "read", len(msgs), "queued", added, "dead_lettered", len(bad))
					break
				}
			}
			log.Warn("queueing alerts failed; retrying (nothing is committed until it works)", "err", err)
			if !backoff(&d) {
				return nil
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := cons.Commit(cctx, msgs...); err != nil {
			log.Warn("committing alerts failed; they will be read again (queueing is idempotent)", "err", err)
		}
		cancel()
	}
	return nil
}

func writeWithDeadline(ctx context.Context, p *stream.Producer, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return p.Write(ctx, msgs...)
}

// lead keeps the re-ranker loaded on every replica and, on the replica
// holding the lease, rebuilds the queue when asked and refits the
// re-ranker as labels arrive.
func lead(ctx context.Context, c Config, sc stream.Config, svc *casework.Service, replica string, log *slog.Logger) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var lastFit time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := svc.Refresh(ctx); err != nil {
			log.Warn("loading the re-ranker failed", "err", err)
		}
		leader, err := svc.Lead(ctx, replica, 15*time.Second)
		if err != nil || !leader {
			continue
		}
		if ok, err := svc.Restored(ctx); err == nil && !ok {
			restore(ctx, c, sc, svc, replica, log)
		}
		if need, err := svc.NeedsRebuild(ctx); err == nil && need {
			start := time.Now()
			n, err := svc.Rebuild(ctx)
			log.Info("queue rebuilt", "cases", n, "took", time.Since(start).Round(time.Millisecond), "err", err)
		}
		count, err := svc.LabelCount(ctx)
		if err != nil || count == 0 || time.Since(lastFit) < c.Refit {
			continue
		}
		rr := svc.Reranker()
		if rr != nil && rr.LabelCount == count && rr.Digest == svc.CurrentDigest() {
			continue
		}
		lastFit = time.Now()
		fit, ok, err := svc.Retrain(ctx)
		switch {
		case err != nil:
			log.Warn("fitting the re-ranker failed", "err", err)
		case !ok:
			log.Debug("too few labels of each class for the re-ranker yet", "labels", count)
		default:
			log.Info("re-ranker fitted", "labels", fit.Labels, "frauds", fit.Frauds, "model_version", fit.ModelVersion)
			if err := svc.MarkRebuild(ctx); err != nil {
				log.Warn("asking for a queue rebuild failed", "err", err)
			}
		}
	}
}

// recentStore owns the recent-transactions store and the goroutine that
// fills it from the transactions topic.
type recentStore struct {
	capacity  int
	retention time.Duration
	mu        sync.Mutex
	store     *review.Recent
	desc      *review.Describer
	descMu    sync.Mutex
}

// swap makes the store follow model m: the first model creates it and
// starts tailing the topic; later ones embed what is held again, in
// place, so two models' distances are never compared.
func (r *recentStore) swap(ctx context.Context, wg *sync.WaitGroup, c Config, sc stream.Config, svc *casework.Service, m *casework.Model, log *slog.Logger) {
	desc := review.NewDescriber(m.Bundle)
	r.mu.Lock()
	first := r.store == nil
	if first {
		r.store = review.NewRecent(desc.Dim(), r.capacity, r.retention)
		svc.SetRecent(r.store)
	}
	store := r.store
	r.mu.Unlock()
	r.descMu.Lock()
	r.desc = desc
	r.descMu.Unlock()
	if first {
		since := time.Now().Add(-r.retention)
		wg.Go(func() {
			err := stream.Tail(ctx, sc, c.Transactions, since, func(msgs []kafka.Message) { r.add(msgs) })
			if err != nil && ctx.Err() == nil {
				log.Warn("similar-transaction search is off: the transactions topic cannot be read", "topic", c.Transactions, "err", err)
			}
		})
		return
	}
	// A describer of its own: add keeps using desc meanwhile.
	start := time.Now()
	emb := review.NewDescriber(m.Bundle)
	dim := emb.Dim()
	store.Reembed(dim, func(raws [][]byte, dst []float32) {
		for k, d := range emb.Describe(raws) {
			if d.Err == nil {
				copy(dst[k*dim:(k+1)*dim], d.Embedding)
			}
		}
	})
	log.Info("recent transactions embedded with the new model", "held", store.Len(), "took", time.Since(start).Round(time.Millisecond))
}

// len is the number of transactions held.
func (r *recentStore) len() int {
	r.mu.Lock()
	st := r.store
	r.mu.Unlock()
	if st == nil {
		return 0
	}
	return st.Len()
}

// maxRecentBytes: a larger transaction is not held (it is no card
// record, and a flood of them would fill memory).
const maxRecentBytes = 16 << 10

// add embeds and stores a batch of transactions.
func (r *recentStore) add(msgs []kafka.Message) {
	raws := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		if len(m.Value) <= maxRecentBytes {
			raws = append(raws, m.Value)
		}
	}
	r.descMu.Lock()
	ds := r.desc.Describe(raws)
	r.descMu.Unlock()
	for i, d := range ds {
		if d.Err != nil || d.ID == "" {
			continue
		}
		r.store.Add(review.Entry{ID: d.ID, At: d.At, Score: d.Score, Keys: d.Keys, Raw: raws[i]}, d.Embedding)
	}
}

// maxRestoreAlerts bounds the alerts a restore reads (past it, ReadWindow
// samples the window).
const maxRestoreAlerts = 1_000_000

// restore rebuilds the queue from the alerts and labels topics when Redis
// holds none; on failure it is tried again at the next tick.
func restore(ctx context.Context, c Config, sc stream.Config, svc *casework.Service, replica string, log *slog.Logger) {
	log.Warn("Redis holds no review queue (a first start, or Redis lost its data): rebuilding it from the alerts and labels topics",
		"alerts_since", time.Now().Add(-c.RestoreWindow).UTC().Format(time.RFC3339))
	start := time.Now()
	read := func(topic string, since time.Time, max int) ([][]byte, error) {
		rows, err := stream.ReadWindow(ctx, sc, topic, since, max, 1)
		var missing *stream.MissingTopicsError
		if errors.As(err, &missing) {
			return nil, nil
		}
		return rows, err
	}
	alerts, err := read(c.Alerts, time.Now().Add(-c.RestoreWindow), maxRestoreAlerts)
	if err != nil {
		log.Warn("restoring the queue: reading alerts failed; retrying", "err", err)
		return
	}
	ls, err := read(c.Labels, time.Unix(0, 0), 0)
	if err != nil {
		log.Warn("restoring the queue: reading labels failed; retrying", "err", err)
		return
	}
	queued, labelled, skipped, err := svc.Restore(ctx, alerts, ls)
	if err != nil {
		log.Warn("restoring the queue failed; retrying", "queued", queued, "err", err)
		return
	}
	if err := svc.MarkRestored(ctx, replica+" "+time.Now().UTC().Format(time.RFC3339)); err != nil {
		log.Warn("restoring the queue: marking it restored failed", "err", err)
		return
	}
	log.Info("review queue restored from the topics", "alerts_read", len(alerts), "queued", queued, "labels", labelled,
		"skipped", skipped, "took", time.Since(start).Round(time.Millisecond))
}
