package trainer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// fitEntity gives cand its entity score (model.Bundle.FitEntityTxs), as
// trainer fit --history does offline: it reads every transaction from
// HistoryWindow before the window's start to the topic's end (not the
// round's sample: a habit needs all of an entity's transactions), at most
// EntityMaxRows of the newest, and replays them in event-time order. Those
// timestamped before since only warm the entities' states; the window's
// fit the tails, except those whose latest label is fraud (book). It
// returns the fit's line.
func (t *Trainer) fitEntity(ctx context.Context, cand *model.Bundle, since time.Time, book *labels.Book) (string, error) {
	v, err := cand.EntityReader()
	if v == nil || err != nil {
		return "", err
	}
	s := &cand.Encoder.Schema
	cols := v.Columns()
	names := make([]string, 0, len(cols)+1)
	for _, c := range cols {
		names = append(names, s.Fields[c].Name)
	}
	// pos[c]: where schema column c is in a decoded row (-1: not read).
	pos := make([]int, len(s.Fields))
	for i := range pos {
		pos[i] = -1
	}
	for i, c := range cols {
		pos[c] = i
	}
	idCol := -1
	if book != nil && s.Index(s.IDField) >= 0 {
		idCol = len(names)
		names = append(names, s.IDField)
	}
	dec := features.NewRowDecoder(names)
	row := make([]string, len(names))
	raw := func(c int) string {
		if p := pos[c]; p >= 0 {
			return row[p]
		}
		return ""
	}
	var txs []model.Tx
	var warm []bool
	read, bad, fraud := 0, 0, 0
	total, err := t.admin.ScanWindow(ctx, t.cfg.Topic, since.Add(-t.cfg.HistoryWindow), t.cfg.EntityMaxRows, func(value []byte, at time.Time) error {
		read++
		if err := dec.Decode(value, row); err != nil {
			bad++
			return nil
		}
		var tx model.Tx
		v.ReadRaw(raw, &tx)
		for e, k := range tx.Keys {
			tx.Keys[e] = strings.Clone(k) // row's strings point into value
		}
		w := at.Before(since)
		if !w && idCol >= 0 && book.Fraud(row[idCol]) {
			w = true
			fraud++
		}
		txs, warm = append(txs, tx), append(warm, w)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("trainer: read the entity history of %s: %w", t.cfg.Topic, err)
	}
	line, err := cand.FitEntityTxs(txs, warm)
	if err != nil {
		return "", err
	}
	var notes []string
	if int64(read) < total {
		notes = append(notes, fmt.Sprintf("%d older transactions left out (EntityMaxRows %d)", total-int64(read), t.cfg.EntityMaxRows))
	}
	if bad > 0 {
		notes = append(notes, fmt.Sprintf("%d records unreadable", bad))
	}
	if fraud > 0 {
		notes = append(notes, fmt.Sprintf("%d labelled fraud only stepped the states", fraud))
	}
	if len(notes) > 0 {
		line += "; " + strings.Join(notes, "; ")
	}
	return line, nil
}
