package offline

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/evaluate"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

const batch = 1024

// record is one input record as the batch loop sees it.
type record struct {
	line  int
	bad   *features.RowError
	extra []string // values of extra columns (e.g. the label)
	ord   int      // the record's position in the input, bad ones counted
	// dae is the DAE's score; the score emit gets is joined to the entity
	// score when the bundle has one (then entity >= 0 names the entity
	// that set it).
	dae    float32
	entity int
}

// entityOptions say how scoreStream treats a bundle's entity part.
type entityOptions struct {
	History []string // files replayed before the input to warm the states
	DAEOnly bool     // score by the DAE alone, ignoring the entity part
}

// scoreStream reads the input with the model's schema (plus extra columns),
// scores it in batches and calls emit once per record, in input order.
// Bad records reach emit with r.bad set and a NaN score. With an entity
// part (unless eo.DAEOnly), the input is first read once for the entity
// states (replayed in event-time order after eo.History), and the scores
// emit gets are the joined ones; es is then non-nil, for the reasons.
func scoreStream(ctx context.Context, b *model.Bundle, path string, stdin io.Reader, extra []string, eo entityOptions, log io.Writer,
	emit func(sc *model.Scorer, slot int, score float32, r *record, es *entityScores) error) (good, bad int, err error) {
	var v *model.EntityView
	if !eo.DAEOnly {
		if v, err = b.NewEntityView(); err != nil {
			return 0, 0, err
		}
	}
	if v == nil && len(eo.History) > 0 {
		fmt.Fprintln(log, "warning: --history is unused: the model has no entity score")
	}
	in, err := openInput(path, stdin)
	if err != nil {
		return 0, 0, err
	}
	defer in.close()
	names := append(b.Encoder.Schema.Names(), extra...)
	var es *entityScores
	if v != nil {
		// Entity states need the records in event-time order, the output
		// needs input order: a first pass replays, the second scores.
		var src []byte
		if path == "-" {
			if src, err = io.ReadAll(in.r); err != nil {
				return 0, 0, err
			}
			in.r = bytes.NewReader(src)
		}
		if es, err = replayEntities(ctx, v, &b.Encoder.Schema, names, path, src, eo.History, stdin, log); err != nil {
			return 0, 0, err
		}
	}
	rr, err := features.NewRowReader(in.r, in.format, names)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkColumns(rr, b); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if ab, ok := rr.(interface{ Absent() []string }); ok {
		for _, name := range ab.Absent() {
			if slices.Contains(extra, name) {
				return 0, 0, fmt.Errorf("%s: the header has no column %q; its columns are %s", path, name, strings.Join(in.columns(), ", "))
			}
		}
	}
	nSchema := len(b.Encoder.Schema.Fields)
	sc := b.NewScorer(batch)
	// Rows are copied: readers reuse their buffers.
	rows := make([][]string, batch)
	recs := make([]record, 0, batch)
	slotOf := make([]int, 0, batch)
	br := &badRows{w: log}
	flush := func() error {
		n := 0
		for _, s := range slotOf {
			if s >= 0 {
				n++
			}
		}
		var scores []float32
		if n > 0 {
			scores = sc.Score(n)
		}
		for i := range recs {
			s := slotOf[i]
			score := float32(math.NaN())
			if s >= 0 {
				score = scores[s]
			}
			r := &recs[i]
			r.dae, r.entity = score, -1
			if es != nil && s >= 0 {
				if r.ord >= len(es.txs) {
					return fmt.Errorf("%s changed while it was read (record %d was not there on the first pass)", path, r.ord+1)
				}
				score, r.entity = es.join(r.ord, score)
			}
			if err := emit(sc, s, score, r, es); err != nil {
				return err
			}
		}
		recs, slotOf = recs[:0], slotOf[:0]
		return ctx.Err()
	}
	slot := 0
	for {
		row, line, err := rr.Next()
		if err == io.EOF {
			break
		}
		var re *features.RowError
		if errors.As(err, &re) {
			br.add(re)
			recs = append(recs, record{line: re.Line, bad: re, ord: good + bad})
			slotOf = append(slotOf, -1)
			bad++
		} else if err != nil {
			return good, bad, fmt.Errorf("%s: %w", path, err)
		} else {
			cp := rows[slot][:0]
			for _, v := range row {
				cp = append(cp, strings.Clone(v))
			}
			rows[slot] = cp
			sc.SetRow(slot, cp[:nSchema])
			recs = append(recs, record{line: line, extra: cp[nSchema:], ord: good + bad})
			slotOf = append(slotOf, slot)
			slot++
			good++
		}
		if slot == batch || len(recs) >= 4*batch {
			if err := flush(); err != nil {
				return good, bad, err
			}
			slot = 0
		}
	}
	if err := flush(); err != nil {
		return good, bad, err
	}
	if good+bad == 0 {
		return 0, 0, fmt.Errorf("%s: no records (an empty input)", path)
	}
	br.summary("scored "+path, good)
	warnAbsent(rr, b, good, log)
	if pr, ok := rr.(interface{ Present() []int }); ok && good > 0 {
		for i, name := range extra {
			if counts := pr.Present(); nSchema+i < len(counts) && counts[nSchema+i] == 0 {
				return good, bad, fmt.Errorf("%s: no record has the key %q; the first record's keys are %s", path, name, strings.Join(in.columns(), ", "))
			}
		}
	}
	return good, bad, nil
}

