// Command loadtest measures the streaming scorer's throughput and latency.
//
//	loadtest drain   [--brokers B] [--messages 2000000] [--scorers 2]
//	    pre-loads a transactions topic, then times the scorer group from the
//	    first fetch until every offset is committed (alerts for about 1%).
//	loadtest latency [--brokers B] [--rate 20000] [--duration 30s]
//	    produces at a steady rate and measures the time from a transaction's
//	    produce to its alert being readable (p50, p99).
//
// With --entities card_id[,merchant_id] the model has an entity score on
// those fields and the scorers keep the entities' states in Redis
// (pipeline.RedisEntityStore, as scorer run does) at --redis, or in an
// in-process miniredis when --redis is empty.
//
// Without --brokers it starts the embedded broker. The scorers are the same
// pipeline code `scorer run` uses, in this process.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/connect"
	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the command and returns its exit status: 0 for a help request,
// 2 for a usage error.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "loadtest:", err)
	return 1
}

var errUsage = errors.New("usage")

// modeFlags registers the flags of mode ("drain" or "latency") on a new
// flag set: the shared ones and the mode's own.
func modeFlags(mode string, c *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loadtest "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.brokers, "brokers", "", "Kafka brokers (empty: start the embedded broker)")
	c.kafka.Register(fs)
	fs.IntVar(&c.scorers, "scorers", 2, "scorer workers in the group")
	fs.DurationVar(&maxWait, "max-wait", 50*time.Millisecond, "the scorers' fetch MaxWait")
	fs.Float64Var(&c.quantile, "threshold-quantile", 0.99, "alert above this quantile of validation scores (0.99: about 1% alerts)")
	fs.StringVar(&c.entities, "entities", "", "comma-separated entity fields of the generator's records (card_id, merchant_id) given an entity score, their states kept in Redis (empty: no entity score)")
	fs.IntVar(&batchSize, "batch", 8192, "the scorers' batch size (scorer run's default)")
	fs.StringVar(&c.redis, "redis", "", "with --entities: the Redis address holding the entity states (empty: an in-process miniredis)")
	switch mode {
	case "drain":
		fs.IntVar(&c.messages, "messages", 2_000_000, "transactions pre-loaded")
		fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed drain (broker and scorers: one process) to this file")
	case "latency":
		fs.IntVar(&c.rate, "rate", 20000, "transactions per second")
		fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to produce")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: loadtest %s [flags]\n  %s\n\nflags:\n", mode, modeDoc[mode])
		fs.PrintDefaults()
	}
	return fs
}

var modeDoc = map[string]string{
	"drain":   "pre-loads a transactions topic, then times the scorer group from the first fetch until every offset is committed",
	"latency": "produces at a steady rate and measures the time from a transaction's produce to its alert being readable (p50, p99)",
}

// usage prints both modes with their flags.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: loadtest drain|latency [flags]   ('loadtest MODE -h' for one mode)")
	fmt.Fprintln(w, "Without --brokers it starts the embedded broker.")
	for _, mode := range []string{"drain", "latency"} {
		fmt.Fprintln(w)
		fs := modeFlags(mode, &config{}, w)
		fs.Usage()
	}
}

type config struct {
	brokers  string
	kafka    connect.Kafka // TLS and SASL, with --brokers
	messages int
	scorers  int
	rate     int
	duration time.Duration
	quantile float64
	entities string
	redis    string
	// cpuProfile: drain writes a pprof CPU profile of the timed part here.
	cpuProfile string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			usage(stdout)
			return nil
		}
	}
	if len(args) == 0 || (args[0] != "drain" && args[0] != "latency") {
		usage(stderr)
		return errUsage
	}
	var c config
	fs := modeFlags(args[0], &c, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			err = errUsage // the flag package has printed the problem and the usage
		}
		return err
	}
	var sc stream.Config
	if c.brokers != "" {
		var err error
		if sc, err = c.kafka.Stream(strings.Split(c.brokers, ","), "fraudstream-loadtest"); err != nil {
			return err
		}
		if err := c.kafka.Check(ctx, sc); connect.Fatal(err) {
			return err
		}
	} else {
		e, err := stream.StartEmbedded(0)
		if err != nil {
			return err
		}
		defer e.Close()
		sc = e.Config()
	}
	sfx := fmt.Sprint(time.Now().UnixNano())
	tx, alerts, dead := "lt-tx-"+sfx, "lt-alerts-"+sfx, "lt-dead-"+sfx
	if err := stream.EnsureTopics(ctx, sc, stream.Topic{Name: tx, Partitions: 6}, stream.Topic{Name: alerts, Partitions: 6}, stream.Topic{Name: dead}); err != nil {
		return err
	}
	b, err := trainModel()
	if err != nil {
		return err
	}
	var store pipeline.EntityStore
	if c.entities != "" {
		if err := addEntities(b, strings.Split(c.entities, ",")); err != nil {
			return err
		}
		addr := c.redis
		if addr == "" {
			mr, err := miniredis.Run()
			if err != nil {
				return err
			}
			defer mr.Close()
			addr = mr.Addr()
		}
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		if err := rc.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("--redis %s: %w", addr, err)
		}
		// The states expire soon after the run: a shared Redis keeps no clutter.
		store = &pipeline.RedisEntityStore{Client: rc, Prefix: "lt-" + sfx + ":entity:", TTL: time.Hour}
		fmt.Fprintf(stdout, "entity score on %s, states in Redis at %s\n", strings.Join(b.Entity.Fields, ", "), addr)
	}
	cur := &pipeline.Current{}
	cur.Swap(&pipeline.Model{Bundle: b, Version: "1", Decider: pipeline.NewCalibrated(b, c.quantile)})
	if args[0] == "drain" {
		return drain(ctx, c, sc, tx, alerts, dead, cur, store, stdout)
	}
	return latency(ctx, c, sc, tx, alerts, dead, cur, store, stdout)
}

