// Command generator produces synthetic card transactions with injected
// fraud to any Kafka, for load tests and demos.
//
//	generator --brokers 127.0.0.1:9092 --rate 20000 [--count N] [--truth truth.csv]
//
// With --truth, the id and fraud pattern of every transaction are written
// to a CSV so that alerts can be judged afterwards.
//
//	generator --out FILE --count N [--days 30] [--start 2026-01-01]
//
// writes the transactions to a JSON Lines file instead of Kafka, spread over
// --days days of event time from --start, each with its "label" (1 for
// fraud) and "pattern": a labelled file for offline evaluation and
// `review simulate`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/connect"
	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "generator:", err)
		os.Exit(1)
	}
}

type flags struct {
	brokers, topic, truth *string
	out, start            *string
	days                  *int
	partitions, rate      *int
	count                 *int
	fraud                 *float64
	seed                  *uint64
	kafka                 *connect.Kafka // TLS and SASL
}

func newFlags(fs *flag.FlagSet) flags {
	kafka := &connect.Kafka{}
	kafka.Register(fs)
	return flags{
		brokers:    fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated"),
		topic:      fs.String("topic", "transactions", "topic to produce to (created when missing)"),
		partitions: fs.Int("partitions", 6, "partitions when the topic is created"),
		rate:       fs.Int("rate", 2000, "transactions per second (0: as fast as possible)"),
		count:      fs.Int("count", 0, "stop after this many transactions (0: until interrupted)"),
		fraud:      fs.Float64("fraud-rate", 0.005, "share of fraudulent transactions"),
		seed:       fs.Uint64("seed", 1, "random seed"),
		truth:      fs.String("truth", "", "write tx_id,pattern of every transaction to this CSV"),
		out:        fs.String("out", "", "write --count labelled transactions to this JSON Lines file instead of Kafka"),
		days:       fs.Int("days", 30, "--out: days of event time the transactions spread over"),
		start:      fs.String("start", "2026-01-01", "--out: the first day (YYYY-MM-DD)"),
		kafka:      kafka,
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := newFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	brokers, topic, partitions, rate, count, fraud, seed, truthPath := f.brokers, f.topic, f.partitions, f.rate, f.count, f.fraud, f.seed, f.truth
	if *f.out != "" {
		return writeFile(f, stdout)
	}
	cfg, err := f.kafka.Stream(strings.Split(*brokers, ","), "fraudstream-generator")
	if err != nil {
		return err
	}
	if w := f.kafka.Warning(); w != "" {
		fmt.Fprintln(stderr, "generator:", w)
	}
	// A refused login or an untrusted certificate is said as such, not as
	// the topic's creation failing.
	if err := f.kafka.Check(ctx, cfg); connect.Fatal(err) {
		return err
	}
	if err := stream.EnsureTopics(ctx, cfg, stream.Topic{Name: *topic, Partitions: *partitions}); err != nil {
		return err
	}
	p, err := stream.NewProducer(cfg, stream.ProducerOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	var truth *bufio.Writer
	if *truthPath != "" {
		f, err := os.Create(*truthPath)
		if err != nil {
			return err
		}
		defer f.Close()
		truth = bufio.NewWriter(f)
		defer truth.Flush()
		fmt.Fprintln(truth, "tx_id,pattern")
	}
	g := generator.New(generator.Config{Seed: *seed, Rate: *fraud})
	const tick = 10 * time.Millisecond
	per := 1000
	if *rate > 0 {
		per = max(1, *rate/int(time.Second/tick))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	sent, start := 0, time.Now()
	msgs := make([]kafka.Message, 0, per)
	for *count == 0 || sent < *count {
		if *rate > 0 {
			select {
			case <-ctx.Done():
				fmt.Fprintf(stdout, "sent %d transactions in %v\n", sent, time.Since(start).Round(time.Millisecond))
				return nil
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		msgs = msgs[:0]
		now := time.Now()
		for range per {
			if *count > 0 && sent+len(msgs) >= *count {
				break
			}
			tx, pat := g.Next(now)
			msgs = append(msgs, kafka.Message{Topic: *topic, Key: []byte(tx.Card), Value: tx.JSON(), Time: now})
			if truth != nil {
				fmt.Fprintf(truth, "%s,%s\n", tx.ID, pat)
			}
		}
		if err := writeRetrying(ctx, p, msgs, stderr); err != nil {
			break // ctx ended
		}
		sent += len(msgs)
	}
	fmt.Fprintf(stdout, "sent %d transactions in %v\n", sent, time.Since(start).Round(time.Millisecond))
	return nil
}

// writeRetrying writes msgs until the broker acknowledges them, retrying
// with backoff through an outage (saying so at most every 10s), so that a
// broker restart pauses the traffic instead of ending it. It returns an
// error only when ctx ends. A retried batch may reach the topic twice.
func writeRetrying(ctx context.Context, p *stream.Producer, msgs []kafka.Message, stderr io.Writer) error {
	backoff, warned := 100*time.Millisecond, time.Time{}
	for {
		err := p.Write(ctx, msgs...)
		if err == nil {
			return nil
		}
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(warned) > 10*time.Second {
			fmt.Fprintf(stderr, "generator: write failed, retrying: %v\n", err)
			warned = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// writeFile writes --count labelled transactions over --days days to --out.
func writeFile(f flags, stdout io.Writer) error {
	if *f.count <= 0 || *f.days <= 0 {
		return errors.New("--out needs --count and --days above 0")
	}
	start, err := time.Parse("2006-01-02", *f.start)
	if err != nil {
		return fmt.Errorf("--start %q: want YYYY-MM-DD", *f.start)
	}
	file, err := os.Create(*f.out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(file)
	g := generator.New(generator.Config{Seed: *f.seed, Rate: *f.fraud})
	step := time.Duration(*f.days) * 24 * time.Hour / time.Duration(*f.count)
	frauds := 0
	for i := range *f.count {
		tx, pat := g.Next(start.Add(time.Duration(i) * step))
		label := 0
		if pat != "" {
			label, frauds = 1, frauds+1
		}
		v, err := json.Marshal(struct {
			generator.Transaction
			Label   int    `json:"label"`
			Pattern string `json:"pattern"`
		}{tx, label, string(pat)})
		if err != nil {
			file.Close()
			return err
		}
		w.Write(v)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d transactions (%d frauds) over %d days to %s\n", *f.count, frauds, *f.days, *f.out)
	return nil
}
