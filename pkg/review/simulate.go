package review

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/evaluate"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// SimConfig describes a replay of a labelled file through the analyst
// loop (see Simulate).
type SimConfig struct {
	Names []string
	Rows  [][]string
	// Label names the ground-truth column (1/0, true/false, fraud/…);
	// Pattern, optional, names a column of fraud kinds (scenarios).
	Label, Pattern string
	// ReviewsPerDay: cases the simulated analyst reviews each day.
	// Default 100.
	ReviewsPerDay int
	// LabelDelay: a reviewed case's label is known this long after the
	// review. Default 7 days.
	LabelDelay time.Duration
	// TrainDays: each day's model is trained on the previous TrainDays
	// days. Default 7.
	TrainDays int
	// Learn: use the labels (fraud kept out of training, the re-ranker,
	// label-derived entity features, diversity in the queue); false is the
	// score-only run.
	Learn bool
	AE    ae.Config
	// Progress, when set, receives each day's figures as they come.
	Progress func(DayStats)
	// Reviewed, when set, receives each review as it is made: the day,
	// the reviewed row (an index into Rows) and its true label.
	Reviewed func(day string, row int, fraud bool)
}

// DayStats is one simulated day.
type DayStats struct {
	Day          string
	Reviews      int
	Frauds       int // frauds among the day's reviews
	CumFrauds    int
	Transactions int
	Reranked     bool // the re-ranker ordered the day's queue
}

// SimResult sums a simulation up.
type SimResult struct {
	Days    []DayStats
	Reviews int
	Frauds  int
	// PrecisionSecondHalf: frauds per review over the second half of the
	// reviewed days.
	PrecisionSecondHalf float64
	// ByPattern counts the frauds found by the pattern column's value (nil
	// without a pattern column).
	ByPattern map[string]int
	// PatternsFirst100: distinct values of the pattern column among the
	// frauds found in the first 100 reviews (-1 without a pattern column).
	PatternsFirst100 int
}

// label is a reviewed case's truth, known from a time on.
type label struct {
	i     int
	fraud bool
	known time.Time
}

// entityMinRepeat: an id field is an entity (a card, a terminal) when its
// values repeat this many times on average.
const entityMinRepeat = 3

