package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/evaluate"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
	"github.com/fraudstream/fraudstream/pkg/trainer"
)

type liveConfig struct {
	Port     int
	Rate     int
	Every    time.Duration
	Window   time.Duration
	MinRows  int
	Summary  time.Duration
	Duration time.Duration
	Replay   string
	Speedup  float64
	Label    string
	Seed     uint64
	// The review service: its address ("" off), the simulated analyst.
	ReviewAddr       string
	AnalystSim       bool
	ReviewsPerMinute int
}

const (
	topicTx     = "transactions"
	topicAlerts = "alerts"
	topicScores = "scores"
	topicDead   = "transactions-dead"
)

// truth remembers what was produced, to judge the decisions.
type truth struct {
	mu   sync.Mutex
	sent map[string]sent
	st   stats
	// frauds remembers the fraudulent ids for the simulated analyst,
	// after their decisions (bounded: forgotten all at once past maxFrauds).
	frauds  map[string]bool
	analyst analyst
	// byModel counts each model version's decisions for the closing
	// line: the first model, fitted on the first few thousand
	// transactions, scores the backlog that waited for it and alerts far
	// more than its successors (one entry per version the run promotes).
	byModel map[string]*stats
}

const maxFrauds = 100_000

// fraud reports whether the generator made transaction id fraudulent.
func (t *truth) fraud(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.frauds[id]
}

type sent struct {
	at    time.Time
	fraud bool
}

type stats struct {
	decisions, alerts, tp, fp, fn int
	lat                           []time.Duration
	version                       string
	sample                        string
}

func (t *truth) add(id string, fraud bool) {
	t.mu.Lock()
	t.sent[id] = sent{at: time.Now(), fraud: fraud}
	if fraud {
		if len(t.frauds) >= maxFrauds {
			clear(t.frauds)
		}
		t.frauds[id] = true
	}
	t.mu.Unlock()
}

// decided records a decision read from the scores topic.
func (t *truth) decided(d pipeline.Decision) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sent[d.TransactionID]
	if !ok {
		return
	}
	delete(t.sent, d.TransactionID)
	t.st.version = d.ModelVersion
	t.st.lat = append(t.st.lat, now.Sub(s.at))
	m := t.byModel[d.ModelVersion]
	if m == nil {
		m = &stats{version: d.ModelVersion}
		t.byModel[d.ModelVersion] = m
	}
	for _, st := range []*stats{&t.st, m} {
		st.decisions++
		switch {
		case d.Alert && s.fraud:
			st.alerts++
			st.tp++
		case d.Alert:
			st.alerts++
			st.fp++
		case s.fraud:
			st.fn++
		}
	}
}

