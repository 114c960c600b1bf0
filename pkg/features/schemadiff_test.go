package features

import (
	"fmt"
	"testing"
)

func TestDiffSchemas(t *testing.T) {
	old := &Schema{Fields: []Field{
		{Name: "tx_id", Kind: ID},
		{Name: "card_id", Kind: Categorical},
		{Name: "amount", Kind: Numeric, Transform: TransformLog},
		{Name: "note", Kind: Ignored},
	}}
	new := &Schema{Fields: []Field{
		{Name: "amount", Kind: Numeric, Transform: TransformNone, Reason: "edited"}, // reordered, transform changed: not a kind change
		{Name: "tx_id", Kind: ID},
		{Name: "card_id", Kind: ID},
		{Name: "country", Kind: Categorical},
	}}
	got := fmt.Sprint(DiffSchemas(old, new))
	if want := "[card_id: categorical -> id note: ignored -> (absent) country: (absent) -> categorical]"; got != want {
		t.Fatalf("diff %s, want %s", got, want)
	}
	if d := DiffSchemas(old, old); len(d) != 0 {
		t.Fatalf("a schema differs from itself: %v", d)
	}
	if d := DiffSchemas(nil, old); len(d) != 4 || d[0].Old != "" || d[0].New != ID {
		t.Fatalf("diff from nothing: %v", d)
	}
}
