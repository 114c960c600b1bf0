package model

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/features"
)

// EntityPart is a bundle's entity score: for each entity field (a card, a
// terminal), the transaction's amount relative to the entity's typical
// amount over Window (entity.Ratio, shrunk by the entity's history; see
// EntityValue.Score), read as a tail probability on the training rows
// (Tails, one per field). Only entities whose habit explains a share of
// the amount's variance are kept (see FitEntity). A scorer replays transactions in
// event-time order through per-entity states (entity.State, stepped with
// Windows) and joins the smallest of these tail probabilities to the DAE
// score's (see entity.Join): a separate score, because as DAE inputs the
// habit explains an amount away that is rare for everyone.
//
// Bundles without it (older ones, schemas without entity_fields) load and
// score by the DAE alone, as before. Builds that predate it refuse bundles
// that carry it (an unknown header field), keeping their model.
type EntityPart struct {
	Fields  []string        `json:"fields"`
	Amount  string          `json:"amount"`
	Time    string          `json:"time"`
	Windows []time.Duration `json:"windows"`
	Window  time.Duration   `json:"window"`
	Tails   []entity.Tail   `json:"tails"`
	// Rows the tails were fitted on; HistoryRows only warmed the states.
	Rows        int `json:"rows"`
	HistoryRows int `json:"history_rows,omitempty"`
	// Categories: for a kept entity, a categorical field nearly constant
	// per entity (a merchant's category), read as the share of the
	// entity's history with the transaction's value (see FitEntity).
	// Absent in bundles fitted before them, which score as before.
	Categories []EntityCategory `json:"categories,omitempty"`
}

// EntityCategory is one categorical novelty score: the share of entity
// field Entity's decayed history (over the part's Window) with the
// transaction's value of Field, as 1 - share shrunk by the history like
// the ratio (EntityValue.CatScore), read as a tail probability on the
// training rows.
type EntityCategory struct {
	Entity string      `json:"entity"`
	Field  string      `json:"field"`
	Tail   entity.Tail `json:"tail"`
}

// DefaultEntityWindow is the window of the entity score: the ratio to a
// month's habit measured best on the handbook split (bench/entityexp).
const DefaultEntityWindow = 30 * 24 * time.Hour

// check refuses an entity part that the schema cannot feed.
func (p *EntityPart) check(s *features.Schema) error {
	if len(p.Tails) != len(p.Fields) {
		return fmt.Errorf("model: the entity part has %d fields and %d tails", len(p.Fields), len(p.Tails))
	}
	if err := p.checkShape(s); err != nil {
		return err
	}
	for i, t := range p.Tails {
		if err := t.Check(); err != nil {
			return fmt.Errorf("model: the entity tail of %s: %w", p.Fields[i], err)
		}
	}
	for _, c := range p.Categories {
		if err := c.Tail.Check(); err != nil {
			return fmt.Errorf("model: the entity tail of %s's %s: %w", c.Entity, c.Field, err)
		}
	}
	return nil
}

// checkShape checks all but the tails.
func (p *EntityPart) checkShape(s *features.Schema) error {
	if len(p.Fields) == 0 {
		return errors.New("model: the entity part has no fields")
	}
	for _, name := range append([]string{p.Amount, p.Time}, p.Fields...) {
		if s.Index(name) < 0 {
			return fmt.Errorf("model: the entity part reads %q, which the schema lacks", name)
		}
	}
	if ti := s.Index(p.Time); s.Fields[ti].Kind != features.Timestamp {
		return fmt.Errorf("model: the entity part's time %q is not a timestamp", p.Time)
	}
	if len(p.Windows) == 0 || len(p.Windows) > entity.MaxWindows {
		return fmt.Errorf("model: the entity part has %d windows (1 to %d)", len(p.Windows), entity.MaxWindows)
	}
	found := false
	for _, w := range p.Windows {
		if w <= 0 {
			return errors.New("model: the entity part has a window that is not positive")
		}
		found = found || w == p.Window
	}
	if !found {
		return fmt.Errorf("model: the entity score's window %v is not among the windows", p.Window)
	}
	per := map[string]int{}
	for _, c := range p.Categories {
		if !slices.Contains(p.Fields, c.Entity) {
			return fmt.Errorf("model: the entity part counts %s of %q, which is not one of its entity fields", c.Field, c.Entity)
		}
		if s.Index(c.Field) < 0 || slices.Contains(p.Fields, c.Field) {
			return fmt.Errorf("model: the entity part counts %q, which the schema lacks or which is an entity field", c.Field)
		}
		if per[c.Entity]++; per[c.Entity] > entity.MaxCategories {
			return fmt.Errorf("model: the entity part counts more than %d categorical fields of %s", entity.MaxCategories, c.Entity)
		}
	}
	return nil
}

