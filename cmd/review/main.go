// Command review is the analysts' side of the pipeline:
//
//	review run --brokers B --redis R --addr :8080 --users FILE
//
// serves the review queue (pkg/casework) as a web page and a JSON API
// (pkg/reviewweb), fed by the alerts topic and writing labels to the
// labels topic;
//
//	review passwd --user NAME [--role analyst|viewer] < password
//
// prints a users-file line; and
//
//	review simulate --input FILE --label COLUMN [--pattern COLUMN] [--reviews-per-day 100] [--label-delay 168h] [--json]
//
// replays a labelled file in time order through the analyst loop twice,
// learning from the labels and score-only, with a simulated analyst
// (pkg/review.Simulate), and prints both runs per day and a summary.
package main

import (
	"bufio"
	"bytes"
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

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/review"
	"github.com/fraudstream/fraudstream/pkg/reviewweb"
)

const usage = `review: the analyst loop.

  review run --brokers B --redis R --addr :8080 --users FILE [--tls-cert F --tls-key F] [--verify-key F]
  review passwd --user NAME [--role analyst|viewer] < password
  review simulate --input FILE --label COLUMN [--pattern COLUMN] [--reviews-per-day N] [--label-delay D] [--json]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "review:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return errors.New("no subcommand")
		}
		return nil
	}
	switch args[0] {
	case "simulate":
		return simulate(ctx, args[1:], stdout, stderr)
	case "run":
		fs := flag.NewFlagSet("review run", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var c runConfig
		runFlags(fs, &c)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serveReview(ctx, c, stderr)
	case "passwd":
		return passwd(args[1:], os.Stdin, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func simulate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("review simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	input := fs.String("input", "", "labelled transactions, CSV or JSON Lines (required)")
	label := fs.String("label", "label", "the ground-truth column (1/0)")
	pattern := fs.String("pattern", "", "a column naming each fraud's kind (scenario), for the diversity figure")
	perDay := fs.Int("reviews-per-day", 100, "cases the simulated analyst reviews a day")
	delay := fs.Duration("label-delay", 7*24*time.Hour, "how long after a review its label is known")
	trainDays := fs.Int("train-days", 7, "each day's model is trained on this many previous days")
	epochs := fs.Int("epochs", 30, "maximum training epochs per daily model")
	seed := fs.Uint64("seed", 1, "training seed")
	asJSON := fs.Bool("json", false, "end with one JSON object of the figures")
	reviewsOut := fs.String("reviews-out", "", "write every simulated review to this CSV file, in queue order within a day: run (learned or score-only), day, line (the record's line in --input; a CSV header is line 1), label (1/0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *input == "" {
		return errors.New("simulate: --input is required")
	}
	f, err := os.Open(*input)
	if err != nil {
		return err
	}
	t, bad, err := features.ReadTable(f, features.FormatFor(*input, nil))
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *input, err)
	}
	if len(bad) > 0 {
		fmt.Fprintf(stderr, "%s: %d bad records skipped\n", *input, len(bad))
	}
	cfg := review.SimConfig{Names: t.Names, Rows: t.Rows, Label: *label, Pattern: *pattern, ReviewsPerDay: *perDay,
		LabelDelay: *delay, TrainDays: *trainDays, AE: ae.Config{Seed: *seed, Epochs: *epochs}}
	// The reviews are kept until both runs are done (about 25 bytes each,
	// two runs of reviews-per-day a day), so a failed run leaves no
	// half-written file.
	var reviews *bytes.Buffer
	if *reviewsOut != "" {
		reviews = bytes.NewBufferString("run,day,line,label\n")
	}
	results := map[bool]review.SimResult{}
	for _, learn := range []bool{true, false} {
		name := "learned"
		if !learn {
			name = "score-only"
		}
		c := cfg
		c.Learn = learn
		c.Progress = func(d review.DayStats) {
			fmt.Fprintf(stdout, "%-10s %s  tx %6d  reviews %4d  frauds %4d  precision %.2f  cumulative %5d%s\n",
				name, d.Day, d.Transactions, d.Reviews, d.Frauds, float64(d.Frauds)/float64(max(d.Reviews, 1)), d.CumFrauds, map[bool]string{true: "  (re-ranked)"}[d.Reranked])
		}
		if reviews != nil {
			c.Reviewed = func(day string, row int, fraud bool) {
				fmt.Fprintf(reviews, "%s,%s,%d,%d\n", name, day, t.Lines[row], map[bool]int{true: 1}[fraud])
			}
		}
		r, err := review.Simulate(c)
		if err != nil {
			return err
		}
		results[learn] = r
	}
	if reviews != nil {
		if err := os.WriteFile(*reviewsOut, reviews.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--reviews-out: %w", err)
		}
	}
	l, s := results[true], results[false]
	fmt.Fprintf(stdout, "frauds found: learned %d, score-only %d of %d reviews each; precision in the second half: learned %.3f, score-only %.3f",
		l.Frauds, s.Frauds, l.Reviews, l.PrecisionSecondHalf, s.PrecisionSecondHalf)
	if l.PatternsFirst100 >= 0 {
		fmt.Fprintf(stdout, "; patterns in the first 100 reviews: learned %d, score-only %d", l.PatternsFirst100, s.PatternsFirst100)
	}
	fmt.Fprintln(stdout)
	if l.ByPattern != nil || s.ByPattern != nil {
		fmt.Fprintf(stdout, "frauds found by %s: learned %v, score-only %v\n", *pattern, l.ByPattern, s.ByPattern)
	}
	if *asJSON {
		out := map[string]any{"reviews": l.Reviews, "frauds_found_learned": l.Frauds, "frauds_found_score_only": s.Frauds,
			"precision_learned": l.PrecisionSecondHalf, "precision_score_only": s.PrecisionSecondHalf}
		if l.PatternsFirst100 >= 0 {
			out["patterns_first_100_learned"], out["patterns_first_100_score_only"] = l.PatternsFirst100, s.PatternsFirst100
		}
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
	}
	return nil
}

// passwd prints a users-file line for a user whose password is read from
// stdin (first line), so it never appears on a command line.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("review passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("user", "", "the analyst's name (required)")
	role := fs.String("role", reviewweb.RoleAnalyst, "analyst (labels) or viewer (reads only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pw, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	line, err := reviewweb.Line(*name, *role, strings.TrimRight(pw, "\r\n"))
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	fmt.Fprintln(stdout, line)
	return nil
}
