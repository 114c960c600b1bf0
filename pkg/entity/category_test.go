package entity

import (
	"math"
	"math/rand/v2"
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