// EntityView reads a bundle's entity part: which columns of a record (in
// schema order) it needs and how it turns an entity's state into a score.
// Nil for a bundle without an entity part. Safe for concurrent use.
type EntityView struct {
	Part    *EntityPart
	keyCols []int
	timeCol int
	amtCol  int
	layout  string
	feats   []entity.Feature // Ratio, Mean, Count over Part.Window
	dae     entity.Tail
	// Categorical fields read into Tx.Cats: those of Part.Categories,
	// then (for fitting) candidates.
	catFields []string
	catCols   []int
	catField  []int   // per Part.Categories: its index in catFields
	catOf     [][]int // per entity field: its indices in Part.Categories
	// catTags: per entity field, entity.TagOf of its counted fields in
	// catOf's order, which a stored state is aligned to before each step.
	catTags [][]uint32
}

// NewEntityView prepares the bundle's entity part for scoring; nil, nil
// when the bundle has none.
func (b *Bundle) NewEntityView() (*EntityView, error) {
	p := b.Entity
	if p == nil {
		return nil, nil
	}
	if err := p.check(&b.Encoder.Schema); err != nil {
		return nil, err
	}
	return newEntityView(p, &b.Encoder.Schema, b.Calibration, nil)
}

func newEntityView(p *EntityPart, s *features.Schema, cal Calibration, candidates []string) (*EntityView, error) {
	dae, ok := entity.TailFromQuantiles(cal.Probs, cal.Values, cal.Count)
	if !ok {
		return nil, errors.New("model: the bundle's score calibration is too coarse to join an entity score to")
	}
	v := &EntityView{Part: p, timeCol: s.Index(p.Time), amtCol: s.Index(p.Amount), dae: dae,
		feats: []entity.Feature{{Stat: entity.Ratio, Window: p.Window}, {Stat: entity.Mean, Window: p.Window}, {Stat: entity.Count, Window: p.Window}}}
	v.layout = s.Fields[v.timeCol].Layout
	for _, f := range p.Fields {
		v.keyCols = append(v.keyCols, s.Index(f))
	}
	v.catOf = make([][]int, len(p.Fields))
	for i, c := range p.Categories {
		j := slices.Index(v.catFields, c.Field)
		if j < 0 {
			j = len(v.catFields)
			v.catFields = append(v.catFields, c.Field)
		}
		v.catField = append(v.catField, j)
		e := slices.Index(p.Fields, c.Entity)
		v.catOf[e] = append(v.catOf[e], i)
	}
	v.catTags = make([][]uint32, len(p.Fields))
	for e, cs := range v.catOf {
		for _, c := range cs {
			v.catTags[e] = append(v.catTags[e], entity.TagOf(p.Categories[c].Field))
		}
	}
	for _, f := range candidates {
		if !slices.Contains(v.catFields, f) {
			v.catFields = append(v.catFields, f)
		}
	}
	for _, f := range v.catFields {
		v.catCols = append(v.catCols, s.Index(f))
	}
	return v, nil
}

// Tx is what the entity part reads from one transaction.
type Tx struct {
	Keys   []string // per entity field; "" when missing (no entity)
	At     time.Time
	HasAt  bool
	Amount float64 // NaN when missing or unreadable
	// Cats: the values of the view's categorical fields (the zero key when
	// missing); fixed-size copies, so they keep no reference to the record.
	Cats []entity.CategoryKey
}

