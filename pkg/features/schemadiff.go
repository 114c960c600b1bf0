package features

import "fmt"

// SchemaChange is one field whose kind differs between two schemas. A field
// present in only one of them has the empty kind in the other.
type SchemaChange struct {
	Field    string
	Old, New Kind
}

func (c SchemaChange) String() string {
	kind := func(k Kind) string {
		if k == "" {
			return "(absent)"
		}
		return string(k)
	}
	return fmt.Sprintf("%s: %s -> %s", c.Field, kind(c.Old), kind(c.New))
}

// DiffSchemas lists the fields whose kind changes from old to new: changed
// and removed fields in old's order, then added fields in new's order. Field
// order, reasons, layouts and transforms are not compared. Nil schemas have
// no fields.
func DiffSchemas(old, new *Schema) []SchemaChange {
	kinds := func(s *Schema) map[string]Kind {
		m := map[string]Kind{}
		if s != nil {
			for _, f := range s.Fields {
				m[f.Name] = f.Kind
			}
		}
		return m
	}
	ok, nk := kinds(old), kinds(new)
	var out []SchemaChange
	if old != nil {
		for _, f := range old.Fields {
			if n := nk[f.Name]; n != f.Kind {
				out = append(out, SchemaChange{Field: f.Name, Old: f.Kind, New: n})
			}
		}
	}
	if new != nil {
		for _, f := range new.Fields {
			if _, seen := ok[f.Name]; !seen {
				out = append(out, SchemaChange{Field: f.Name, New: f.Kind})
			}
		}
	}
	return out
}
