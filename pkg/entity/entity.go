// Package entity computes per-entity behaviour features (a card's or a
// terminal's recent activity) from a stream of transactions in event-time
// order. One pure step, Features then Update, serves the offline commands
// (which replay a file in time order) and the scorers alike, so both see
// the same values for the same sequence of transactions.
//
// State per entity is a handful of exponentially decayed aggregates, one
// set per window: a window of length w forgets an event's weight by e^-1
// every w of event time. That bounds memory per entity (State's size does
// not grow with traffic), tolerates events that arrive out of order (an
// older event is added with the weight it would have by now), and needs no
// timers: an idle entity's aggregates decay when it is next seen.
package entity

import (
	"math"
	"strconv"
	"time"
)

// MaxWindows bounds the windows per entity type.
const MaxWindows = 4

// DefaultWindows: an hour (bursts, card testing), a day, a week and a
// month (the entity's usual behaviour).
var DefaultWindows = []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}

// Stat names one feature of an entity over a window.
type Stat string

const (
	// Count: the decayed number of the entity's earlier transactions,
	// log1p-scaled.
	Count Stat = "count"
	// Ratio: log1p(amount) minus the entity's decayed mean of log1p(amount):
	// about log(amount / typical amount); missing without history.
	Ratio Stat = "ratio"
	// Z: the same difference over the entity's decayed standard deviation
	// (floored), a robust-enough z-score; missing without history.
	Z Stat = "z"
	// Mean: the entity's decayed mean of log1p(amount), its typical amount
	// on a log scale; missing without history.
	Mean Stat = "mean"
	// Since: log1p of the seconds since the entity's previous transaction
	// (no window); missing for its first.
	Since Stat = "since"
)

// Feature is one derived column: Stat of the entity over Window (Since
// ignores Window).
type Feature struct {
	Stat   Stat
	Window time.Duration
}

// Name is the feature's column name for an entity field, e.g.
// "CUSTOMER_ID.ratio_720h".
func (f Feature) Name(entity string) string {
	if f.Stat == Since {
		return entity + ".since"
	}
	return entity + "." + string(f.Stat) + "_" + windowName(f.Window)
}

func windowName(w time.Duration) string {
	if w%(24*time.Hour) == 0 {
		return strconv.Itoa(int(w/(24*time.Hour))) + "d"
	}
	if w%time.Hour == 0 {
		return strconv.Itoa(int(w/time.Hour)) + "h"
	}
	return strconv.Itoa(int(w/time.Minute)) + "m"
}

// agg is one window's decayed aggregates of log1p(amount).
type agg struct {
	n, s, ss float32
}

// State is one entity's history: its latest event time, a flag and 12
// bytes per window, 64 bytes in all encoded, and the counts of up to
// MaxCategories categorical fields' values (StepCategories), 88 bytes
// each encoded.
type State struct {
	last int64 // unix milliseconds of the latest event seen; 0: none
	seen bool
	agg  [MaxWindows]agg
	ncat uint8 // categorical fields counted in cats
	cats [MaxCategories]catTrack
}

// Seen reports whether the entity has any history.
func (s *State) Seen() bool { return s.seen }

// Last is the event time of the entity's latest transaction.
func (s *State) Last() time.Time { return time.UnixMilli(s.last) }

// minHistory is the decayed count below which ratios and z-scores are
// missing: one earlier transaction is not yet a typical amount.
const minHistory = 0.5

// zFloor bounds the standard deviation of log-amounts from below, so an
// entity that always spent the same amount does not make a cent's
// difference an extreme z-score.
const zFloor = 0.1

// Features writes the features of a transaction at event time at with
// amount (NaN: unknown) into out (one per feature, NaN = missing), from
// the state before the transaction. windows[i] is the window of agg i.
func (s *State) Features(windows []time.Duration, feats []Feature, at time.Time, amount float64, out []float64) {
	t := at.UnixMilli()
	la := math.NaN()
	if amount >= 0 {
		la = math.Log1p(amount)
	}
	for i, f := range feats {
		out[i] = math.NaN()
		if f.Stat == Since {
			if s.seen {
				out[i] = math.Log1p(math.Max(float64(t-s.last), 0) / 1000)
			}
			continue
		}
		w := windowIndex(windows, f.Window)
		if w < 0 {
			continue
		}
		d := 1.0
		if s.seen && t > s.last {
			d = math.Exp(-float64(t-s.last) / float64(windows[w].Milliseconds()))
		}
		a := s.agg[w]
		n := float64(a.n) * d
		switch f.Stat {
		case Count:
			out[i] = math.Log1p(n)
		case Mean:
			if n >= minHistory {
				out[i] = float64(a.s) / float64(a.n)
			}
		case Ratio, Z:
			if n < minHistory || math.IsNaN(la) {
				continue
			}
			mean := float64(a.s) / float64(a.n)
			if f.Stat == Ratio {
				out[i] = la - mean
				continue
			}
			v := math.Max(float64(a.ss)/float64(a.n)-mean*mean, 0)
			out[i] = (la - mean) / math.Max(math.Sqrt(v), zFloor)
		}
	}
}

// Update adds a transaction at event time at with amount to the state (an
// unknown amount, NaN or negative, only moves its latest time). An event older than the latest one
// is added with the weight it has by the latest one's time.
func (s *State) Update(windows []time.Duration, at time.Time, amount float64) {
	t := at.UnixMilli()
	la, hasAmount := 0.0, amount >= 0
	if hasAmount {
		la = math.Log1p(amount)
	}
	for w := range windows[:min(len(windows), MaxWindows)] {
		tau := float64(windows[w].Milliseconds())
		a := &s.agg[w]
		weight := 1.0
		if s.seen && t > s.last {
			d := float32(math.Exp(-float64(t-s.last) / tau))
			a.n, a.s, a.ss = a.n*d, a.s*d, a.ss*d
		} else if s.seen && t < s.last {
			weight = math.Exp(-float64(s.last-t) / tau)
		}
		if !hasAmount {
			// Counted in n but not in the amount sums would skew the mean:
			// an amountless event only refreshes the time.
			continue
		}
		a.n += float32(weight)
		a.s += float32(weight * la)
		a.ss += float32(weight * la * la)
	}
	if !s.seen || t > s.last {
		s.last = t
	}
	s.seen = true
}

func windowIndex(windows []time.Duration, w time.Duration) int {
	for i, x := range windows {
		if x == w && i < MaxWindows {
			return i
		}
	}
	return -1
}