// Read fills tx from a record's raw values in schema order (row may be
// short); tx.Keys is reused.
func (v *EntityView) Read(row []string, tx *Tx) {
	v.ReadRaw(func(c int) string {
		if c < len(row) {
			return row[c]
		}
		return ""
	}, tx)
}

// Columns are the schema columns the entity part reads: the entity
// fields', the time's, the amount's and its categorical fields'.
func (v *EntityView) Columns() []int {
	return append(append(append([]int{}, v.keyCols...), v.timeCol, v.amtCol), v.catCols...)
}

// ReadRaw fills tx from raw(column) for each of Columns (a scorer's
// remembered raw values); tx.Keys is reused.
func (v *EntityView) ReadRaw(raw func(col int) string, tx *Tx) {
	get := func(c int) string { return strings.TrimSpace(raw(c)) }
	tx.Keys = tx.Keys[:0]
	for _, c := range v.keyCols {
		k := get(c)
		if features.IsNull(k) {
			k = ""
		}
		tx.Keys = append(tx.Keys, k)
	}
	tx.At, tx.HasAt = features.ParseTime(get(v.timeCol), v.layout)
	tx.Amount = math.NaN()
	if a, err := strconv.ParseFloat(get(v.amtCol), 64); err == nil && a >= 0 && !math.IsInf(a, 0) {
		tx.Amount = a
	}
	tx.Cats = tx.Cats[:0]
	for _, c := range v.catCols {
		k := get(c)
		if features.IsNull(k) {
			k = ""
		}
		tx.Cats = append(tx.Cats, entity.KeyOf(k))
	}
}

// Usable reports whether a transaction can step an entity's state: it
// needs the entity and an event time.
func (tx *Tx) Usable(e int) bool { return tx.HasAt && tx.Keys[e] != "" }

// EntityValue is one entity's view of a transaction.
type EntityValue struct {
	Ratio float64 // log1p(amount) minus the entity's typical log1p(amount); NaN without history
	Mean  float64 // the entity's typical log1p(amount); NaN without history
	// Score is Ratio shrunk towards 0 by the entity's history: Ratio
	// n/(n+priorCount) for a decayed count n of earlier transactions.
	Score float64
	// Cats[k] is what the entity's history says of the transaction's value
	// of its k-th categorical field (in Part.Categories order), and
	// CatScore[k] its score: 1 - share, shrunk towards 0 by the history as
	// Score is; NaN without history or value.
	Cats     [entity.MaxCategories]entity.CategoryValue
	CatScore [entity.MaxCategories]float64
}

// NoEntityValue is the value of an entity a transaction lacks: all NaN.
func NoEntityValue() EntityValue {
	x := EntityValue{Ratio: math.NaN(), Mean: math.NaN(), Score: math.NaN()}
	for k := range x.CatScore {
		x.CatScore[k] = math.NaN()
		x.Cats[k].Share = math.NaN()
	}
	return x
}

// priorCount shrinks the ratios of entities with little history (a habit
// of one or two transactions is weak evidence). Measured on the handbook
// split (AUPRC with --history, without): 0 gave 0.317, 0.162; 1 gave
// 0.334, 0.237; 2 gave 0.335, 0.271; 3 gave 0.333, 0.283.
const priorCount = 2