// Simulate replays cfg.Rows in time order, one day at a time: a model is
// trained on the previous TrainDays days (in the learning run without the
// transactions already confirmed as fraud), the day's transactions are
// scored, the queue is ordered, and the analyst reviews the first
// ReviewsPerDay cases, whose true labels become known LabelDelay later.
// The score-only run orders by the DAE score. The learning run orders by
// the DAE score and the entities' (cards', terminals') habits until labels
// are known, then re-ranks the top of that order by a logistic re-ranker
// trained on the labels known so far, and interleaves across embedding
// clusters (see learnedOrder).
func Simulate(cfg SimConfig) (SimResult, error) {
	if cfg.ReviewsPerDay <= 0 {
		cfg.ReviewsPerDay = 100
	}
	if cfg.LabelDelay <= 0 {
		cfg.LabelDelay = 7 * 24 * time.Hour
	}
	if cfg.TrainDays <= 0 {
		cfg.TrainDays = 7
	}
	li, pi := slices.Index(cfg.Names, cfg.Label), -1
	if li < 0 {
		return SimResult{}, fmt.Errorf("review: no label column %q (columns: %s)", cfg.Label, strings.Join(cfg.Names, ", "))
	}
	ignore := []string{cfg.Label}
	if cfg.Pattern != "" {
		if pi = slices.Index(cfg.Names, cfg.Pattern); pi < 0 {
			return SimResult{}, fmt.Errorf("review: no pattern column %q", cfg.Pattern)
		}
		ignore = append(ignore, cfg.Pattern)
	}
	schema := features.InferSchema(cfg.Names, cfg.Rows, features.InferOptions{Ignore: ignore})
	ti := slices.Index(cfg.Names, schema.TimeField)
	if ti < 0 {
		return SimResult{}, errors.New("review: the file has no event time to replay by")
	}
	layout := schema.Fields[schema.Index(schema.TimeField)].Layout
	rows := features.Project(schema, cfg.Names, cfg.Rows)
	type tx struct {
		i     int
		at    time.Time
		fraud bool
	}
	var txs []tx
	for i, r := range cfg.Rows {
		at, ok := features.ParseTime(r[ti], layout)
		if !ok {
			continue
		}
		f, _ := evaluate.ParseLabel(r[li])
		txs = append(txs, tx{i, at, f})
	}
	slices.SortStableFunc(txs, func(a, b tx) int { return a.at.Compare(b.at) })
	if len(txs) == 0 {
		return SimResult{}, errors.New("review: no row has a readable event time")
	}
	// Entity fields: ids other than the transaction id whose values repeat.
	var ents []int
	for j, f := range schema.Fields {
		if f.Kind != features.ID || f.Name == schema.IDField || f.Name == schema.TimeField {
			continue
		}
		distinct := map[string]bool{}
		for _, t := range txs {
			distinct[rows[t.i][j]] = true
		}
		if float64(len(txs)) >= entityMinRepeat*float64(len(distinct)) && !strings.Contains(f.Reason, "event time") {
			ents = append(ents, j)
		}
	}

	var behaviour [][]float64
	if cfg.Learn {
		behaviour = entityBehaviour(cfg.Rows, timedRows(txs, func(t tx) (int, time.Time) { return t.i, t.at }), ents, rows, schema)
	}

	day := func(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }
	first := day(txs[0].at)
	byDay := map[time.Time][]tx{}
	var days []time.Time
	for _, t := range txs {
		d := day(t.at)
		if _, ok := byDay[d]; !ok {
			days = append(days, d)
		}
		byDay[d] = append(byDay[d], t)
	}
	var labels []label
	known := func(at time.Time) []label {
		var out []label
		for _, l := range labels {
			if !l.known.After(at) {
				out = append(out, l)
			}
		}
		return out
	}
	var res SimResult
	res.PatternsFirst100 = -1
	patterns := map[string]bool{}
	for di, d := range days {
		if d.Sub(first) < time.Duration(cfg.TrainDays)*24*time.Hour {
			continue
		}
		kn := known(d)
		excluded := map[int]bool{}
		if cfg.Learn {
			for _, l := range kn {
				if l.fraud {
					excluded[l.i] = true
				}
			}
		}
		var train [][]string
		for _, pd := range days[max(0, di-cfg.TrainDays):di] {
			for _, t := range byDay[pd] {
				if !excluded[t.i] {
					train = append(train, rows[t.i])
				}
			}
		}
		if len(train) < 100 {
			continue
		}
		b, err := model.Fit(schema, train, model.FitOptions{AE: cfg.AE})
		if err != nil {
			return res, fmt.Errorf("review: day %s: %w", d.Format("2006-01-02"), err)
		}
		today := byDay[d]
		todayIdx := indexes(today, func(t tx) int { return t.i })
		feats, scores, embs := describe(b, rows, todayIdx)
		cases := make([]*Case, len(today))
		for k, t := range today {
			cases[k] = &Case{ID: fmt.Sprint(t.i), Ref: t.i, Score: float64(scores[k]), Embedding: embs[k]}
		}
		ds := DayStats{Day: d.Format("2006-01-02"), Transactions: len(today)}
		order := slices.Clone(cases)
		slices.SortFunc(order, higher)
		picked := order
		if cfg.Learn {
			picked = learnedOrder(cfg, d, kn, ents, rows, behaviour, b, todayIdx, feats, cases, &ds)
		}
		order = picked
		for _, c := range order[:min(len(order), cfg.ReviewsPerDay)] {
			i := c.Ref
			f, _ := evaluate.ParseLabel(cfg.Rows[i][li])
			labels = append(labels, label{i, f, d.Add(cfg.LabelDelay)})
			if cfg.Reviewed != nil {
				cfg.Reviewed(ds.Day, i, f)
			}
			ds.Reviews++
			if f {
				ds.Frauds++
				if pi >= 0 {
					if res.ByPattern == nil {
						res.ByPattern = map[string]int{}
					}
					res.ByPattern[cfg.Rows[i][pi]]++
					if res.Reviews+ds.Reviews <= 100 {
						patterns[cfg.Rows[i][pi]] = true
					}
				}
			}
		}
		res.Reviews += ds.Reviews
		res.Frauds += ds.Frauds
		ds.CumFrauds = res.Frauds
		res.Days = append(res.Days, ds)
		if cfg.Progress != nil {
			cfg.Progress(ds)
		}
	}
	if pi >= 0 {
		res.PatternsFirst100 = len(patterns)
	}
	half := res.Days[len(res.Days)/2:]
	rv, fr := 0, 0
	for _, d := range half {
		rv, fr = rv+d.Reviews, fr+d.Frauds
	}
	if rv > 0 {
		res.PrecisionSecondHalf = float64(fr) / float64(rv)
	}
	return res, nil
}