// warnAbsent tells when a learned field never appeared in a JSON Lines
// input: every record then scored it as missing, which is almost always a
// renamed key rather than data.
func warnAbsent(rr features.RowReader, b *model.Bundle, good int, log io.Writer) {
	pr, ok := rr.(interface{ Present() []int })
	if !ok || good == 0 {
		return
	}
	counts := pr.Present()
	for i, f := range b.Encoder.Schema.Fields {
		if f.Kind.Learned() && i < len(counts) && counts[i] == 0 {
			fmt.Fprintf(log, "warning: no record carried %q, which the model learned from: it was scored as missing everywhere (a renamed key?)\n", f.Name)
		}
	}
}

// ScoreConfig configures ScoreFile.
type ScoreConfig struct {
	Model string
	// VerifyKeys are public key files (PEM); when given, Model must be
	// signed by one of them (see model.Keyring).
	VerifyKeys []string
	Input      string
	Out        string // "-" or empty for standard output
	// TopK reasons per row (default 3).
	TopK int
	// Embed adds the bottleneck vector as columns emb_0 … emb_{k-1}.
	Embed bool
	// History files warm the entity states (see FitConfig.History).
	History []string
	// DAEOnly scores by the DAE alone when the model has an entity part.
	DAEOnly bool
}

// ScoreFile writes one output row per input record, in input order: the
// score first, then the transaction id (when the schema has one), the top
// reasons (field, contribution, observed, expected, the probability the
// model gave an observed category, a note such as "not seen in training";
// see model.Scorer.Reasons for which fields count as reasons), optionally
// the embedding, and an error column that is non-empty for bad records.
// When the model has an entity part (and not DAEOnly), score is the joined
// score and two columns come before error: dae_score (the DAE's alone)
// and entity_reason (set when an entity's habit set the score).
func ScoreFile(ctx context.Context, cfg ScoreConfig, stdin io.Reader, stdout, log io.Writer) error {
	b, err := readModel(cfg.Model, cfg.VerifyKeys)
	if err != nil {
		return err
	}
	if cfg.TopK <= 0 {
		cfg.TopK = 3
	}
	out, err := createOutput(cfg.Out, stdout)
	if err != nil {
		return err
	}
	defer out.abort()
	w := csv.NewWriter(out)
	idCol := b.Encoder.Schema.Index(b.Encoder.Schema.IDField)
	header := []string{"score"}
	if idCol >= 0 {
		header = append(header, b.Encoder.Schema.IDField)
	}
	for k := 1; k <= cfg.TopK; k++ {
		p := "reason" + strconv.Itoa(k)
		header = append(header, p+"_field", p+"_contribution", p+"_observed", p+"_expected", p+"_probability", p+"_note")
	}
	bn := b.Model.Bottleneck
	if cfg.Embed {
		for j := range bn {
			header = append(header, "emb_"+strconv.Itoa(j))
		}
	}
	joined := b.Entity != nil && !cfg.DAEOnly
	if joined {
		header = append(header, "dae_score", "entity_reason")
	}
	header = append(header, "error")
	if err := w.Write(header); err != nil {
		return err
	}
	reasons := make([]model.Reason, 0, cfg.TopK)
	emb := make([]float32, batch*bn)
	embedded := -1
	rec := make([]string, 0, len(header))
	eo := entityOptions{History: cfg.History, DAEOnly: cfg.DAEOnly}
	_, _, err = scoreStream(ctx, b, cfg.Input, stdin, nil, eo, log, func(sc *model.Scorer, slot int, score float32, r *record, es *entityScores) error {
		rec = rec[:0]
		if slot < 0 {
			rec = append(rec, "NaN")
			for len(rec) < len(header)-1 {
				rec = append(rec, "")
			}
			rec = append(rec, r.bad.Err.Error())
			return w.Write(rec)
		}
		rec = append(rec, strconv.FormatFloat(float64(score), 'g', 6, 32))
		if idCol >= 0 {
			rec = append(rec, sc.Raw(slot, idCol))
		}
		reasons = sc.Reasons(slot, cfg.TopK, reasons)
		for _, rs := range reasons {
			prob := ""
			if rs.Probability >= 0 {
				prob = strconv.FormatFloat(float64(rs.Probability), 'g', 3, 32)
			}
			rec = append(rec, rs.Name, strconv.FormatFloat(float64(rs.Contribution), 'g', 4, 32), sc.Observed(slot, rs.Field), sc.Expected(slot, rs.Field), prob, sc.Note(slot, rs))
		}
		for len(rec) < len(header)-1-boolInt(cfg.Embed)*bn-2*boolInt(joined) {
			rec = append(rec, "")
		}
		if cfg.Embed {
			if slot == 0 || embedded < 0 {
				sc.Embed(sc.Cap(), emb)
				embedded = 1
			}
			for _, v := range emb[slot*bn : (slot+1)*bn] {
				rec = append(rec, strconv.FormatFloat(float64(v), 'g', 5, 32))
			}
		}
		if joined {
			reason := ""
			if r.entity >= 0 {
				reason = es.reason(r.ord, r.entity)
			}
			rec = append(rec, strconv.FormatFloat(float64(r.dae), 'g', 6, 32), reason)
		}
		rec = append(rec, "")
		return w.Write(rec)
	})
	if err != nil {
		return err
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return out.commit()
}

// checkColumns refuses a CSV whose header lacks a field the model learned
// from: every record would silently read it as missing.
func checkColumns(rr features.RowReader, b *model.Bundle) error {
	ab, ok := rr.(interface{ Absent() []string })
	if !ok {
		return nil
	}
	var lost []string
	for _, name := range ab.Absent() {
		if i := b.Encoder.Schema.Index(name); i >= 0 && b.Encoder.Schema.Fields[i].Kind.Learned() {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("the header lacks %s, which the model learned from (rename the columns, or train a model without them)", strings.Join(lost, ", "))
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ImputeConfig configures ImputeFile.
type ImputeConfig struct {
	Model      string
	VerifyKeys []string // as ScoreConfig's
	Input      string
	Out        string
	Iters      int // feedback rounds (default 3)
}

// ImputeFile writes the input's schema fields with missing learned fields
// filled from the reconstruction, plus a column <field>_imputed (0/1) for
// each learned field. CSV output; one row per good input record.
// Timestamps are not imputed (an hour and weekday do not make a date): a
// line on log names each timestamp field left empty and in how many records.
func ImputeFile(ctx context.Context, cfg ImputeConfig, stdin io.Reader, stdout, log io.Writer) error {
	b, err := readModel(cfg.Model, cfg.VerifyKeys)
	if err != nil {
		return err
	}
	in, err := openInput(cfg.Input, stdin)
	if err != nil {
		return err
	}
	defer in.close()
	names := b.Encoder.Schema.Names()
	rr, err := features.NewRowReader(in.r, in.format, names)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Input, err)
	}
	if err := checkColumns(rr, b); err != nil {
		return fmt.Errorf("%s: %w", cfg.Input, err)
	}
	out, err := createOutput(cfg.Out, stdout)
	if err != nil {
		return err
	}
	defer out.abort()
	w := csv.NewWriter(out)
	header := slices.Clone(names)
	for _, f := range b.Encoder.Fields {
		header = append(header, f.Name+"_imputed")
	}
	if err := w.Write(header); err != nil {
		return err
	}
	sc := b.NewScorer(batch)
	br := &badRows{w: log}
	held := make([][]string, 0, batch)
	filledCount := 0
	unfilled := make([]int, len(b.Encoder.Fields)) // missing timestamps, per learned field
	flush := func() error {
		if len(held) == 0 {
			return nil
		}
		for i, r := range held {
			sc.SetRow(i, r)
			for f, ef := range b.Encoder.Fields {
				if ef.Kind == features.Timestamp && sc.Missing(i, f) {
					unfilled[f]++
				}
			}
		}
		rows, filled := sc.Impute(len(held), cfg.Iters)
		for i, r := range rows {
			rec := r
			for _, f := range b.Encoder.Fields {
				if filled[i][f.Source] {
					rec = append(rec, "1")
					filledCount++
				} else {
					rec = append(rec, "0")
				}
			}
			if err := w.Write(rec); err != nil {
				return err
			}
		}
		held = held[:0]
		return ctx.Err()
	}
	good := 0
	for {
		row, _, err := rr.Next()
		if err == io.EOF {
			break
		}
		var re *features.RowError
		if errors.As(err, &re) {
			br.add(re)
			continue
		}
		if err != nil {
			return err
		}
		cp := make([]string, len(row))
		for i, v := range row {
			cp[i] = strings.Clone(v)
		}
		held = append(held, cp)
		good++
		if len(held) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if good == 0 {
		return fmt.Errorf("%s: no usable records (%d bad)", cfg.Input, br.count)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := out.commit(); err != nil {
		return err
	}
	br.summary("imputed "+cfg.Input, good)
	fmt.Fprintf(log, "filled %d missing values\n", filledCount)
	for f, n := range unfilled {
		if n > 0 {
			fmt.Fprintf(log, "not filled: %s was missing or unreadable in %d records (timestamps are not imputed: an hour and weekday do not make a date)\n", b.Encoder.Fields[f].Name, n)
		}
	}
	return nil
}

// EvalConfig configures EvalFile.
type EvalConfig struct {
	Model      string
	VerifyKeys []string // as ScoreConfig's
	Input      string
	Label      string // label column: 1/true/yes = fraud, 0/false/no = normal
	Plot       string // PNG path; empty for none
	// Ks for precision at k (default 100, 500, 1000).
	Ks []int
	// History and DAEOnly as ScoreConfig's.
	History []string
	DAEOnly bool
}

// EvalFile scores a labelled file and prints detection quality: ROC-AUC,
// AUPRC, precision at k and recall at alert rates 0.1%, 0.5% and 1%.
func EvalFile(ctx context.Context, cfg EvalConfig, stdin io.Reader, stdout, log io.Writer) (evaluate.Report, error) {
	b, err := readModel(cfg.Model, cfg.VerifyKeys)
	if err != nil {
		return evaluate.Report{}, err
	}
	if cfg.Label == "" {
		return evaluate.Report{}, errors.New("no label column given (use --label COLUMN)")
	}
	if i := b.Encoder.Schema.Index(cfg.Label); i >= 0 && b.Encoder.Schema.Fields[i].Kind.Learned() {
		fmt.Fprintf(log, "warning: the model learned from the label column %q; the evaluation is not unsupervised\n", cfg.Label)
	}
	if len(cfg.Ks) == 0 {
		cfg.Ks = []int{100, 500, 1000}
	}
	var scores []float64
	var labels []bool
	badLabels, noLabels := 0, 0
	eo := entityOptions{History: cfg.History, DAEOnly: cfg.DAEOnly}
	_, _, err = scoreStream(ctx, b, cfg.Input, stdin, []string{cfg.Label}, eo, log, func(_ *model.Scorer, slot int, score float32, r *record, _ *entityScores) error {
		if slot < 0 {
			return nil
		}
		// An empty label is counted, not listed: a column that is blank
		// throughout would otherwise print a line per record.
		if strings.TrimSpace(r.extra[0]) == "" {
			noLabels++
			return nil
		}
		y, err := evaluate.ParseLabel(r.extra[0])
		if err != nil {
			badLabels++
			if badLabels <= maxReported {
				fmt.Fprintf(log, "skipped record at line %d: %v\n", r.line, err)
			}
			return nil
		}
		scores = append(scores, float64(score))
		labels = append(labels, y)
		return nil
	})
	if err != nil {
		return evaluate.Report{}, err
	}
	if noLabels > 0 {
		fmt.Fprintf(log, "%d records had an empty %q and were left out\n", noLabels, cfg.Label)
	}
	if badLabels > 0 {
		fmt.Fprintf(log, "%d records had a label that is not 0/1 and were left out\n", badLabels)
	}
	if len(scores) == 0 {
		return evaluate.Report{}, fmt.Errorf("%s: no record has a usable label in %q", cfg.Input, cfg.Label)
	}
	pos := 0
	for _, y := range labels {
		if y {
			pos++
		}
	}
	// ROC-AUC, AUPRC and recall need both classes: refuse rather than print NaN.
	switch pos {
	case 0:
		return evaluate.Report{}, fmt.Errorf("%s: all %d labelled records are negatives (%q is never 1): detection quality is undefined without positives", cfg.Input, len(labels), cfg.Label)
	case len(labels):
		return evaluate.Report{}, fmt.Errorf("%s: all %d labelled records are positives (%q is never 0): detection quality is undefined without negatives", cfg.Input, len(labels), cfg.Label)
	}
	rep, err := evaluate.Evaluate(scores, labels, cfg.Ks, []float64{0.001, 0.005, 0.01})
	if err != nil {
		return rep, err
	}
	if err := rep.WriteText(stdout); err != nil {
		return rep, err
	}
	if cfg.Plot != "" {
		f, err := createOutput(cfg.Plot, stdout)
		if err != nil {
			return rep, err
		}
		defer f.abort()
		if err := evaluate.PlotPNG(f, scores, labels, "model "+b.Meta.TrainedAt.Format("2006-01-02 15:04")+" on "+cfg.Input); err != nil {
			return rep, err
		}
		if err := f.commit(); err != nil {
			return rep, err
		}
		fmt.Fprintf(log, "wrote %s\n", cfg.Plot)
	}
	return rep, nil
}

// readModel loads a bundle file, checking its signature against the keys
// in the files keyFiles names, if any.
func readModel(path string, keyFiles []string) (*model.Bundle, error) {
	keys, err := model.LoadKeyring(keyFiles)
	if err != nil {
		return nil, err
	}
	return model.ReadFileVerified(path, keys)
}
