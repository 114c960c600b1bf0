package offline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// entityScores holds the entity values of an input's records, in input
// order (record k's are vals[k*E:(k+1)*E] for E entity fields), from one
// replay of the history and the input together in event-time order.
type entityScores struct {
	v    *model.EntityView
	txs  []model.Tx // per record; a bad record's has no time
	vals []model.EntityValue
}

// replayEntities reads the input once for its entities, times and amounts
// (src: the whole input, or nil to open path again), replays it after
// and among the history files' records in event-time order, and returns
// each input record's entity values. Records are counted as the scoring
// pass counts them, bad ones included, so the k-th of each pass agree.
func replayEntities(ctx context.Context, v *model.EntityView, schema *features.Schema, names []string, path string, src []byte, history []string, stdin io.Reader, log io.Writer) (*entityScores, error) {
	var r io.Reader
	var format features.Format
	if src != nil {
		r, format = bytes.NewReader(src), features.FormatFor(path, src)
	} else {
		in, err := openInput(path, stdin)
		if err != nil {
			return nil, err
		}
		defer in.close()
		r, format = in.r, in.format
	}
	rr, err := features.NewRowReader(r, format, names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var txs []model.Tx
	for {
		row, _, err := rr.Next()
		if err == io.EOF {
			break
		}
		var re *features.RowError
		if errors.As(err, &re) {
			txs = append(txs, model.Tx{Keys: make([]string, len(v.Part.Fields))})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var tx model.Tx
		v.Read(row, &tx)
		for i, k := range tx.Keys {
			tx.Keys[i] = strings.Clone(k)
		}
		// tx.Cats are fixed-size copies already.
		txs = append(txs, tx)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hist, err := readHistory(ctx, history, schema, stdin, log)
	if err != nil {
		return nil, err
	}
	all := make([]model.Tx, len(hist), len(hist)+len(txs))
	for i, row := range hist {
		v.Read(row, &all[i])
	}
	all = append(all, txs...)
	E := len(v.Part.Fields)
	es := &entityScores{v: v, txs: txs, vals: make([]model.EntityValue, len(txs)*E)}
	rep := v.NewReplay()
	buf := make([]model.EntityValue, E)
	for _, i := range model.ReplayOrder(all) {
		rep.Step(&all[i], buf)
		if k := i - len(hist); k >= 0 {
			copy(es.vals[k*E:], buf)
		}
	}
	fmt.Fprintf(log, "entities: replayed %d history and %d input records in event-time order (%s)\n", len(hist), len(txs), describeEntities(v, rep))
	return es, nil
}

func describeEntities(v *model.EntityView, rep *model.Replay) string {
	var parts []string
	for e, n := range rep.Entities() {
		parts = append(parts, fmt.Sprintf("%d %s", n, v.Part.Fields[e]))
	}
	return strings.Join(parts, ", ")
}

// join returns record k's joined score and the source that set it (-1:
// the DAE score stands; see model.EntityView.Join).
func (es *entityScores) join(k int, dae float32) (float32, int) {
	E := len(es.v.Part.Fields)
	s, e := es.v.Join(float64(dae), es.vals[k*E:(k+1)*E])
	return float32(s), e
}

// reason is the analyst's reason for score source src (join's) of
// record k.
func (es *entityScores) reason(k, src int) string {
	E := len(es.v.Part.Fields)
	tx := &es.txs[k]
	e, cat := es.v.Source(src)
	if cat >= 0 {
		note, _, _ := es.v.CategoryReason(cat, tx.Keys[e], tx, es.vals[k*E+e])
		return note
	}
	return es.v.Reason(e, tx.Keys[e], tx.Amount, es.vals[k*E+e])
}