// indexes maps xs to the row indexes f gives.
func indexes[T any](xs []T, f func(T) int) []int {
	out := make([]int, len(xs))
	for k, x := range xs {
		out[k] = f(x)
	}
	return out
}

// describe scores rows[idx] with b: per row the re-ranker's inputs (the
// log score, the per-field contributions and the embedding), the score and
// the embedding.
func describe(b *model.Bundle, rows [][]string, idx []int) (feats [][]float32, scores []float32, embs [][]float32) {
	const batch = 1024
	sc := b.NewScorer(batch)
	bn := b.Model.Bottleneck
	emb := make([]float32, batch*bn)
	for from := 0; from < len(idx); from += batch {
		n := min(batch, len(idx)-from)
		for k := range n {
			sc.SetRow(k, rows[idx[from+k]])
		}
		s := sc.Score(n)
		sc.Embed(n, emb)
		for k := range n {
			f := []float32{float32(math.Log1p(math.Max(float64(s[k]), 0)))}
			f = append(f, sc.Contributions(k)...)
			e := slices.Clone(emb[k*bn : (k+1)*bn])
			f = append(f, e...)
			feats, scores, embs = append(feats, f), append(scores, s[k]), append(embs, e)
		}
	}
	return feats, scores, embs
}

// timedRows maps xs to (row, event time) pairs.
func timedRows[T any](xs []T, f func(T) (int, time.Time)) []timed {
	out := make([]timed, len(xs))
	for k, x := range xs {
		out[k].i, out[k].at = f(x)
	}
	return out
}

// timed is a row index and its event time.
type timed struct {
	i  int
	at time.Time
}

// behaviourFeats are the per-entity behaviour features the re-ranker sees;
// each entity also gets its median ratio (see entityBehaviour).
var behaviourFeats = []entity.Feature{{Stat: entity.Ratio, Window: 30 * 24 * time.Hour}, {Stat: entity.Ratio, Window: 7 * 24 * time.Hour}, {Stat: entity.Count, Window: 24 * time.Hour}}

// perEntity: behaviour values per entity field, behaviourFeats then the
// median ratio.
var perEntity = len(behaviourFeats) + 1

// The median ratio is log1p(amount) minus the median log1p(amount) of the
// entity's transactions of the last medianWindow (at most medianMax of
// them, the latest). A mean habit takes in the entity's own frauds: a
// compromised customer whose every third amount is multiplied by 5 soon
// has a mean that hides the next one; the median does not move until half
// of them are fraud (handbook: a third of the month's
// frauds are such customers').
const (
	medianWindow = 30 * 24 * time.Hour
	medianMax    = 256
)

// loggedAmount is one earlier transaction's event time and log1p(amount).
type loggedAmount struct {
	at time.Time
	la float64
}

