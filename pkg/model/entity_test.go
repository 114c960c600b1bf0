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

// A categorical field nearly constant per entity (each merchant's
// country) is counted, travels in the bundle, and a transaction whose
// value is new for its merchant gets the joined score and a reason that
// names the usual value; the same field drawn at random is left out.
func TestFitEntityCountsAConstantCategory(t *testing.T) {
	constant := func(rows [][]string) [][]string {
		for i, r := range rows {
			r[4] = map[string]string{"m0": "FR", "m1": "DE", "m2": "BE", "m3": "IT"}[r[2]]
			if i%50 == 0 {
				r[4] = "ES" // a little noise: nearly constant
			}
		}
		return rows
	}
	b := fitTest(t)
	b.Encoder.Schema.EntityFields = []string{"merchant"}
	b.Encoder.Schema.AmountField = "amount"
	line, err := b.FitEntity(constant(testRows(3000, 1)), constant(testRows(500, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if b.Entity == nil || len(b.Entity.Categories) != 1 || b.Entity.Categories[0].Entity != "merchant" || b.Entity.Categories[0].Field != "country" {
		t.Fatalf("categories %+v: %s", b.Entity, line)
	}
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil || !reflect.DeepEqual(back.Entity, b.Entity) {
		t.Fatalf("entity part changed on the way (%v):\n%+v\n%+v", err, back.Entity, b.Entity)
	}
	v, err := back.NewEntityView()
	if err != nil {
		t.Fatal(err)
	}
	r := v.NewReplay()
	vals := make([]EntityValue, 1)
	var tx Tx
	for _, row := range constant(testRows(300, 3)) {
		row[3] = "2024-03-01 10:00:00"
		v.Read(row, &tx)
		r.Step(&tx, vals)
	}
	row := []string{"x", "2.72", "m1", "2024-03-01 11:00:00", "US"}
	v.Read(row, &tx)
	r.Step(&tx, vals)
	joined, src := v.Join(0, vals)
	e, cat := v.Source(src)
	if e != 0 || cat != 0 || !(joined > 0) {
		t.Fatalf("a country new for its merchant: joined %v by source %d (values %+v)", joined, src, vals[0])
	}
	note, observed, usual := v.CategoryReason(cat, "m1", &tx, vals[0])
	if want := "country US is new for merchant m1, usually DE"; note != want || observed != "US" || usual != "DE" {
		t.Fatalf("reason %q (%q, %q), want %q", note, observed, usual, want)
	}

	// The countries at random, as testRows draws them: nothing counted.
	b = fitTest(t)
	b.Encoder.Schema.EntityFields = []string{"merchant"}
	b.Encoder.Schema.AmountField = "amount"
	if _, err := b.FitEntity(testRows(3000, 1), nil); err != nil || b.Entity == nil || b.Entity.Categories != nil {
		t.Fatalf("random countries: part %+v, err %v", b.Entity, err)
	}
}