// addEntities gives b an entity score on fields, its tails fitted on
// 100,000 generated transactions after 100,000 that warm the states (five
// per card each: the cards' habits are known, as they soon are in a long
// run). Every field is kept even where its habit explains too little for
// trainer fit to keep it (the generator's merchants serve everyone's
// amounts): the load test measures what each entity costs.
func addEntities(b *model.Bundle, fields []string) error {
	s := &b.Encoder.Schema
	s.EntityFields, s.AmountField = fields, "amount"
	v, err := b.EntityReader()
	if err != nil {
		return fmt.Errorf("--entities: %w", err)
	}
	const warm, fit = 100000, 100000
	names, rows := generate(4, warm+fit, 10*24*time.Hour)
	rows = features.Project(s, names, rows)
	txs := make([]model.Tx, len(rows))
	for i, row := range rows {
		v.Read(row, &txs[i])
	}
	r := v.NewReplay()
	vals := make([]model.EntityValue, len(fields))
	scores := make([][]float64, len(fields))
	for _, i := range model.ReplayOrder(txs) {
		r.Step(&txs[i], vals)
		for e := range vals {
			if i >= warm {
				scores[e] = append(scores[e], vals[e].Score)
			}
		}
	}
	p := v.Part
	p.Rows, p.HistoryRows = fit, warm
	for e, f := range fields {
		t, ok := entity.NewTail(scores[e])
		if !ok {
			return fmt.Errorf("--entities: %s has too little history in %d training rows for a score", f, len(rows))
		}
		p.Tails = append(p.Tails, t)
	}
	// The merchants' categorical novelty, as trainer fit counts it on the
	// generator's traffic (mcc and country, nearly constant per merchant):
	// each counted field adds 88 bytes to a merchant's state.
	if e := slices.Index(fields, "merchant_id"); e >= 0 {
		for _, f := range []string{"mcc", "country"} {
			if s.Index(f) >= 0 {
				p.Categories = append(p.Categories, model.EntityCategory{Entity: "merchant_id", Field: f, Tail: p.Tails[e]})
			}
		}
	}
	b.Entity = p
	if len(p.Categories) > 0 {
		// Their tails: the category scores of the fitted rows.
		cat := make([][]float64, len(p.Categories))
		if _, err := b.ReplayTxs(v, txs, func(i int, _ *model.Tx, vals []model.EntityValue) {
			if i >= warm {
				for c := range p.Categories {
					cat[c] = append(cat[c], vals[slices.Index(fields, "merchant_id")].CatScore[c])
				}
			}
		}); err != nil {
			return err
		}
		for c := range p.Categories {
			t, ok := entity.NewTail(cat[c])
			if !ok {
				return fmt.Errorf("--entities: too few merchants with a history of %s for a score", p.Categories[c].Field)
			}
			p.Categories[c].Tail = t
		}
	}
	_, err = b.NewEntityView()
	return err
}

// trainModel fits a model on generated traffic, as the trainer would.
func trainModel() (*model.Bundle, error) {
	names, rows := generate(1, 20000, 0)
	s := features.InferSchema(names, rows, features.InferOptions{})
	return model.Fit(s, features.Project(s, names, rows), model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 5}})
}

// generate returns n of the generator's transactions (seed) as rows, their
// days spread evenly over span before now, and their column names.
func generate(seed uint64, n int, span time.Duration) ([]string, [][]string) {
	g := generator.New(generator.Config{Seed: seed})
	var names []string
	var rows [][]string
	now := time.Now().Add(-span)
	for i := range n {
		t, _ := g.Next(now.Add(time.Duration(i) * span / time.Duration(n)))
		var m map[string]any
		json.Unmarshal(t.JSON(), &m)
		if names == nil {
			for k := range m {
				names = append(names, k)
			}
			slices.Sort(names)
		}
		r := make([]string, len(names))
		for i, k := range names {
			r[i] = fmt.Sprint(m[k])
		}
		rows = append(rows, r)
	}
	return names, rows
}

// scorers runs n pipelines in one group until ctx ends.
var maxWait = 50 * time.Millisecond

var batchSize = 8192

