package entity

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A state that counts categorical values, written to a shared store and
// read back, steps exactly as the one kept in memory; a state without
// them still encodes in EncodedSize bytes (older stores' states read).
func TestCategoryStateEncodingRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	feats := []Feature{{Stat: Ratio, Window: 720 * time.Hour}, {Stat: Count, Window: time.Hour}}
	values := []string{"grocery", "fuel", "digital_goods", "travel", "pharmacy", strings.Repeat("a very long category ", 2)}
	var mem, stored State
	if n := len(mem.AppendBinary(nil)); n != EncodedSize {
		t.Fatalf("a state without categories encodes in %d bytes, want %d", n, EncodedSize)
	}
	var buf []byte
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	a, b := make([]float64, len(feats)), make([]float64, len(feats))
	ca, cb := make([]CategoryValue, 2), make([]CategoryValue, 2)
	for i := range 500 {
		at = at.Add(time.Duration(rng.IntN(7200)-600) * time.Second) // some out of order
		keys := []CategoryKey{KeyOf(values[min(rng.IntN(8), len(values)-1)]), KeyOf(values[rng.IntN(2)])}
		if i%40 == 3 {
			keys[1] = KeyOf("")
		}
		if i > 0 {
			if err := stored.UnmarshalBinary(buf); err != nil {
				t.Fatal(err)
			}
		}
		mem.StepCategories(720*time.Hour, at, keys, ca)
		mem.Step(DefaultWindows, feats, at, 10, a)
		stored.StepCategories(720*time.Hour, at, keys, cb)
		stored.Step(DefaultWindows, feats, at, 10, b)
		for c := range ca {
			if math.Float64bits(ca[c].Share) != math.Float64bits(cb[c].Share) || ca[c].History != cb[c].History || ca[c].Usual != cb[c].Usual {
				t.Fatalf("step %d category %d: %+v in memory, %+v via the encoding", i, c, ca[c], cb[c])
			}
		}
		buf = stored.AppendBinary(buf[:0])
		if want := EncodedSize + 1 + 2*CategoryEncodedSize; len(buf) != want {
			t.Fatalf("encoded %d bytes, want %d", len(buf), want)
		}
	}
	if err := stored.UnmarshalBinary(buf[:len(buf)-1]); err == nil {
		t.Fatal("a short encoding was accepted")
	}
	bad := append([]byte{}, buf...)
	bad[EncodedSize] = MaxCategories + 1
	if err := stored.UnmarshalBinary(bad); err == nil {
		t.Fatal("too many categorical fields were accepted")
	}
}

// A merchant that always sold groceries: a new category has share 0 and
// names the usual one, the usual one has share near 1, a long value keeps
// its identity.
func TestCategoryShare(t *testing.T) {
	var s State
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	out := make([]CategoryValue, 1)
	s.StepCategories(720*time.Hour, at, []CategoryKey{KeyOf("grocery")}, out)
	if !math.IsNaN(out[0].Share) {
		t.Fatalf("first transaction: share %v, want NaN (no history)", out[0].Share)
	}
	for range 50 {
		at = at.Add(time.Hour)
		s.StepCategories(720*time.Hour, at, []CategoryKey{KeyOf("grocery")}, out)
	}
	if out[0].Share < 0.99 {
		t.Fatalf("usual value: share %v", out[0].Share)
	}
	at = at.Add(time.Hour)
	s.StepCategories(720*time.Hour, at, []CategoryKey{KeyOf("digital_goods")}, out)
	if out[0].Share != 0 || out[0].Usual.String() != "grocery" {
		t.Fatalf("new value: share %v, usual %q; want 0, grocery", out[0].Share, out[0].Usual.String())
	}
	long1, long2 := strings.Repeat("x", 20)+"1", strings.Repeat("x", 20)+"2"
	if KeyOf(long1) == KeyOf(long2) || KeyOf(long1) != KeyOf(long1) || KeyOf(long1).String() != "xxxxxxx…" {
		t.Fatalf("long values: %q %q", KeyOf(long1).String(), KeyOf(long2).String())
	}
}

