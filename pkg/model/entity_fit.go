package model

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/features"
)

// FitEntity gives b an entity part for its schema's entity_fields (none:
// b is left as it is): it replays history and rows (both in schema order)
// together in event-time order, history only warming the entities'
// states, and fits each entity's score tail on the values rows get. It
// returns a line that says what it fitted, or why nothing.
func (b *Bundle) FitEntity(rows, history [][]string) (string, error) {
	v, err := b.EntityReader()
	if v == nil || err != nil {
		return noEntityFields, err
	}
	txs := make([]Tx, len(history)+len(rows))
	warm := make([]bool, len(txs))
	for i := range txs {
		if i < len(history) {
			v.Read(history[i], &txs[i])
			warm[i] = true
		} else {
			v.Read(rows[i-len(history)], &txs[i])
		}
	}
	return b.FitEntityTxs(txs, warm)
}

const noEntityFields = "no entity fields in the schema: the score is the DAE's alone"

// EntityReader returns a view that reads transactions (Read, ReadRaw,
// Columns) for FitEntityTxs: nil, nil when the schema names no
// entity_fields. Its part is provisional; only reading is meaningful.
func (b *Bundle) EntityReader() (*EntityView, error) {
	s := &b.Encoder.Schema
	if len(s.EntityFields) == 0 {
		return nil, nil
	}
	p := &EntityPart{Fields: s.EntityFields, Amount: s.AmountField, Time: s.TimeField,
		Windows: entity.DefaultWindows, Window: DefaultEntityWindow}
	if err := p.checkShape(s); err != nil {
		return nil, err
	}
	// Candidates for categorical novelty: every categorical field.
	var cands []string
	for _, f := range s.Fields {
		if f.Kind == features.Categorical && !slices.Contains(p.Fields, f.Name) {
			cands = append(cands, f.Name)
		}
	}
	return newEntityView(p, s, b.Calibration, cands)
}

// FitEntityTxs is FitEntity over transactions already read (by
// EntityReader's view): all of them step the entities' states in
// event-time order; those with warm[i] set (warm may be nil or short:
// false) only warm them, the others' values fit the tails. It keeps no
// reference to txs.
func (b *Bundle) FitEntityTxs(txs []Tx, warm []bool) (string, error) {
	v, err := b.EntityReader()
	if v == nil || err != nil {
		return noEntityFields, err
	}
	p := v.Part
	isWarm := func(i int) bool { return i < len(warm) && warm[i] }
	// fit[i]: the position among the fitted rows of tx i, -1 for warm-up.
	fit := make([]int, len(txs))
	var amounts []float64 // the fitted rows'
	for i := range txs {
		fit[i] = -1
		if !isWarm(i) {
			fit[i] = len(amounts)
			amounts = append(amounts, txs[i].Amount)
		}
	}
	p.Rows, p.HistoryRows = len(amounts), len(txs)-len(amounts)
	scores := make([][]float64, len(p.Fields))
	ratios := make([][]float64, len(p.Fields))
	for e := range ratios {
		scores[e] = make([]float64, len(amounts))
		ratios[e] = make([]float64, len(amounts))
	}
	// The categorical fields nearly constant per entity on the fitted rows
	// join the replay: a view counting them, each transaction's values
	// mapped to its fields.
	cats, catWhat := constantCategories(v, txs, fit)
	p.Categories = cats
	rv, err := newEntityView(p, &b.Encoder.Schema, b.Calibration, nil)
	if err != nil {
		return "", err
	}
	catScores := make([][]float64, len(cats))
	for c := range catScores {
		catScores[c] = make([]float64, len(amounts))
	}
	r := rv.NewReplay()
	vals := make([]EntityValue, len(p.Fields))
	var tx Tx
	for _, i := range ReplayOrder(txs) {
		tx = txs[i]
		tx.Cats = tx.Cats[:0:0]
		for _, f := range rv.catFields {
			j := slices.Index(v.catFields, f)
			var k entity.CategoryKey
			if j < len(txs[i].Cats) {
				k = txs[i].Cats[j]
			}
			tx.Cats = append(tx.Cats, k)
		}
		r.Step(&tx, vals)
		if k := fit[i]; k >= 0 {
			for e := range vals {
				scores[e][k] = vals[e].Score
				ratios[e][k] = vals[e].Ratio
				for n, c := range rv.catOf[e] {
					catScores[c][k] = vals[e].CatScore[n]
				}
			}
		}
	}
	var kept, judged []string
	var tails []entity.Tail
	for e, f := range p.Fields {
		x := explained(ratios[e], amounts)
		t, ok := entity.NewTail(scores[e])
		if !ok || !(x >= minExplained) {
			judged = append(judged, fmt.Sprintf("%s %.2f, left out", f, x))
			continue
		}
		judged = append(judged, fmt.Sprintf("%s %.2f", f, x))
		kept, tails = append(kept, f), append(tails, t)
	}
	what := fmt.Sprintf("share of the log-amount's variance the entity's %s habit explains: %s", windowWords(p.Window), strings.Join(judged, "; "))
	if len(kept) == 0 {
		return fmt.Sprintf("no entity score (%s; %.2f needed)", what, minExplained), nil
	}
	p.Fields, p.Tails = kept, tails
	p.Categories = nil
	var catKept []string
	for c, cat := range cats {
		t, ok := entity.NewTail(catScores[c])
		if !ok || !slices.Contains(kept, cat.Entity) {
			continue
		}
		cat.Tail = t
		p.Categories = append(p.Categories, cat)
		catKept = append(catKept, cat.Field+" of "+cat.Entity)
	}
	b.Entity = p
	novelty := "no categorical novelty"
	if len(catKept) > 0 {
		novelty = "the novelty of " + strings.Join(catKept, ", ")
	}
	return fmt.Sprintf("entity score: %s relative to the %s typical amount of %s, and %s, fitted on %d rows after %d history rows (%s; entities whose top value covers %.0f%% of %d or more transactions: %s)",
		p.Amount, windowWords(p.Window), strings.Join(p.Fields, ", "), novelty, p.Rows, p.HistoryRows, what, 100*minTopShare, minCatRows, catWhat), nil
}