func scorers(ctx context.Context, n int, sc stream.Config, tx, alerts, dead string, cur *pipeline.Current, store pipeline.EntityStore) (func() int64, func(), error) {
	var wg sync.WaitGroup
	var srcs []*stream.Consumer
	ctx, cancel := context.WithCancel(ctx)
	for range n {
		src, err := stream.NewConsumer(sc, tx, "loadtest", stream.ConsumerOptions{MaxWait: maxWait})
		if err != nil {
			cancel()
			return nil, nil, err
		}
		prod, err := stream.NewProducer(sc, stream.ProducerOptions{})
		if err != nil {
			cancel()
			return nil, nil, err
		}
		p, err := pipeline.New(pipeline.Config{Source: src, Sink: prod, Models: cur, Alerts: alerts, Dead: dead, BatchSize: batchSize, Entities: store})
		if err != nil {
			cancel()
			return nil, nil, err
		}
		srcs = append(srcs, src)
		wg.Go(func() {
			p.Run(ctx)
			prod.Close()
		})
	}
	// kafka-go's Stats are counts since the previous call: keep a total.
	var total int64
	committed := func() int64 {
		for _, s := range srcs {
			total += s.Stats().Messages
		}
		return total
	}
	stop := func() {
		cancel()
		wg.Wait()
		for _, s := range srcs {
			s.Close()
		}
	}
	return committed, stop, nil
}

func drain(ctx context.Context, c config, sc stream.Config, tx, alerts, dead string, cur *pipeline.Current, store pipeline.EntityStore, stdout io.Writer) error {
	p, err := stream.NewProducer(sc, stream.ProducerOptions{BatchSize: 20000})
	if err != nil {
		return err
	}
	g := generator.New(generator.Config{Seed: 2})
	start := time.Now()
	msgs := make([]kafka.Message, 0, 20000)
	for sent := 0; sent < c.messages; {
		msgs = msgs[:0]
		now := time.Now()
		for range min(20000, c.messages-sent) {
			t, _ := g.Next(now)
			msgs = append(msgs, kafka.Message{Topic: tx, Key: []byte(t.Card), Value: t.JSON()})
		}
		if err := p.Write(ctx, msgs...); err != nil {
			return err
		}
		sent += len(msgs)
	}
	p.Close()
	fmt.Fprintf(stdout, "pre-loaded %d transactions in %v\n", c.messages, time.Since(start).Round(time.Millisecond))
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start = time.Now()
	read, stop, err := scorers(ctx, c.scorers, sc, tx, alerts, dead, cur, store)
	if err != nil {
		return err
	}
	// The group has drained when its lag is zero and every message was read;
	// the pipeline commits each batch after writing its outputs.
	for read() < int64(c.messages) {
		if ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	n := read()
	stop() // the batch in flight is written and committed before this returns
	el := time.Since(start)
	fmt.Fprintf(stdout, "drained %d transactions with %d scorers in %v: %.0f transactions/s\n", n, c.scorers, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}

func latency(ctx context.Context, c config, sc stream.Config, tx, alerts, dead string, cur *pipeline.Current, store pipeline.EntityStore, stdout io.Writer) error {
	_, stop, err := scorers(ctx, c.scorers, sc, tx, alerts, dead, cur, store)
	if err != nil {
		return err
	}
	defer stop()
	var mu sync.Mutex
	sentAt := map[string]time.Time{}
	var lat []time.Duration
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		cons, err := stream.NewConsumer(sc, alerts, "loadtest-latency", stream.ConsumerOptions{MaxWait: 5 * time.Millisecond})
		if err != nil {
			return
		}
		defer cons.Close()
		for {
			b, err := cons.FetchBatch(rctx, nil, 1000, time.Millisecond)
			now := time.Now()
			for _, m := range b {
				var a pipeline.Alert
				if json.Unmarshal(m.Value, &a) == nil {
					mu.Lock()
					if t, ok := sentAt[a.TransactionID]; ok {
						lat = append(lat, now.Sub(t))
					}
					mu.Unlock()
				}
			}
			if err != nil {
				return
			}
		}
	})
	p, err := stream.NewProducer(sc, stream.ProducerOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	g := generator.New(generator.Config{Seed: 3})
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	per := max(1, c.rate/200)
	end := time.Now().Add(c.duration)
	warm := time.Now().Add(5 * time.Second) // the group's first join and fetches
	produced := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		<-tick.C
		var msgs []kafka.Message
		now := time.Now()
		mu.Lock()
		for range per {
			t, _ := g.Next(now)
			if now.After(warm) {
				sentAt[t.ID] = now
			}
			msgs = append(msgs, kafka.Message{Topic: tx, Key: []byte(t.Card), Value: t.JSON()})
		}
		mu.Unlock()
		if err := p.Write(ctx, msgs...); err != nil {
			rcancel()
			wg.Wait()
			return err
		}
		produced += len(msgs)
	}
	time.Sleep(2 * time.Second)
	rcancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		return errors.New("no alerts were read")
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Fprintf(stdout, "%d transactions at %.0f/s, %d alerts timed after warm-up: produce → alert readable p50 %v, p99 %v, max %v\n",
		produced, float64(produced)/c.duration.Seconds(), len(lat), q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}
