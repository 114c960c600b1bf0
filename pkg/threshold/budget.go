package threshold

import "math"

// WindowConfig sizes a sliding window of scores. Zero values select the
// defaults.
type WindowConfig struct {
	// Alpha is the sketches' relative accuracy. Default 0.01.
	Alpha float64
	// Intervals is the number of sketches in the ring. Default 10.
	Intervals int
	// Events is the number of scores per interval. Default 5,000: the
	// window covers the last 50,000 scores, so that a budget recovers from
	// a shift within 50,000 events while holding ±10% on a steady stream.
	Events int
}

func (c WindowConfig) withDefaults() WindowConfig {
	if c.Alpha <= 0 {
		c.Alpha = 0.01
	}
	if c.Intervals <= 0 {
		c.Intervals = 10
	}
	if c.Events <= 0 {
		c.Events = 5000
	}
	return c
}

// Window is a ring of per-interval sketches plus their running sum, so the
// distribution of the last Intervals×Events scores is always at hand and
// older scores are forgotten exactly.
type Window struct {
	cfg    WindowConfig
	ring   []*Sketch
	cur    int
	inCur  int
	merged *Sketch
}

// NewWindow returns an empty window.
func NewWindow(cfg WindowConfig) *Window {
	cfg = cfg.withDefaults()
	w := &Window{cfg: cfg, merged: NewSketch(cfg.Alpha)}
	for range cfg.Intervals {
		w.ring = append(w.ring, NewSketch(cfg.Alpha))
	}
	return w
}

// Add records a score; it reports whether an interval just closed.
func (w *Window) Add(x float64) (rotated bool) {
	w.ring[w.cur].Add(x)
	w.merged.Add(x)
	w.inCur++
	if w.inCur < w.cfg.Events {
		return false
	}
	w.cur = (w.cur + 1) % len(w.ring)
	w.merged.Subtract(w.ring[w.cur])
	w.ring[w.cur].Reset()
	w.inCur = 0
	return true
}

// Sketch returns the window's merged sketch (read-only).
func (w *Window) Sketch() *Sketch { return w.merged }

// Budget decides by alert budget: alert when a score is above the
// (1 − Rate) quantile of the recent window, so that about Rate of the
// traffic alerts whatever the score scale, through drift. Not safe for
// concurrent use: one per scorer goroutine.
type Budget struct {
	Rate float64 // e.g. 0.005 for 50 alerts per 10,000 transactions
	// Refresh is how many scores pass between threshold recomputations.
	// Default 1,024.
	Refresh int
	w       *Window
	thr     float64
	since   int
	// Fleet mode: the other workers' windows, merged; combo is scratch.
	peers *Sketch
	combo *Sketch
}

// NewBudget returns a budget policy over a window.
func NewBudget(rate float64, cfg WindowConfig) *Budget {
	return &Budget{Rate: rate, Refresh: 1024, w: NewWindow(cfg), thr: math.Inf(1)}
}

// Decide records score and reports the threshold in force and whether the
// score alerts. Before the window holds enough scores to place the
// quantile (1/Rate of them), nothing alerts.
func (b *Budget) Decide(score float64) (threshold float64, alert bool) {
	thr := b.thr
	rotated := b.w.Add(score)
	b.since++
	if rotated || b.since >= b.Refresh || (math.IsInf(b.thr, 1) && float64(b.w.merged.Count())*b.Rate >= 1) {
		// (The last case: the first threshold as soon as the window can place it.)
		b.since = 0
		b.recompute()
	}
	return thr, score > thr
}

// recompute places the threshold on the worker's own window, or, in fleet
// mode, on its own window merged with its peers' (so that the fleet, not
// each worker, meets the budget).
func (b *Budget) recompute() {
	s := b.w.merged
	if b.peers != nil && b.peers.Count() > 0 {
		if b.combo == nil {
			b.combo = NewSketch(s.Alpha())
		}
		b.combo.Reset()
		b.combo.Merge(s)
		b.combo.Merge(b.peers)
		s = b.combo
	}
	if float64(s.Count())*b.Rate >= 1 {
		b.thr = s.Quantile(1 - b.Rate)
	}
}

// SetPeers installs the merged windows of the other workers (nil leaves
// fleet mode). A worker that can no longer reach its peers keeps the last
// view it had, plus its own fresh observations.
func (b *Budget) SetPeers(peers *Sketch) {
	b.peers = peers
	b.recompute()
}

// Window returns the policy's window (for merging across workers).
func (b *Budget) Window() *Window { return b.w }