func runLive(ctx context.Context, c liveConfig, stdout, stderr io.Writer) error {
	if c.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Duration)
		defer cancel()
	}
	broker, err := stream.StartEmbedded(c.Port)
	if err != nil {
		return fmt.Errorf("%w (is something else on port %d? pass --kafka-port)", err, c.Port)
	}
	defer broker.Close()
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return err
	}
	defer mr.Close()
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	reg, err := registry.New(registry.Config{Client: rc})
	if err != nil {
		return err
	}
	sc := broker.Config()
	if err := stream.EnsureTopics(ctx, sc, stream.Topic{Name: topicTx, Partitions: 6}, stream.Topic{Name: topicAlerts, Partitions: 6},
		stream.Topic{Name: topicScores, Partitions: 6}, stream.Topic{Name: topicDead, Partitions: 1}); err != nil {
		return err
	}
	if err := boundRetention(ctx, sc, c.Window); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "embedded Kafka on %s, embedded Redis on %s\n", strings.Join(broker.Addrs(), ","), mr.Addr())
	fmt.Fprintf(stdout, "watch the alerts with any Kafka client, e.g.: kcat -b %s -C -t %s -o end\n", broker.Addrs()[0], topicAlerts)

	tr := &truth{sent: map[string]sent{}, frauds: map[string]bool{}, byModel: map[string]*stats{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	goRun := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		})
	}

	// Traffic, compressed: the embedded broker holds it in memory.
	traffic := newTrafficWriter(sc)
	defer traffic.Close()
	if c.Replay != "" {
		goRun("replay", func() error { return replay(ctx, c, traffic, tr, stdout) })
	} else {
		goRun("generator", func() error { return generate(ctx, c, traffic, tr) })
	}
	prod, err := stream.NewProducer(sc, stream.ProducerOptions{})
	if err != nil {
		return err
	}
	defer prod.Close()

	// The trainer.
	t, err := trainer.New(trainer.Config{Stream: sc, Topic: topicTx, Registry: reg, Owner: "demo-trainer", Every: c.Every, Window: c.Window,
		MinRows: c.MinRows, MaxRows: 100_000, AE: ae.Config{Seed: c.Seed, Epochs: 15},
		OnRound: func(r trainer.Round) {
			switch r.Outcome {
			case "promoted", "rejected":
				fmt.Fprintf(stdout, "trainer: version %d %s, trained on %d transactions in %.1fs (held-back loss %.4f) %s\n",
					r.Version, r.Outcome, r.Rows, r.Duration.Seconds(), r.Loss, r.Reason)
			case "skipped":
				fmt.Fprintf(stdout, "trainer: waiting for data (%s)\n", r.Reason)
			}
		}})
	if err != nil {
		return err
	}
	goRun("trainer", func() error { return t.Run(ctx) })

	// Two scorers in one consumer group.
	for i := range 2 {
		src, err := stream.NewConsumer(sc, topicTx, "scorers", stream.ConsumerOptions{})
		if err != nil {
			return err
		}
		defer src.Close()
		models := &pipeline.Current{}
		l, err := pipeline.NewLoader(pipeline.LoaderConfig{Registry: reg, Models: models, Poll: 2 * time.Second})
		if err != nil {
			return err
		}
		p, err := pipeline.New(pipeline.Config{Source: src, Sink: prod, Models: models, Alerts: topicAlerts, Scores: topicScores, Dead: topicDead})
		if err != nil {
			return err
		}
		goRun(fmt.Sprintf("loader %d", i), func() error { return l.Run(ctx) })
		goRun(fmt.Sprintf("scorer %d", i), func() error { return p.Run(ctx) })
	}

	if c.ReviewAddr != "" {
		if err := startReview(ctx, c, sc, rc, tr, goRun, stdout); err != nil {
			return err
		}
	}

	// Judging and summaries.
	goRun("scores reader", func() error { return readScores(ctx, sc, tr) })
	goRun("alerts reader", func() error { return readAlerts(ctx, sc, tr) })
	goRun("summary", func() error { return summarise(ctx, c, tr, stdout) })

	<-ctx.Done()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Fprintln(stdout, "stopped")
	return nil
}

// The embedded broker holds every record in memory, at two to four times
// its size (kfake's in-memory segments grow by doubling and are freed a
// segment at a time); without retention the demo grew by about 150 MB a
// minute at 2,000 transactions/s and passed 1 GB within 6 minutes.
const (
	// The training window plus a margin is all the trainer reads.
	txMargin = 30 * time.Second
	// Alerts, scores and dead letters are read live by the demo.
	outputRetention = 30 * time.Second
	segmentBytes    = 1 << 20
	// Generated traffic is written every trafficTick, zstd-compressed:
	// batches of about 30 transactions per partition shrink about 6x.
	trafficTick = 50 * time.Millisecond
)

// retentionCheck is how often the broker applies retention (a variable for tests).
var retentionCheck = 5 * time.Second

// trafficWriter writes the demo's transactions, compressed.
type trafficWriter struct{ w *kafka.Writer }

func newTrafficWriter(sc stream.Config) *trafficWriter {
	return &trafficWriter{w: &kafka.Writer{
		Addr: kafka.TCP(sc.Brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		Compression: kafka.Zstd, BatchTimeout: 2 * time.Millisecond, BatchSize: 1024, BatchBytes: 1_000_000,
	}}
}

func (t *trafficWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return t.w.WriteMessages(ctx, msgs...)
}

func (t *trafficWriter) Close() error { return t.w.Close() }

// boundRetention makes the embedded broker drop what the demo no longer
// needs: transactions older than the training window (plus txMargin),
// outputs older than outputRetention. kfake applies retention.ms on its
// cleaner tick (log.cleaner.backoff.ms, default an hour), which must be
// set before the topics' retention starts the ticker.
func boundRetention(ctx context.Context, sc stream.Config, window time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(sc.Brokers...), Timeout: 10 * time.Second}
	set := func(name, value string) kafka.IncrementalAlterConfigsRequestConfig {
		return kafka.IncrementalAlterConfigsRequestConfig{Name: name, Value: value, ConfigOperation: kafka.ConfigOperationSet}
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	alter := func(res ...kafka.IncrementalAlterConfigsRequestResource) error {
		resp, err := cl.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: res})
		if err != nil {
			return fmt.Errorf("embedded broker retention: %w", err)
		}
		for _, r := range resp.Resources {
			if r.Error != nil {
				return fmt.Errorf("embedded broker retention of %s: %w", r.ResourceName, r.Error)
			}
		}
		return nil
	}
	if err := alter(kafka.IncrementalAlterConfigsRequestResource{ResourceType: kafka.ResourceTypeBroker, ResourceName: "0",
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{set("log.cleaner.backoff.ms", ms(retentionCheck))}}); err != nil {
		return err
	}
	var res []kafka.IncrementalAlterConfigsRequestResource
	for _, t := range []string{topicTx, topicAlerts, topicScores, topicDead} {
		keep := outputRetention
		if t == topicTx {
			keep = window + txMargin
		}
		res = append(res, kafka.IncrementalAlterConfigsRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: t,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{set("retention.ms", ms(keep)), set("segment.bytes", strconv.Itoa(segmentBytes))}})
	}
	return alter(res...)
}