// TestAlignFollowsTheFields: the fields a model counts can change order,
// grow or shrink from one training round to the next. A state stored under
// the last model, read back and aligned to the next one's fields, says of a
// transaction exactly what a state that counted only those fields, in that
// order, says: no field is read as another's. A state encoded before tags
// existed is read as counting the wanted fields in order, as before.
func TestAlignFollowsTheFields(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	mcc, country, channel := TagOf("mcc"), TagOf("country"), TagOf("channel")
	step := func(s *State, tags []uint32, vals map[uint32]string, at time.Time) []CategoryValue {
		s.Align(tags)
		keys := make([]CategoryKey, len(tags))
		for k, tg := range tags {
			keys[k] = KeyOf(vals[tg])
		}
		out := make([]CategoryValue, len(tags))
		s.StepCategories(720*time.Hour, at, keys, out)
		return out
	}
	rng := rand.New(rand.NewPCG(3, 4))
	history := make([]map[uint32]string, 40)
	for i := range history {
		history[i] = map[uint32]string{
			mcc:     []string{"fuel", "fuel", "fuel", "grocery"}[rng.IntN(4)],
			country: []string{"FR", "FR", "DE"}[rng.IntN(3)],
			channel: []string{"web", "pos"}[rng.IntN(2)],
		}
	}
	next := map[uint32]string{mcc: "grocery", country: "DE", channel: "web"}
	for _, tc := range []struct {
		name      string
		then, now []uint32
	}{
		{"reordered", []uint32{mcc, country}, []uint32{country, mcc}},
		{"the first dropped", []uint32{mcc, country}, []uint32{country}},
		{"one added", []uint32{country}, []uint32{country, mcc}},
		{"replaced", []uint32{mcc, country}, []uint32{channel, country}},
		{"none now", []uint32{mcc, country}, nil},
	} {
		var then, want State
		for i, v := range history {
			ti := at.Add(time.Duration(i) * time.Hour)
			step(&then, tc.then, v, ti)
			// A state that always counted what is counted now, from
			// the transactions the last model counted it on.
			var wantTags []uint32
			for _, tg := range tc.now {
				if slices.Contains(tc.then, tg) {
					wantTags = append(wantTags, tg)
				}
			}
			step(&want, wantTags, v, ti)
		}
		var read State
		if err := read.UnmarshalBinary(then.AppendBinary(nil)); err != nil {
			t.Fatal(err)
		}
		ti := at.Add(41 * time.Hour)
		got := step(&read, tc.now, next, ti)
		exp := step(&want, tc.now, next, ti)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("%s: %v, want %v", tc.name, got, exp)
		}
		if n := len(read.AppendBinary(nil)); n != EncodedSize+min(len(tc.now), 1)+len(tc.now)*CategoryEncodedSize {
			t.Errorf("%s: the aligned state encodes in %d bytes", tc.name, n)
		}
	}

	// Before tags: version 2, tracks without them, read in order.
	var old State
	for i, v := range history {
		step(&old, []uint32{mcc, country}, v, at.Add(time.Duration(i)*time.Hour))
	}
	b := old.AppendBinary(nil)
	legacy := append([]byte{catVersion}, b[1:EncodedSize+1]...)
	for c := range 2 {
		tr := b[EncodedSize+1+c*catTrackSize:]
		legacy = append(legacy, tr[4:catTrackSize]...)
	}
	var fromOld, fromNew State
	if err := fromOld.UnmarshalBinary(legacy); err != nil {
		t.Fatal(err)
	}
	if err := fromNew.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if last, ok := EncodedLast(b); !ok || last != old.last {
		t.Errorf("EncodedLast of a tagged state: %d %v, want %d", last, ok, old.last)
	}
	ti := at.Add(41 * time.Hour)
	got := step(&fromOld, []uint32{mcc, country}, next, ti)
	exp := step(&fromNew, []uint32{mcc, country}, next, ti)
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Errorf("a state from before tags: %v, want %v", got, exp)
	}
	// Counting another number of fields, an old state's tracks cannot be
	// matched: they start empty rather than be read as another field's.
	var fewer State
	if err := fewer.UnmarshalBinary(legacy); err != nil {
		t.Fatal(err)
	}
	if got := step(&fewer, []uint32{country}, next, ti); got[0].History != 0 || !math.IsNaN(got[0].Share) {
		t.Errorf("an old state aligned to fewer fields: %v, want an empty track", got)
	}

	// A state from a newer version is refused as such, so that a scorer
	// leaves it alone instead of replacing it.
	newer := append([]byte{tagVersion + 1}, b[1:]...)
	if err := fewer.UnmarshalBinary(newer); !errors.Is(err, ErrNewerState) {
		t.Errorf("a newer state: %v, want ErrNewerState", err)
	}
	if err := fewer.UnmarshalBinary(b[:len(b)-1]); err == nil || errors.Is(err, ErrNewerState) {
		t.Errorf("a damaged state: %v, want an error that is not ErrNewerState", err)
	}
}
