package features

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Repeating ids (customers, terminals) are entities; the transaction id,
// a day counter and a mostly unique id are not; the amount is named.
func TestInferEntities(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	names := []string{"TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TIME_DAYS", "DEVICE_ID"}
	var rows [][]string
	for i := range 6000 {
		day := i / 200
		rows = append(rows, []string{
			fmt.Sprint(i),
			fmt.Sprintf("2018-04-%02d %02d:%02d:00", 1+day, rng.IntN(24), rng.IntN(60)),
			fmt.Sprint(rng.IntN(300)),
			fmt.Sprint(rng.IntN(1000)),
			fmt.Sprintf("%.2f", 5+rng.Float64()*100),
			fmt.Sprint(day),
			fmt.Sprint(rng.IntN(1_000_000)), // an id, but almost never repeated
		})
	}
	s := InferSchema(names, rows, InferOptions{})
	if s.Fields[s.Index("TX_TIME_DAYS")].Kind != ID || s.Fields[s.Index("DEVICE_ID")].Kind != ID {
		t.Fatalf("the test's premise: the day counter and device are ids, got %+v", s.Fields)
	}
	notes := InferEntities(s, rows)
	if want := []string{"CUSTOMER_ID", "TERMINAL_ID"}; !slices.Equal(s.EntityFields, want) {
		t.Fatalf("entities %v, want %v (notes %v)", s.EntityFields, want, notes)
	}
	if s.AmountField != "TX_AMOUNT" {
		t.Fatalf("amount %q", s.AmountField)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// Set by hand (or inferred before): kept as it is.
	s.EntityFields = []string{"TERMINAL_ID"}
	if InferEntities(s, rows); !slices.Equal(s.EntityFields, []string{"TERMINAL_ID"}) {
		t.Fatalf("a named entity was replaced: %v", s.EntityFields)
	}
}

// Without an amount there is no habit to measure: nothing is named.
func TestInferEntitiesNeedsAnAmount(t *testing.T) {
	names := []string{"ts", "card_id", "merchant"}
	var rows [][]string
	for i := range 2000 {
		rows = append(rows, []string{fmt.Sprintf("2024-05-01 %02d:%02d:%02d", i/3600%24, i/60%60, i%60), fmt.Sprint(i % 100), []string{"a", "b"}[i%2]})
	}
	s := InferSchema(names, rows, InferOptions{})
	if InferEntities(s, rows); len(s.EntityFields) > 0 || s.AmountField != "" {
		t.Fatalf("entities %v, amount %q without an amount field", s.EntityFields, s.AmountField)
	}
}

func TestValidateEntityRoles(t *testing.T) {
	base := func() *Schema {
		return &Schema{Fields: []Field{{Name: "t", Kind: Timestamp, Layout: "2006-01-02"}, {Name: "card", Kind: ID}, {Name: "amt", Kind: Numeric}},
			TimeField: "t", AmountField: "amt", EntityFields: []string{"card"}}
	}
	if err := base().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*Schema)
		want string
	}{
		{func(s *Schema) { s.EntityFields = []string{"nope"} }, `entity field "nope" is not a field`},
		{func(s *Schema) { s.EntityFields = []string{"card", "card"} }, "named twice"},
		{func(s *Schema) { s.AmountField = "" }, "need a time_field and an amount_field"},
		{func(s *Schema) { s.AmountField = "x" }, `amount_field "x" is not a field`},
		{func(s *Schema) { s.TimeField = "amt" }, "need a timestamp"},
	} {
		s := base()
		c.edit(s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", err, c.want)
		}
	}
}
