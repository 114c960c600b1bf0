package entity

import (
	"math"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func feats(s *State, at time.Time, amount float64, fs ...Feature) []float64 {
	out := make([]float64, len(fs))
	s.Features(DefaultWindows, fs, at, amount, out)
	return out
}

// TestNoHistory: a first transaction has a count of zero and no ratio,
// z-score, mean or time since the previous one (missing, not zero).
func TestNoHistory(t *testing.T) {
	var s State
	got := feats(&s, t0, 50, Feature{Count, time.Hour}, Feature{Ratio, 24 * time.Hour}, Feature{Z, 24 * time.Hour}, Feature{Mean, 24 * time.Hour}, Feature{Stat: Since})
	if got[0] != 0 {
		t.Errorf("count %v, want 0", got[0])
	}
	for i, v := range got[1:] {
		if !math.IsNaN(v) {
			t.Errorf("feature %d = %v without history, want missing", i+1, v)
		}
	}
	if s.Seen() {
		t.Error("Features changed the state")
	}
}

// TestDecayAtWindowBoundaries: an event's weight in a window of length w is
// e^-(age/w): 1 at once, e^-1 after one w, e^-2 after two, so the hour's
// count has all but forgotten a transaction a day old while the month's
// still counts it almost fully.
func TestDecayAtWindowBoundaries(t *testing.T) {
	var s State
	s.Update(DefaultWindows, t0, 20)
	for _, tc := range []struct {
		age    time.Duration
		window time.Duration
		want   float64
	}{
		{0, time.Hour, 1},
		{time.Hour, time.Hour, math.Exp(-1)},
		{2 * time.Hour, time.Hour, math.Exp(-2)},
		{24 * time.Hour, time.Hour, math.Exp(-24)},
		{24 * time.Hour, 30 * 24 * time.Hour, math.Exp(-1.0 / 30)},
	} {
		got := feats(&s, t0.Add(tc.age), 20, Feature{Count, tc.window})[0]
		if want := math.Log1p(tc.want); math.Abs(got-want) > 1e-6 {
			t.Errorf("count over %v after %v: %v, want log1p(%v) = %v", tc.window, tc.age, got, tc.want, want)
		}
	}
	if got := feats(&s, t0.Add(90*time.Second), 20, Feature{Stat: Since})[0]; math.Abs(got-math.Log1p(90)) > 1e-9 {
		t.Errorf("since after 90 s: %v", got)
	}
}

// TestRatioAndZ: after a habit of amounts around 20, an amount of 100 is
// about log(5) above the typical amount and several deviations out; an
// amount of 20 is neither.
func TestRatioAndZ(t *testing.T) {
	var s State
	for i := range 40 {
		s.Update(DefaultWindows, t0.Add(time.Duration(i)*time.Hour), []float64{18, 20, 22}[i%3])
	}
	at := t0.Add(40 * time.Hour)
	spike := feats(&s, at, 100, Feature{Ratio, 30 * 24 * time.Hour}, Feature{Z, 30 * 24 * time.Hour}, Feature{Mean, 30 * 24 * time.Hour})
	usual := feats(&s, at, 20, Feature{Ratio, 30 * 24 * time.Hour}, Feature{Z, 30 * 24 * time.Hour})
	if math.Abs(spike[0]-math.Log(101.0/21)) > 0.05 {
		t.Errorf("ratio of 100 after ~20s: %v, want about log(101/21) = %v", spike[0], math.Log(101.0/21))
	}
	if spike[1] < 5 {
		t.Errorf("z of 100 after ~20s: %v, want several deviations", spike[1])
	}
	if math.Abs(spike[2]-math.Log1p(20)) > 0.05 {
		t.Errorf("typical amount %v, want about log1p(20)", spike[2])
	}
	if math.Abs(usual[0]) > 0.05 || math.Abs(usual[1]) > 1 {
		t.Errorf("an ordinary amount: ratio %v z %v", usual[0], usual[1])
	}
}

// TestOutOfOrder: events applied in any order within the windows leave the
// same aggregates (to float32 precision), and a late event does not move
// the entity's latest time back.
func TestOutOfOrder(t *testing.T) {
	events := []struct {
		at     time.Duration
		amount float64
	}{{0, 10}, {time.Hour, 30}, {3 * time.Hour, 50}, {26 * time.Hour, 5}}
	var inOrder, shuffled State
	for _, e := range events {
		inOrder.Update(DefaultWindows, t0.Add(e.at), e.amount)
	}
	for _, i := range []int{1, 0, 3, 2} {
		shuffled.Update(DefaultWindows, t0.Add(events[i].at), events[i].amount)
	}
	if !shuffled.Last().Equal(t0.Add(26 * time.Hour)) {
		t.Errorf("latest time %v", shuffled.Last())
	}
	at := t0.Add(27 * time.Hour)
	fs := []Feature{{Count, time.Hour}, {Count, 24 * time.Hour}, {Ratio, 7 * 24 * time.Hour}, {Z, 30 * 24 * time.Hour}, {Stat: Since}}
	a, b := feats(&inOrder, at, 40, fs...), feats(&shuffled, at, 40, fs...)
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-4*math.Max(1, math.Abs(a[i])) {
			t.Errorf("%s: in order %v, shuffled %v", fs[i].Name("card"), a[i], b[i])
		}
	}
}

// TestUnknownAmount: a transaction without an amount moves the time but
// not the amounts' habit.
func TestUnknownAmount(t *testing.T) {
	var s State
	s.Update(DefaultWindows, t0, 20)
	s.Update(DefaultWindows, t0.Add(time.Minute), math.NaN())
	got := feats(&s, t0.Add(2*time.Minute), 20, Feature{Stat: Since}, Feature{Ratio, 24 * time.Hour})
	if math.Abs(got[0]-math.Log1p(60)) > 1e-9 || math.Abs(got[1]) > 1e-3 {
		t.Errorf("since %v (want log1p(60)), ratio %v (want 0)", got[0], got[1])
	}
}

// TestNamesAndSize: column names read as the feature they hold, and the
// state of one entity is 64 bytes (640 MB for 10 million cards, before the
// map that holds them).
func TestNamesAndSize(t *testing.T) {
	for f, want := range map[Feature]string{
		{Ratio, 30 * 24 * time.Hour}: "card.ratio_30d",
		{Count, time.Hour}:           "card.count_1h",
		{Z, 90 * time.Minute}:        "card.z_90m",
		{Stat: Since}:                "card.since",
	} {
		if got := f.Name("card"); got != want {
			t.Errorf("%+v: %q, want %q", f, got, want)
		}
	}
	// 64 bytes of amounts, 88 per counted categorical field (its tag
	// included) and padding.
	if n := unsafe.Sizeof(State{}); n != 240 {
		t.Errorf("State is %d bytes", n)
	}
}
