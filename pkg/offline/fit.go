package offline

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// SchemaConfig configures InferSchemaFile.
type SchemaConfig struct {
	Input  string // file, or "-" for standard input
	Ignore string // comma-separated fields to leave out
}

// InferSchemaFile prints the inferred schema of a file as editable JSON.
func InferSchemaFile(ctx context.Context, cfg SchemaConfig, stdin io.Reader, stdout, log io.Writer) error {
	t, _, err := readTable(ctx, cfg.Input, stdin, log)
	if err != nil {
		return err
	}
	s := features.InferSchema(t.Names, t.Rows, features.InferOptions{Ignore: SplitList(cfg.Ignore)})
	features.InferEntities(s, t.Rows)
	return s.WriteJSON(stdout)
}

// FitConfig configures FitFile.
type FitConfig struct {
	Input  string // training records (CSV or JSON Lines), "-" for standard input
	Out    string // model bundle path
	Schema string // schema file; inferred from the input when empty
	Ignore string // comma-separated fields to leave out of an inferred schema
	// MaxLevels caps categorical vocabularies (0: default 50).
	MaxLevels int
	AE        ae.Config
	// SigningKey is a private key file (PEM PKCS#8 ed25519) that signs
	// the bundle; empty: unsigned.
	SigningKey string
	// History files (same schema) replayed before and among the input in
	// event-time order to warm the entities' states; never trained on.
	History []string
}

// FitFile trains a model bundle on a file and writes it to cfg.Out.
func FitFile(ctx context.Context, cfg FitConfig, stdin io.Reader, log io.Writer) (*model.Bundle, error) {
	if cfg.Out == "" {
		return nil, fmt.Errorf("no output given (use --out model.bin)")
	}
	var key *model.SigningKey
	if cfg.SigningKey != "" { // a bad key fails now, not after training
		k, err := model.LoadSigningKey(cfg.SigningKey)
		if err != nil {
			return nil, err
		}
		key = k
	}
	t, bad, err := readTable(ctx, cfg.Input, stdin, log)
	if err != nil {
		return nil, err
	}
	var s *features.Schema
	if cfg.Schema != "" {
		f, err := os.Open(cfg.Schema)
		if err != nil {
			return nil, err
		}
		s, err = features.ReadSchema(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Schema, err)
		}
	} else {
		s = features.InferSchema(t.Names, t.Rows, features.InferOptions{Ignore: SplitList(cfg.Ignore)})
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("inferred schema: %w (write one with `trainer schema` and pass it with --schema)", err)
		}
	}
	for _, f := range s.Fields {
		if f.Kind.Learned() {
			fmt.Fprintf(log, "field %-24s %-11s %s\n", f.Name, f.Kind, f.Reason)
		} else {
			fmt.Fprintf(log, "field %-24s %-11s (not learned: %s)\n", f.Name, f.Kind, f.Reason)
		}
	}
	rows := features.Project(s, t.Names, t.Rows)
	if cfg.Schema == "" {
		if notes := features.InferEntities(s, rows); len(notes) > 0 {
			fmt.Fprintf(log, "entities (amount %s over %s): %s\n", s.AmountField, s.TimeField, strings.Join(notes, ", "))
		}
	}
	if len(cfg.History) > 0 && len(s.EntityFields) == 0 {
		fmt.Fprintln(log, "warning: --history is unused: the schema names no entity_fields")
	}
	aeCfg := cfg.AE
	if aeCfg.Progress == nil {
		aeCfg.Progress = func(e ae.EpochStats) {
			mark := ""
			if e.Best {
				mark = " *"
			}
			trim := ""
			if e.Trimmed > 0 {
				trim = fmt.Sprintf(" trimmed=%d", e.Trimmed)
			}
			fmt.Fprintf(log, "epoch %3d  train %.4f  val %.4f  %.0f rows/s%s%s\n", e.Epoch, e.TrainLoss, e.ValLoss, e.RowsPerSec, trim, mark)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := model.Fit(s, rows, model.FitOptions{
		Encoder: features.EncoderOptions{MaxLevels: cfg.MaxLevels},
		AE:      aeCfg, Source: cfg.Input, BadRows: bad,
	})
	if err != nil {
		return nil, err
	}
	if len(s.EntityFields) > 0 {
		history, err := readHistory(ctx, cfg.History, s, stdin, log)
		if err != nil {
			return nil, err
		}
		line, err := b.FitEntity(rows, history)
		if err != nil {
			return nil, err
		}
		fmt.Fprintln(log, line)
	}
	if err := b.WriteSignedFile(cfg.Out, key); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "wrote %s: %s\n", cfg.Out, b.Describe())
	if key != nil {
		fmt.Fprintf(log, "signed by key %s\n", key.ID())
	}
	return b, nil
}

// readHistory reads history files into rows in the schema's order.
func readHistory(ctx context.Context, paths []string, s *features.Schema, stdin io.Reader, log io.Writer) ([][]string, error) {
	var rows [][]string
	for _, p := range paths {
		t, _, err := readTable(ctx, p, stdin, log)
		if err != nil {
			return nil, fmt.Errorf("--history: %w", err)
		}
		rows = append(rows, features.Project(s, t.Names, t.Rows)...)
	}
	return rows, nil
}