// generate produces synthetic transactions at the configured rate.
func generate(ctx context.Context, c liveConfig, prod *trafficWriter, tr *truth) error {
	g := generator.New(generator.Config{Seed: c.Seed})
	tick := time.NewTicker(trafficTick)
	defer tick.Stop()
	per := max(1, c.Rate*int(trafficTick/time.Millisecond)/1000)
	msgs := make([]kafka.Message, 0, per)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		msgs = msgs[:0]
		now := time.Now()
		for range per {
			tx, p := g.Next(now)
			tr.add(tx.ID, p != "")
			msgs = append(msgs, kafka.Message{Topic: topicTx, Key: []byte(tx.Card), Value: tx.JSON(), Time: now})
		}
		if err := prod.Write(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// replay produces a file's records in time order, sped up; its label
// column becomes the ground truth and is not sent.
func replay(ctx context.Context, c liveConfig, prod *trafficWriter, tr *truth, stdout io.Writer) error {
	f, err := os.Open(c.Replay)
	if err != nil {
		return err
	}
	t, _, err := features.ReadTable(f, features.FormatFor(c.Replay, nil))
	f.Close()
	if err != nil {
		return err
	}
	s := features.InferSchema(t.Names, t.Rows, features.InferOptions{})
	ti, li, idi := s.Index(s.TimeField), slices.Index(t.Names, c.Label), s.Index(s.IDField)
	if ti < 0 {
		return fmt.Errorf("%s: no timestamp column to replay by", c.Replay)
	}
	type rec struct {
		at  time.Time
		row []string
	}
	var recs []rec
	for _, r := range t.Rows {
		if at, ok := features.ParseTime(r[ti], s.Fields[ti].Layout); ok {
			recs = append(recs, rec{at, r})
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].at.Before(recs[j].at) })
	fmt.Fprintf(stdout, "replaying %d records of %s, %g× real time\n", len(recs), c.Replay, c.Speedup)
	start := time.Now()
	var msgs []kafka.Message
	for i, r := range recs {
		obj := map[string]string{}
		for j, name := range t.Names {
			if j == li || s.Fields[j].Kind == features.Ignored && strings.HasPrefix(s.Fields[j].Reason, "looks like a label") {
				continue
			}
			obj[name] = r.row[j]
		}
		id := fmt.Sprintf("row-%d", i)
		if idi >= 0 {
			id = r.row[idi]
		} else {
			obj["tx_id"] = id
		}
		fraud := false
		if li >= 0 {
			fraud, _ = evaluate.ParseLabel(r.row[li])
		}
		v, _ := json.Marshal(obj)
		due := start.Add(time.Duration(float64(r.at.Sub(recs[0].at)) / c.Speedup))
		if wait := time.Until(due); wait > 5*time.Millisecond {
			if err := prod.Write(ctx, msgs...); err != nil {
				return err
			}
			msgs = msgs[:0]
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		tr.add(id, fraud)
		msgs = append(msgs, kafka.Message{Topic: topicTx, Value: v, Time: time.Now()})
	}
	if err := prod.Write(ctx, msgs...); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "replay finished")
	<-ctx.Done()
	return nil
}

func readScores(ctx context.Context, sc stream.Config, tr *truth) error {
	c, err := stream.NewConsumer(sc, topicScores, "demo-judge", stream.ConsumerOptions{FromLatest: true})
	if err != nil {
		return err
	}
	defer c.Close()
	var buf []kafka.Message
	for {
		b, err := c.FetchBatch(ctx, buf[:0], 5000, 2*time.Millisecond)
		buf = b
		for _, m := range b {
			var d pipeline.Decision
			if json.Unmarshal(m.Value, &d) == nil {
				tr.decided(d)
			}
		}
		if err != nil {
			return nil
		}
	}
}

// readAlerts keeps the latest fraudulent-looking alert to show.
func readAlerts(ctx context.Context, sc stream.Config, tr *truth) error {
	c, err := stream.NewConsumer(sc, topicAlerts, "demo-alerts", stream.ConsumerOptions{FromLatest: true})
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		b, err := c.FetchBatch(ctx, nil, 1000, 2*time.Millisecond)
		if len(b) > 0 {
			var a pipeline.Alert
			if json.Unmarshal(b[len(b)-1].Value, &a) == nil {
				var rs []string
				for _, r := range a.Reasons {
					rs = append(rs, fmt.Sprintf("%s=%s (expected %s)", r.Field, r.Observed, r.Expected))
				}
				tr.mu.Lock()
				tr.st.sample = fmt.Sprintf("alert %s score %.1f ≥ %.1f: %s", a.TransactionID, a.Score, a.Threshold, strings.Join(rs, ", "))
				tr.mu.Unlock()
			}
		}
		if err != nil {
			return nil
		}
	}
}