// A categorical field is counted for an entity field when, among the
// entities with minCatRows or more fitted rows, at least minConstant of
// them have a top value covering minTopShare of their rows: it is then
// nearly constant per entity, and a value new or rare for its entity is
// strange (the generator's card testing moves merchants to a category
// they never had). A card's categories vary and are left out.
const (
	minCatRows  = 10
	minTopShare = 0.9
	minConstant = 0.5
)

// constantCategories picks, per entity field, up to entity.MaxCategories
// of v's categorical fields nearly constant per entity on the fitted rows
// (fit[i] >= 0), the most constant first, and says what it measured.
func constantCategories(v *EntityView, txs []Tx, fit []int) ([]EntityCategory, string) {
	var out []EntityCategory
	var what []string
	for e, ef := range v.Part.Fields {
		type cand struct {
			field string
			share float64
		}
		var cs []cand
		for j, cf := range v.catFields {
			counts := map[string]map[entity.CategoryKey]int{}
			for i := range txs {
				tx := &txs[i]
				if fit[i] < 0 || !tx.Usable(e) || j >= len(tx.Cats) || tx.Cats[j].Missing() {
					continue
				}
				m := counts[tx.Keys[e]]
				if m == nil {
					m = map[entity.CategoryKey]int{}
					counts[tx.Keys[e]] = m
				}
				m[tx.Cats[j]]++
			}
			var judged, constant int
			distinct := map[entity.CategoryKey]bool{}
			for _, m := range counts {
				n, top := 0, 0
				for k, c := range m {
					n, top = n+c, max(top, c)
					distinct[k] = true
				}
				if n >= minCatRows {
					judged++
					if float64(top) >= minTopShare*float64(n) {
						constant++
					}
				}
			}
			if judged == 0 || len(distinct) < 2 {
				continue
			}
			share := float64(constant) / float64(judged)
			what = append(what, fmt.Sprintf("%s of %s %.2f", cf, ef, share))
			if share >= minConstant {
				cs = append(cs, cand{cf, share})
			}
		}
		slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(b.share, a.share) })
		for _, c := range cs[:min(len(cs), entity.MaxCategories)] {
			out = append(out, EntityCategory{Entity: ef, Field: c.field})
		}
	}
	if len(what) == 0 {
		return out, "none"
	}
	return out, strings.Join(what, "; ")
}

// minExplained is the share of the log-amount's variance an entity's
// typical amount must explain for its ratio to be a score. A card's habit
// does (handbook customers: 0.52); a terminal serves everyone's amounts,
// so its ratio is noise (handbook terminals: -0.16, and joining them cost
// AUPRC 0.317 against 0.330 for customers alone).
const minExplained = 0.1

