// Command demo runs the whole streaming pipeline in one process on a
// machine with only Go: an embedded Kafka-protocol broker on a fixed local
// port (kcat can connect), an embedded Redis, a generator of synthetic card
// transactions with injected fraud, the trainer, two scorers and the review
// service (its page on 127.0.0.1:8080, user demo). Every few seconds it
// prints throughput, alert rate, precision and recall against the
// generator's ground truth, the model version and latency; with
// --analyst-sim a simulated analyst works the review queue and the
// precision of its reviews is printed too. Ctrl-C stops it cleanly.
//
//	go run ./cmd/demo                          # generated traffic
//	go run ./cmd/demo --analyst-sim            # and an analyst labelling the queue
//	go run ./cmd/demo --replay FILE --speedup 600
//	go run ./cmd/demo --offline                # the offline fit/score/eval walkthrough
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the demo and returns its exit status: 0 after a help request,
// 2 for bad flags (the flag package has said what is wrong).
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "demo:", err)
	return 1
}

var errUsage = errors.New("usage")

const usage = `usage: demo [flags]

Runs the whole streaming pipeline in one process: an embedded Kafka-protocol broker, an embedded
Redis, a generator of card transactions with injected fraud (or --replay FILE), the trainer,
two scorers and the review page, printing throughput, alert rate, precision and recall every few
seconds (--analyst-sim: and a simulated analyst's precision on the review queue). With
--offline it runs the offline fit/score/eval walkthrough on the handbook data instead.

flags:`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c liveConfig
	offline := fs.Bool("offline", false, "run the offline walkthrough on the handbook data instead")
	data := fs.String("data", "../shared/data/fraud_handbook_2018-04.csv", "offline: labelled transactions with TX_DATETIME")
	cut := fs.String("split", "2018-04-22", "offline: train before this day, score the rest")
	plot := fs.String("plot", "demo-eval.png", "offline: where to write the evaluation plot")
	fs.IntVar(&c.Port, "kafka-port", 9092, "port of the embedded Kafka broker on 127.0.0.1")
	fs.IntVar(&c.Rate, "rate", 2000, "generated transactions per second")
	fs.DurationVar(&c.Every, "every", 15*time.Second, "interval between training rounds")
	fs.DurationVar(&c.Window, "window", 5*time.Minute, "training window (the embedded broker keeps transactions this long plus 30s)")
	fs.IntVar(&c.MinRows, "min-rows", 5000, "rows needed before the first model")
	fs.DurationVar(&c.Summary, "summary", 5*time.Second, "interval between summaries")
	fs.DurationVar(&c.Duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fs.StringVar(&c.Replay, "replay", "", "replay a CSV or JSON Lines file by its timestamps instead of generating traffic")
	fs.Float64Var(&c.Speedup, "speedup", 600, "replay: how many times faster than real time")
	fs.StringVar(&c.Label, "label", "label", "replay: the ground-truth column (not sent to the scorers)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the generator and the training")
	fs.StringVar(&c.ReviewAddr, "review-addr", "127.0.0.1:8080", "address of the review page (user demo, password demo-review); empty: no review service")
	fs.BoolVar(&c.AnalystSim, "analyst-sim", false, "a simulated analyst labels the top of the review queue from the generator's truth, so precision can be watched to climb")
	fs.IntVar(&c.ReviewsPerMinute, "reviews-per-minute", 60, "--analyst-sim: cases labelled a minute")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			err = errUsage
		}
		return err
	}
	if *offline {
		return runOffline(ctx, *data, *cut, *plot, c.Seed, stdout)
	}
	return runLive(ctx, c, stdout, stderr)
}
