package model

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fitEntityTest fits the test bundle with merchants as entities (their
// amounts are their habit).
func fitEntityTest(t *testing.T) *Bundle {
	t.Helper()
	b := fitTest(t)
	b.Encoder.Schema.EntityFields = []string{"merchant"}
	b.Encoder.Schema.AmountField = "amount"
	line, err := b.FitEntity(testRows(3000, 1), testRows(500, 2))
	if err != nil {
		t.Fatal(err)
	}
	if b.Entity == nil {
		t.Fatalf("no entity part: %s", line)
	}
	return b
}

// The entity part travels in the bundle, and a damaged one is refused.
func TestEntityPartRoundTrip(t *testing.T) {
	b := fitEntityTest(t)
	if b.Entity.Rows != 3000 || b.Entity.HistoryRows != 500 || !slices.Equal(b.Entity.Fields, []string{"merchant"}) {
		t.Fatalf("entity part %+v", b.Entity)
	}
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Entity, b.Entity) {
		t.Fatalf("entity part changed on the way:\n%+v\n%+v", back.Entity, b.Entity)
	}
	if v, err := back.NewEntityView(); err != nil || v == nil {
		t.Fatalf("view: %v, %v", v, err)
	}

	slices.Reverse(b.Entity.Tails[0].X)
	data, err = b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(data); err == nil || !strings.Contains(err.Error(), "entity tail of merchant") {
		t.Fatalf("a tail out of order: %v", err)
	}
	b.Entity.Tails[0].X = slices.Clone(back.Entity.Tails[0].X)
	b.Entity.Amount = "nope"
	data, _ = b.MarshalBinary()
	if _, err := Unmarshal(data); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("an amount the schema lacks: %v", err)
	}
}

// The reason names the amount, the multiple, the window, the entity and
// its typical amount.
func TestEntityReason(t *testing.T) {
	b := fitEntityTest(t)
	v, err := b.NewEntityView()
	if err != nil {
		t.Fatal(err)
	}
	got := v.Reason(0, "m3", 505.3, EntityValue{Ratio: math.Log(6.2), Mean: math.Log1p(81.5)})
	if want := "amount 505.30 is 6.2x the 30-day typical amount of merchant m3 (81.50)"; got != want {
		t.Fatalf("reason %q, want %q", got, want)
	}
}

// Without entity_fields, FitEntity leaves the bundle as it was: no part
// in the header, so the bytes are those an older build writes.
func TestNoEntityFieldsNoPart(t *testing.T) {
	b := fitTest(t)
	before, _ := b.MarshalBinary()
	if _, err := b.FitEntity(testRows(100, 1), nil); err != nil || b.Entity != nil {
		t.Fatalf("part %+v, err %v", b.Entity, err)
	}
	after, _ := b.MarshalBinary()
	if !slices.Equal(before, after) || strings.Contains(string(after), `"entity"`) {
		t.Fatal("a bundle without entity fields changed")
	}
}
