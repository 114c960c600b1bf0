// Command scorer scores transactions. `scorer run` is the streaming worker
// (Kafka in, alerts out, model from the Redis registry); the offline
// subcommands score files:
//
//	scorer score  --model model.bin --input FILE --out scores.csv
//	scorer impute --model model.bin --input FILE --out filled.csv
//	scorer eval   --model model.bin --input FILE --label COLUMN [--plot eval.png]
//
// score and eval take --history FILE (repeatable): earlier transactions
// that warm the entity states of a model with an entity score; its score
// is then the DAE's joined to the entities' (--dae-only: the DAE's alone).
//
// Each takes --verify-key PUB.pem (repeatable): the model must be signed by
// one of the keys.
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

	"github.com/fraudstream/fraudstream/pkg/offline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: scorer <command> [flags]

commands:
  run      the streaming scorer: a consumer-group worker that scores transactions from Kafka
           with the registry's current model and writes alerts, scores and dead letters
  score    score every record of --input; first column 'score' (higher = more anomalous), one row per record, in order
  impute   fill missing fields of --input from the model's reconstruction
  eval     score a labelled file and report ROC-AUC, AUPRC, precision at k and recall at alert rates

run 'scorer <command> -h' for a command's flags`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("scorer "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch args[0] {
	case "run":
		var c runConfig
		runFlags(fs, &c)
		if err = fs.Parse(args[1:]); err == nil {
			err = serve(ctx, c, stderr)
		}
	case "score":
		var c offline.ScoreConfig
		fs.StringVar(&c.Model, "model", "model.bin", "model bundle")
		offline.VerifyKeyFlag(fs, &c.VerifyKeys)
		fs.StringVar(&c.Input, "input", "", "records (CSV or JSON Lines; - for standard input)")
		fs.StringVar(&c.Out, "out", "-", "scores CSV (- for standard output)")
		fs.IntVar(&c.TopK, "reasons", 3, "top reasons per record")
		fs.BoolVar(&c.Embed, "embed", false, "add the embedding (bottleneck) columns emb_0…")
		offline.HistoryFlag(fs, &c.History, "not scored")
		offline.DAEOnlyFlag(fs, &c.DAEOnly)
		if err = fs.Parse(args[1:]); err == nil {
			err = offline.ScoreFile(ctx, c, stdin, stdout, stderr)
		}
	case "impute":
		var c offline.ImputeConfig
		fs.StringVar(&c.Model, "model", "model.bin", "model bundle")
		offline.VerifyKeyFlag(fs, &c.VerifyKeys)
		fs.StringVar(&c.Input, "input", "", "records (CSV or JSON Lines; - for standard input)")
		fs.StringVar(&c.Out, "out", "-", "filled CSV (- for standard output)")
		fs.IntVar(&c.Iters, "iters", 3, "rounds of feeding estimates back into the model")
		if err = fs.Parse(args[1:]); err == nil {
			err = offline.ImputeFile(ctx, c, stdin, stdout, stderr)
		}
	case "eval":
		var c offline.EvalConfig
		fs.StringVar(&c.Model, "model", "model.bin", "model bundle")
		offline.VerifyKeyFlag(fs, &c.VerifyKeys)
		fs.StringVar(&c.Input, "input", "", "labelled records (CSV or JSON Lines; - for standard input)")
		fs.StringVar(&c.Label, "label", "label", "label column (1 = fraud, 0 = normal)")
		fs.StringVar(&c.Plot, "plot", "eval.png", "PNG of the precision-recall curve and score distributions (empty: none)")
		offline.HistoryFlag(fs, &c.History, "not scored")
		offline.DAEOnlyFlag(fs, &c.DAEOnly)
		if err = fs.Parse(args[1:]); err == nil {
			_, err = offline.EvalFile(ctx, c, stdin, stdout, stderr)
		}
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "scorer: unknown command %q\n%s\n", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "scorer %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