// explained is 1 - var(ratio)/var(log1p(amount)) over the transactions
// with a ratio: the share of the amounts' spread that the entity's typical
// amount accounts for (NaN with fewer than two).
func explained(ratio, amount []float64) float64 {
	var n, sr, srr, sa, saa float64
	for i, r := range ratio {
		if math.IsNaN(r) {
			continue
		}
		la := math.Log1p(amount[i])
		n++
		sr, srr = sr+r, srr+r*r
		sa, saa = sa+la, saa+la*la
	}
	if n < 2 {
		return math.NaN()
	}
	vr, va := srr/n-(sr/n)*(sr/n), saa/n-(sa/n)*(sa/n)
	if !(va > 0) {
		return math.NaN()
	}
	return 1 - vr/va
}

// ReplayOrder is the order in which transactions step the entities'
// states: by event time, those with equal times (and those without one,
// first) in the order given.
func ReplayOrder(txs []Tx) []int {
	idx := make([]int, len(txs))
	for i := range idx {
		idx[i] = i
	}
	key := func(i int) int64 {
		if !txs[i].HasAt {
			return math.MinInt64
		}
		return txs[i].At.UnixMilli()
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(key(a), key(b)) })
	return idx
}

// Replay holds the entities' states in memory, for replaying a file.
type Replay struct {
	v      *EntityView
	states []map[string]*entity.State
}

// NewReplay starts a replay with no history.
func (v *EntityView) NewReplay() *Replay {
	r := &Replay{v: v, states: make([]map[string]*entity.State, len(v.keyCols))}
	for e := range r.states {
		r.states[e] = map[string]*entity.State{}
	}
	return r
}

// Step writes each entity's value for tx into vals (NaN for an entity
// the transaction lacks, or without an event time) and adds tx to the
// entities' states.
func (r *Replay) Step(tx *Tx, vals []EntityValue) {
	for e := range vals {
		if !tx.Usable(e) {
			vals[e] = NoEntityValue()
			continue
		}
		st := r.states[e][tx.Keys[e]]
		if st == nil {
			st = &entity.State{}
			r.states[e][tx.Keys[e]] = st
		}
		vals[e] = r.v.Step(e, st, tx)
	}
}

// Entities is the number of entities per field the replay holds.
func (r *Replay) Entities() []int {
	out := make([]int, len(r.states))
	for e, m := range r.states {
		out[e] = len(m)
	}
	return out
}

// ReplayTxs replays txs, read by reader (EntityReader's view of b's
// schema), through b's entity part in event-time order, stepping the
// states as the scorers step them, and returns the replay that holds them
// (nil, nil when b has no entity part). step, when not nil, sees each
// transaction i as b's part reads it and its values, after it stepped.
func (b *Bundle) ReplayTxs(reader *EntityView, txs []Tx, step func(i int, tx *Tx, vals []EntityValue)) (*Replay, error) {
	v, err := b.NewEntityView()
	if v == nil || err != nil {
		return nil, err
	}
	keyFrom := make([]int, len(v.Part.Fields))
	for e, f := range v.Part.Fields {
		if keyFrom[e] = slices.Index(reader.Part.Fields, f); keyFrom[e] < 0 {
			return nil, fmt.Errorf("model: the transactions were read without entity field %s", f)
		}
	}
	catFrom := make([]int, len(v.catFields))
	for k, f := range v.catFields {
		catFrom[k] = slices.Index(reader.catFields, f)
	}
	r := v.NewReplay()
	vals := make([]EntityValue, len(v.Part.Fields))
	var tx Tx
	for _, i := range ReplayOrder(txs) {
		src := &txs[i]
		tx.At, tx.HasAt, tx.Amount = src.At, src.HasAt, src.Amount
		tx.Keys, tx.Cats = tx.Keys[:0], tx.Cats[:0]
		for _, j := range keyFrom {
			tx.Keys = append(tx.Keys, src.Keys[j])
		}
		for _, j := range catFrom {
			var k entity.CategoryKey
			if j >= 0 && j < len(src.Cats) {
				k = src.Cats[j]
			}
			tx.Cats = append(tx.Cats, k)
		}
		r.Step(&tx, vals)
		if step != nil {
			step(i, &tx, vals)
		}
	}
	return r, nil
}

// Each calls fn with every entity's field, key and state the replay holds.
func (r *Replay) Each(fn func(field, key string, st *entity.State)) {
	for e, m := range r.states {
		for k, st := range m {
			fn(r.v.Part.Fields[e], k, st)
		}
	}
}