// entityBehaviour computes, in time order, each row's behaviour features
// for each entity field against the entity's earlier transactions
// (behaviour[i] for row i, perEntity values per entity: behaviourFeats,
// then the median ratio; missing values as 0). The amount is the first
// numeric field named like an amount, else the first numeric field.
func entityBehaviour(raw [][]string, order []timed, ents []int, rows [][]string, schema *features.Schema) [][]float64 {
	amt := -1
	for j, f := range schema.Fields {
		if f.Kind != features.Numeric {
			continue
		}
		n := strings.ToLower(f.Name)
		if amt < 0 || strings.Contains(n, "amount") || strings.Contains(n, "amt") {
			amt = j
			if strings.Contains(n, "amount") || strings.Contains(n, "amt") {
				break
			}
		}
	}
	out := make([][]float64, len(raw))
	if amt < 0 || len(ents) == 0 {
		return out
	}
	states := make([]map[string]*entity.State, len(ents))
	recent := make([]map[string][]loggedAmount, len(ents))
	for e := range states {
		states[e] = map[string]*entity.State{}
		recent[e] = map[string][]loggedAmount{}
	}
	var sorted []float64
	buf := make([]float64, len(behaviourFeats))
	for _, t := range order {
		a, err := strconv.ParseFloat(strings.TrimSpace(rows[t.i][amt]), 64)
		if err != nil {
			a = math.NaN()
		}
		v := make([]float64, 0, len(ents)*perEntity)
		for e, j := range ents {
			key := rows[t.i][j]
			st := states[e][key]
			if st == nil {
				st = &entity.State{}
				states[e][key] = st
			}
			st.Features(entity.DefaultWindows, behaviourFeats, t.at, a, buf)
			for _, x := range buf {
				if math.IsNaN(x) {
					x = 0
				}
				v = append(v, x)
			}
			st.Update(entity.DefaultWindows, t.at, a)
			h := recent[e][key]
			for len(h) > 0 && (t.at.Sub(h[0].at) > medianWindow || len(h) >= medianMax) {
				h = h[1:]
			}
			m := 0.0
			if len(h) >= 2 && a >= 0 {
				sorted = sorted[:0]
				for _, x := range h {
					sorted = append(sorted, x.la)
				}
				slices.Sort(sorted)
				m = math.Log1p(a) - sorted[len(sorted)/2]
			}
			v = append(v, m)
			if a >= 0 {
				h = append(h, loggedAmount{t.at, math.Log1p(a)})
			}
			recent[e][key] = h
		}
		out[t.i] = v
	}
	return out
}

// propagateWindow: confirmed frauds count towards their entity this long.
const propagateWindow = 28 * 24 * time.Hour

// poolFactor: the re-ranker orders the first poolFactor×ReviewsPerDay
// cases of the label-free order, not the whole day. It learns from reviewed
// cases, all from the top of earlier days' queues, so far below the top it
// extrapolates; a case it ranks high there is seldom fraud.
const poolFactor = 3

