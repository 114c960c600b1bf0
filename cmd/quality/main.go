// Command quality measures detection quality the way the project's peer
// comparison does: a stratified 70/30 split per seed, a fit on the 70%
// without labels (its fraud stays in), scores on the 30%, and AUPRC
// (average precision) and ROC-AUC against the labels.
//
//	go run ./cmd/quality --input ../shared/data/fraud_handbook_2018-04.csv --label label --drop TX_FRAUD_SCENARIO
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/evaluate"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the command and returns its exit status: 0 after a help
// request, 2 for bad flags (the flag package has said what is wrong).
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "quality:", err)
	return 1
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quality", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: quality --input FILE [--label label] [--drop a,b] [--seeds 0,1,2] [training flags]

Measures detection quality: per seed, a stratified 70/30 split, a fit on the 70% without labels,
scores on the 30%, and AUPRC and ROC-AUC against the labels.

flags:`)
		fs.PrintDefaults()
	}
	input := fs.String("input", "", "labelled CSV or JSON Lines file")
	label := fs.String("label", "label", "label column (1 = fraud)")
	drop := fs.String("drop", "", "comma-separated further columns to hide from the model (e.g. fraud scenario)")
	seeds := fs.String("seeds", "0,1,2", "split and training seeds")
	verbose := fs.Bool("v", false, "print training progress")
	var cfg ae.Config
	fs.IntVar(&cfg.Hidden, "hidden", 0, "hidden width (0: default)")
	fs.IntVar(&cfg.Bottleneck, "bottleneck", 0, "bottleneck width (0: default)")
	fs.IntVar(&cfg.Epochs, "epochs", 0, "max epochs (0: default)")
	fs.Float64Var(&cfg.SwapNoise, "swap-noise", 0, "swap noise (0: default, negative: off)")
	fs.Float64Var(&cfg.GaussianNoise, "gauss-noise", 0, "gaussian noise (0: default, negative: off)")
	fs.Float64Var(&cfg.MaskNoise, "mask-noise", 0, "mask noise (0: default, negative: off)")
	fs.Float64Var(&cfg.TrimFraction, "trim", 0, "contamination trim fraction (0: default)")
	fs.IntVar(&cfg.Patience, "patience", 0, "early-stopping patience (0: default)")
	fs.IntVar(&cfg.WarmupEpochs, "warmup", 0, "epochs before trimming (0: default)")
	maxLevels := fs.Int("max-levels", 0, "categorical vocabulary cap (0: default)")
	fs.BoolVar(&cfg.Linear, "linear", false, "score with linear contributions e/Norm instead of their square roots")
	fs.BoolVar(&cfg.RawTargets, "raw-targets", false, "measure numeric errors against values beyond the input clip as they are (as models before soft targets did; the normalisers' floor stays)")
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			err = errUsage
		}
		return err
	}
	if *input == "" {
		fmt.Fprintln(stderr, "quality: no input given (use --input FILE)")
		fs.Usage()
		return errUsage
	}
	f, err := os.Open(*input)
	if err != nil {
		return err
	}
	t, bad, err := features.ReadTable(f, features.FormatFor(*input, nil))
	f.Close()
	if err != nil {
		return err
	}
	li := slices.Index(t.Names, *label)
	if li < 0 {
		return fmt.Errorf("no label column %q", *label)
	}
	hide := append([]string{*label}, offline.SplitList(*drop)...)
	labels := make([]bool, len(t.Rows))
	for i, r := range t.Rows {
		y, err := evaluate.ParseLabel(r[li])
		if err != nil {
			return fmt.Errorf("line %d: %w", t.Lines[i], err)
		}
		labels[i] = y
	}
	fmt.Fprintf(stderr, "%s: %d rows (%d bad), %d positives\n", *input, len(t.Rows), len(bad), count(labels))
	var aps, aucs []float64
	for _, s := range offline.SplitList(*seeds) {
		var seed uint64
		fmt.Sscan(s, &seed)
		train, test := evaluate.StratifiedSplit(labels, 0.7, seed)
		trainRows := pick(t.Rows, train)
		schema := features.InferSchema(t.Names, trainRows, features.InferOptions{Ignore: hide})
		c := cfg
		c.Seed = seed
		if *verbose {
			c.Progress = func(e ae.EpochStats) {
				fmt.Fprintf(stderr, "  epoch %d train %.4f val %.4f %.0f rows/s\n", e.Epoch, e.TrainLoss, e.ValLoss, e.RowsPerSec)
			}
		}
		b, err := model.Fit(schema, features.Project(schema, t.Names, trainRows), model.FitOptions{AE: c, Encoder: features.EncoderOptions{MaxLevels: *maxLevels}})
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		testRows := features.Project(schema, t.Names, pick(t.Rows, test))
		scores := make([]float64, len(testRows))
		sc := b.NewScorer(1024)
		for from := 0; from < len(testRows); from += 1024 {
			n := min(1024, len(testRows)-from)
			for i := range n {
				sc.SetRow(i, testRows[from+i])
			}
			for i, v := range sc.Score(n) {
				scores[from+i] = float64(v)
			}
		}
		y := make([]bool, len(test))
		for i, r := range test {
			y[i] = labels[r]
		}
		ap, auc := evaluate.AveragePrecision(scores, y), evaluate.ROCAUC(scores, y)
		aps, aucs = append(aps, ap), append(aucs, auc)
		fmt.Fprintf(stderr, "seed %d: AUPRC %.4f ROC-AUC %.4f (%d epochs, best %d, %.1fs)\n", seed, ap, auc, b.Meta.Epochs, b.Meta.BestEpoch, b.Meta.Duration)
	}
	fmt.Fprintf(stdout, "%s\tAUPRC %.4f ± %.4f\tROC-AUC %.4f ± %.4f\n", *input, mean(aps), std(aps), mean(aucs), std(aucs))
	return nil
}

func pick(rows [][]string, idx []int) [][]string {
	out := make([][]string, len(idx))
	for i, j := range idx {
		out[i] = rows[j]
	}
	return out
}

func count(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func std(x []float64) float64 {
	m := mean(x)
	s := 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(x)))
}
