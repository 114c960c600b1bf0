package trainer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

// fitEntity gives cand its entity score (model.Bundle.FitEntityTxs), as
// trainer fit --history does offline: it reads every transaction from
// HistoryWindow before the window's start to the topic's end (not the
// round's sample: a habit needs all of an entity's transactions), at most
// EntityMaxRows of the newest, and replays them in event-time order. Those
// timestamped before since only warm the entities' states; the window's
// fit the tails, except those whose latest label is fraud (book). It
// returns the fit's line and what it read, for seedEntities.
func (t *Trainer) fitEntity(ctx context.Context, cand *model.Bundle, since time.Time, book *labels.Book) (string, *entityReplay, error) {
	v, err := cand.EntityReader()
	if v == nil || err != nil {
		return "", nil, err
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
	var positions []pipeline.Position
	read, bad, fraud := 0, 0, 0
	total, err := t.admin.ScanWindow(ctx, t.cfg.Topic, since.Add(-t.cfg.HistoryWindow), t.cfg.EntityMaxRows, func(value []byte, at time.Time, partition int, offset int64) error {
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
		positions = append(positions, pipeline.Position{Partition: int32(partition), Offset: offset})
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("trainer: read the entity history of %s: %w", t.cfg.Topic, err)
	}
	line, err := cand.FitEntityTxs(txs, warm)
	if err != nil {
		return "", nil, err
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
	return line, &entityReplay{reader: v, txs: txs, pos: positions}, nil
}

// entityReplay is what a round's entity fit read from the topic.
type entityReplay struct {
	reader *model.EntityView
	txs    []model.Tx
	pos    []pipeline.Position
}

// seedEntities stores the states of the entities rep's transactions step
// under the promoted model b where the store has none yet, or holds one
// the replay supersedes (it added every position the stored one did and
// counts more history), with their positions (pipeline.SeedEntities): a
// new deployment's scorers, or those of one whose Redis came back empty,
// then start from weeks of history, or get it back at the next round, and
// count none of those transactions again. A failure is logged, not
// returned: the model is promoted and the scorers work without the seed.
func (t *Trainer) seedEntities(ctx context.Context, b *model.Bundle, rep *entityReplay) string {
	if t.cfg.Entities == nil || rep == nil || b.Entity == nil {
		return ""
	}
	seeded, replaced, kept, err := pipeline.SeedEntities(ctx, t.cfg.Entities, b, rep.reader, rep.txs, rep.pos)
	if err != nil {
		t.log.Warn("entity states not seeded; the scorers start those entities from their own transactions", "seeded", seeded, "replaced", replaced, "err", err)
		return fmt.Sprintf("seeding failed after %d entity states (%d replaced): %v", seeded+replaced, replaced, err)
	}
	t.log.Info("entity states seeded", "seeded", seeded, "replaced", replaced, "already_stored", kept)
	if replaced > 0 {
		return fmt.Sprintf("%d entity states seeded, %d replaced by the replay's longer history, %d already stored", seeded, replaced, kept)
	}
	return fmt.Sprintf("%d entity states seeded, %d already stored", seeded, kept)
}