// learnedOrder orders the day's cases for the learning run. Until the
// re-ranker has labels: by the smallest tail probability, among the day's
// cases, of the DAE score and each entity's median ratio. Then the first
// poolFactor×ReviewsPerDay cases of that order are ordered by a logistic
// re-ranker over the DAE's view (log score, contributions, embedding),
// the entities' behaviour and their confirmed frauds and legitimate cases
// known so far (others than the case itself), trained on the labels known
// so far; the rest follow. The top is interleaved across embedding
// clusters.
func learnedOrder(cfg SimConfig, d time.Time, kn []label, ents []int, rows [][]string, behaviour [][]float64,
	b *model.Bundle, idx []int, feats [][]float32, cases []*Case, ds *DayStats) []*Case {
	type tally struct{ fraud, legit int }
	counts := make([]map[string]*tally, len(ents))
	for e := range ents {
		counts[e] = map[string]*tally{}
	}
	for _, l := range kn {
		for e, j := range ents {
			k := rows[l.i][j]
			t := counts[e][k]
			if t == nil {
				t = &tally{}
				counts[e][k] = t
			}
			if l.fraud {
				if d.Sub(l.known) <= propagateWindow {
					t.fraud++
				}
			} else {
				t.legit++
			}
		}
	}
	// x: the re-ranker's inputs for row i; self removes its own label from
	// its entities' tallies (training rows), so a label cannot predict itself.
	x := func(i int, f []float32, self *label) []float64 {
		v := make([]float64, 0, len(f)+3*len(ents))
		for _, a := range f {
			v = append(v, float64(a))
		}
		if behaviour != nil {
			v = append(v, behaviour[i]...)
		}
		for e, j := range ents {
			var fr, lg int
			if t := counts[e][rows[i][j]]; t != nil {
				fr, lg = t.fraud, t.legit
			}
			if self != nil && self.fraud && d.Sub(self.known) <= propagateWindow {
				fr--
			} else if self != nil && !self.fraud {
				lg--
			}
			v = append(v, math.Log1p(float64(max(fr, 0))), math.Log1p(float64(max(lg, 0))))
		}
		return v
	}
	var X [][]float64
	var y []bool
	if len(kn) > 0 {
		kidx := make([]int, len(kn))
		for k, l := range kn {
			kidx[k] = l.i
		}
		kf, _, _ := describe(b, rows, kidx)
		for k := range kn {
			X, y = append(X, x(kn[k].i, kf[k], &kn[k])), append(y, kn[k].fraud)
		}
	}
	// The label-free order: the DAE's score and each entity's median ratio
	// as tail probabilities among the day's cases, the smallest counting
	// (the habit as a separate score: as DAE inputs it hides what is
	// globally rare). Its score is 1/p, the day's cases over the rank, so
	// the clusters' interleaving compares ranks: a cluster's second case
	// goes before another's best when it ranks at least half as high.
	// Once the re-ranker has labels, its probability orders the pool
	// alone: joining it to the others the same way spread the reviews over
	// signals the labels had already weighed (generator traffic: 229
	// frauds against 331).
	cols := [][]float64{make([]float64, len(cases))}
	for k, c := range cases {
		cols[0][k] = c.Score
	}
	if behaviour != nil {
		for e := range ents {
			col := make([]float64, len(cases))
			for k, i := range idx {
				if len(behaviour[i]) > 0 {
					col[k] = behaviour[i][e*perEntity+len(behaviourFeats)] // median ratio
				}
			}
			cols = append(cols, col)
		}
	}
	p := make([]float64, len(cases))
	for k := range p {
		p[k] = 1
	}
	for _, col := range cols {
		for k, q := range tailProbs(col) {
			p[k] = min(p[k], q)
		}
	}
	for k := range cases {
		cases[k].Score = 1 / p[k]
	}
	order := slices.Clone(cases)
	slices.SortFunc(order, higher)
	top := order[:min(len(order), 10*cfg.ReviewsPerDay)]
	if r, ok := FitLogistic(X, y); ok {
		ds.Reranked = true
		pool := order[:min(len(order), poolFactor*cfg.ReviewsPerDay)]
		top = pool
		pos := make(map[*Case]int, len(cases))
		for k, c := range cases {
			pos[c] = k
		}
		rerank(pool, func(c *Case) float64 { k := pos[c]; return r.Prob(x(idx[k], feats[k], nil)) })
	}
	var k Clusters
	for _, c := range top {
		k.Assign(c)
	}
	k.Flush()
	return append(Order(top, 0), order[len(top):]...)
}

// rerank scores pool's cases by prob and sorts them, highest first.
func rerank(pool []*Case, prob func(*Case) float64) {
	for _, c := range pool {
		c.Score = prob(c)
	}
	slices.SortFunc(pool, higher)
}

// tailProbs returns, for each value, the share of values at least as high
// (its rank from the top over the count).
func tailProbs(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(v[b], v[a]) })
	out := make([]float64, len(v))
	for r, i := range idx {
		out[i] = float64(r+1) / float64(len(v))
	}
	return out
}
