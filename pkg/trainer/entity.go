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
	rep := newEntityReplay(v, &cand.Encoder.Schema, since, book)
	total, ends, err := t.admin.ScanWindow(ctx, t.cfg.Topic, since.Add(-t.cfg.HistoryWindow), t.cfg.EntityMaxRows, rep.add)
	if err != nil {
		return "", nil, fmt.Errorf("trainer: read the entity history of %s: %w", t.cfg.Topic, err)
	}
	rep.ends = ends
	line, err := cand.FitEntityTxs(rep.txs, rep.warm)
	if err != nil {
		return "", nil, err
	}
	var notes []string
	if int64(rep.read) < total {
		notes = append(notes, fmt.Sprintf("%d older transactions left out (EntityMaxRows %d)", total-int64(rep.read), t.cfg.EntityMaxRows))
	}
	if rep.bad > 0 {
		notes = append(notes, fmt.Sprintf("%d records unreadable", rep.bad))
	}
	if rep.fraud > 0 {
		notes = append(notes, fmt.Sprintf("%d labelled fraud only stepped the states", rep.fraud))
	}
	if len(notes) > 0 {
		line += "; " + strings.Join(notes, "; ")
	}
	return line, rep, nil
}

// entityReplay is what a round's entity replay read from the topic: the
// transactions, their positions, and where on each partition it stopped.
type entityReplay struct {
	reader *model.EntityView
	txs    []model.Tx
	warm   []bool // warm[i]: txs[i] only steps the states (FitEntityTxs)
	pos    []pipeline.Position
	ends   map[int]int64 // each partition's next offset to read

	read, bad, fraud int

	dec   *features.RowDecoder
	row   []string
	col   []int // col[c]: where schema column c is in row (-1: not read)
	idCol int   // the transaction id's place in row (-1: not read)
	since time.Time
	book  *labels.Book
}

func newEntityReplay(v *model.EntityView, s *features.Schema, since time.Time, book *labels.Book) *entityReplay {
	cols := v.Columns()
	names := make([]string, 0, len(cols)+1)
	for _, c := range cols {
		names = append(names, s.Fields[c].Name)
	}
	col := make([]int, len(s.Fields))
	for i := range col {
		col[i] = -1
	}
	for i, c := range cols {
		col[c] = i
	}
	idCol := -1
	if book != nil && s.Index(s.IDField) >= 0 {
		idCol = len(names)
		names = append(names, s.IDField)
	}
	return &entityReplay{reader: v, dec: features.NewRowDecoder(names), row: make([]string, len(names)),
		col: col, idCol: idCol, since: since, book: book}
}

// add decodes one message into the replay (a scan's fn); a message the
// decoder rejects is counted, as the scorers dead-letter it.
func (r *entityReplay) add(value []byte, at time.Time, partition int, offset int64) error {
	r.read++
	if err := r.dec.Decode(value, r.row); err != nil {
		r.bad++
		return nil
	}
	var tx model.Tx
	r.reader.ReadRaw(func(c int) string {
		if p := r.col[c]; p >= 0 {
			return r.row[p]
		}
		return ""
	}, &tx)
	for e, k := range tx.Keys {
		tx.Keys[e] = strings.Clone(k) // row's strings point into value
	}
	w := at.Before(r.since)
	if !w && r.idCol >= 0 && r.book.Fraud(r.row[r.idCol]) {
		w = true
		r.fraud++
	}
	r.txs, r.warm = append(r.txs, tx), append(r.warm, w)
	r.pos = append(r.pos, pipeline.Position{Partition: int32(partition), Offset: offset})
	return nil
}

// catchUp reads what arrived on the topic since the replay's scan (the fit,
// the gate and the promotion take seconds to minutes, and the scorers step
// busy entities meanwhile), at most a tenth of EntityMaxRows, so that the
// states seeded cover the scorers' latest positions. It returns a note for
// the round's line, empty when all was read.
func (t *Trainer) catchUp(ctx context.Context, rep *entityReplay) string {
	limit := max(t.cfg.EntityMaxRows/10, 1)
	n := len(rep.txs)
	waiting, ends, err := t.admin.ScanAfter(ctx, t.cfg.Topic, rep.ends, limit, rep.add)
	if err != nil {
		// What was read is contiguous with the scan, so it is still used.
		t.log.Warn("entity replay not caught up; states the scorers changed since stay theirs", "read", len(rep.txs)-n, "err", err)
		return fmt.Sprintf("catching up failed after %d transactions: %v", len(rep.txs)-n, err)
	}
	if waiting > int64(limit) {
		t.log.Warn("entity replay not caught up: too many transactions since its scan; states the scorers changed since stay theirs", "waiting", waiting, "limit", limit)
		return fmt.Sprintf("%d transactions arrived since the replay, more than %d to catch up", waiting, limit)
	}
	rep.ends = ends
	return ""
}

// seedEntities stores the states of the entities rep's transactions step
// under the promoted model b where the store has none yet, or holds one
// the replay supersedes (it added every position the stored one did and
// counts more history), with their positions (pipeline.SeedEntities): a
// new deployment's scorers, or those of one whose Redis came back empty,
// then start from weeks of history, or get it back at the next round, and
// count none of those transactions again. The replay first catches up
// with the topic (catchUp). A failure is logged, not returned: the model
// is promoted and the scorers work without the seed.
func (t *Trainer) seedEntities(ctx context.Context, b *model.Bundle, rep *entityReplay) string {
	if t.cfg.Entities == nil || rep == nil || b.Entity == nil {
		return ""
	}
	note := t.catchUp(ctx, rep)
	seeded, replaced, kept, err := pipeline.SeedEntities(ctx, t.cfg.Entities, b, rep.reader, rep.txs, rep.pos)
	var line string
	if err != nil {
		t.log.Warn("entity states not seeded; the scorers start those entities from their own transactions", "seeded", seeded, "replaced", replaced, "err", err)
		line = fmt.Sprintf("seeding failed after %d entity states (%d replaced): %v", seeded+replaced, replaced, err)
	} else {
		t.log.Info("entity states seeded", "seeded", seeded, "replaced", replaced, "already_stored", kept)
		line = fmt.Sprintf("%d entity states seeded", seeded)
		if replaced > 0 {
			line += fmt.Sprintf(", %d replaced by the replay's longer history", replaced)
		}
		line += fmt.Sprintf(", %d already stored", kept)
	}
	if note != "" {
		line += "; " + note
	}
	return line
}