// Step computes entity field e's value for the transaction from st, the
// state before it, and adds the transaction to st (entity.State's
// StepCategories when e has categorical fields, then Step).
func (v *EntityView) Step(e int, st *entity.State, tx *Tx) EntityValue {
	x := NoEntityValue()
	// A state stored under an earlier model may count other categorical
	// fields, or these in another order: line its tracks up with ours.
	st.Align(v.catTags[e])
	if cs := v.catOf[e]; len(cs) > 0 {
		var keys [entity.MaxCategories]entity.CategoryKey
		for k, c := range cs {
			if j := v.catField[c]; j < len(tx.Cats) {
				keys[k] = tx.Cats[j]
			}
		}
		st.StepCategories(v.Part.Window, tx.At, keys[:len(cs)], x.Cats[:len(cs)])
		for k := range cs {
			h := x.Cats[k].History
			x.CatScore[k] = (1 - x.Cats[k].Share) * h / (h + priorCount)
		}
	}
	var out [3]float64
	st.Step(v.Part.Windows, v.feats, tx.At, tx.Amount, out[:])
	n := math.Expm1(out[2])
	x.Ratio, x.Mean, x.Score = out[0], out[1], out[0]*n/(n+priorCount)
	return x
}

// Join returns the joined score of a transaction with DAE score s and its
// entities' values (vals[e] for field e; a NaN Score for one without
// history), and the source that set it (-1: the DAE score stands): e for
// entity e's amount, len(Fields)+c for Part.Categories[c] (see Source).
func (v *EntityView) Join(s float64, vals []EntityValue) (float64, int) {
	best, lp := -1, 0.0
	for e, x := range vals {
		if q := v.Part.Tails[e].LogProb(x.Score); q < lp {
			best, lp = e, q
		}
		for k, c := range v.catOf[e] {
			if q := v.Part.Categories[c].Tail.LogProb(x.CatScore[k]); q < lp {
				best, lp = len(vals)+c, q
			}
		}
	}
	if best < 0 || math.IsNaN(s) || lp >= v.dae.LogProb(s) {
		return s, -1
	}
	return entity.Join(v.dae, s, lp), best
}

// Source reads what Join returned: the entity field's index, and the
// index in Part.Categories (-1: the amount) of what set the score.
func (v *EntityView) Source(src int) (e, cat int) {
	if src < len(v.Part.Fields) {
		return src, -1
	}
	cat = src - len(v.Part.Fields)
	return slices.Index(v.Part.Fields, v.Part.Categories[cat].Entity), cat
}

// CategoryReason is Part.Categories[cat]'s reason for a transaction of
// entity key with value x, for example "mcc digital_goods is new for
// merchant_id m-01619, usually grocery"; the value and the usual one.
func (v *EntityView) CategoryReason(cat int, key string, tx *Tx, x EntityValue) (note, observed, usual string) {
	c := v.Part.Categories[cat]
	e := slices.Index(v.Part.Fields, c.Entity)
	k := slices.Index(v.catOf[e], cat)
	val := tx.Cats[v.catField[cat]].String()
	cv := x.Cats[k]
	usual = cv.Usual.String()
	how := "is new for"
	if cv.Share > 0 {
		how = fmt.Sprintf("is %.1f%% of the %s history of", 100*cv.Share, windowWords(v.Part.Window))
	}
	note = fmt.Sprintf("%s %s %s %s %s", c.Field, val, how, c.Entity, key)
	if usual != "" && usual != val {
		note += ", usually " + usual
	}
	return note, val, usual
}

// Reason says in an analyst's words why entity e's value is strange, for
// example "TX_AMOUNT 505.3 is 6.2x the 30-day typical amount of
// CUSTOMER_ID 596 (81.5)".
func (v *EntityView) Reason(e int, key string, amount float64, x EntityValue) string {
	typical := math.Expm1(x.Mean)
	times := math.Exp(x.Ratio) // the ratio of amount+1 to typical+1
	if typical > 0 {
		times = amount / typical // what the analyst will check
	}
	return fmt.Sprintf("%s %s is %.1fx the %s typical amount of %s %s (%s)", v.Part.Amount, fmtAmount(amount), times,
		windowWords(v.Part.Window), v.Part.Fields[e], key, fmtAmount(typical))
}

func fmtAmount(a float64) string { return strconv.FormatFloat(a, 'f', 2, 64) }

func windowWords(w time.Duration) string {
	if w%(24*time.Hour) == 0 {
		return strconv.Itoa(int(w/(24*time.Hour))) + "-day"
	}
	return w.String()
}