func summarise(ctx context.Context, c liveConfig, tr *truth, stdout io.Writer) error {
	tick := time.NewTicker(c.Summary)
	defer tick.Stop()
	start := time.Now()
	var total stats
	for {
		select {
		case <-ctx.Done():
			// The totals take in the decisions since the last summary, read
			// under the same lock as the per-model counts, so both lines
			// count the same decisions.
			tr.mu.Lock()
			total.decisions += tr.st.decisions
			total.alerts += tr.st.alerts
			total.tp += tr.st.tp
			total.fp += tr.st.fp
			total.fn += tr.st.fn
			var parts []string
			for _, m := range tr.byModel {
				parts = append(parts, fmt.Sprintf("v%s %d decisions, %d alerts, precision %.3f recall %.3f",
					m.version, m.decisions, m.alerts, ratio(m.tp, m.tp+m.fp), ratio(m.tp, m.tp+m.fn)))
			}
			tr.mu.Unlock()
			if total.decisions > 0 {
				fmt.Fprintf(stdout, "total: %d decisions in %.0fs | alerts %d (%.2f%%) | precision %.3f recall %.3f\n",
					total.decisions, time.Since(start).Seconds(), total.alerts, 100*float64(total.alerts)/float64(total.decisions),
					ratio(total.tp, total.tp+total.fp), ratio(total.tp, total.tp+total.fn))
				slices.SortFunc(parts, func(a, b string) int { return cmp.Compare(versionOf(a), versionOf(b)) })
				fmt.Fprintf(stdout, "by model: %s\n", strings.Join(parts, "; "))
			}
			return nil
		case <-tick.C:
		}
		tr.mu.Lock()
		s := tr.st
		tr.st = stats{version: s.version}
		pending := len(tr.sent)
		tr.mu.Unlock()
		total.decisions += s.decisions
		total.alerts += s.alerts
		total.tp += s.tp
		total.fp += s.fp
		total.fn += s.fn
		if s.decisions == 0 {
			// Before the first model, transactions wait; after a replay
			// ends, none are left to decide.
			what := "no decisions yet (waiting for the first model)"
			switch {
			case total.decisions > 0 && pending == 0:
				what = "no transactions to decide"
			case total.decisions > 0:
				what = fmt.Sprintf("no decisions; %d transactions waiting", pending)
			}
			fmt.Fprintf(stdout, "[%4.0fs] %s\n", time.Since(start).Seconds(), what)
			continue
		}
		slices.Sort(s.lat)
		q := func(p float64) time.Duration { return s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))] }
		fmt.Fprintf(stdout, "[%4.0fs] model v%s | %5.0f tx/s | alerts %.2f%% | precision %.2f recall %.2f (running: %.2f / %.2f) | latency p50 %v p99 %v\n",
			time.Since(start).Seconds(), s.version, float64(s.decisions)/c.Summary.Seconds(),
			100*float64(s.alerts)/float64(s.decisions), ratio(s.tp, s.tp+s.fp), ratio(s.tp, s.tp+s.fn),
			ratio(total.tp, total.tp+total.fp), ratio(total.tp, total.tp+total.fn),
			q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond))
		if s.sample != "" {
			fmt.Fprintf(stdout, "        %s\n", s.sample)
		}
		if c.AnalystSim {
			fmt.Fprintf(stdout, "        %s\n", tr.analyst.String())
		}
	}
}

// versionOf reads the version number a "vN ..." part starts with.
func versionOf(part string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(part)[0], "v"))
	return n
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
