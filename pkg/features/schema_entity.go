package features

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// maxEntityFields bounds the entity fields of a schema (each costs a state
// lookup per transaction).
const maxEntityFields = 8

// amountName matches the names of transaction amount fields.
var amountName = regexp.MustCompile(`(?i)(amount|amt)`)

// validateEntities checks the entity roles: named fields, each once, with
// the event time and amount they are measured by.
func (s *Schema) validateEntities() error {
	if s.AmountField != "" && s.Index(s.AmountField) < 0 {
		return fmt.Errorf("schema: amount_field %q is not a field", s.AmountField)
	}
	if len(s.EntityFields) == 0 {
		return nil
	}
	if len(s.EntityFields) > maxEntityFields {
		return fmt.Errorf("schema: %d entity_fields, at most %d are tracked", len(s.EntityFields), maxEntityFields)
	}
	seen := make(map[string]bool, len(s.EntityFields))
	for _, name := range s.EntityFields {
		if s.Index(name) < 0 {
			return fmt.Errorf("schema: entity field %q is not a field", name)
		}
		if seen[name] {
			return fmt.Errorf("schema: entity field %q is named twice", name)
		}
		seen[name] = true
	}
	if s.TimeField == "" || s.AmountField == "" {
		return fmt.Errorf("schema: entity_fields need a time_field and an amount_field (the habits are amounts over event time)")
	}
	if f := s.Fields[s.Index(s.TimeField)]; f.Kind != Timestamp {
		return fmt.Errorf("schema: time_field %q is %s, entity_fields need a timestamp", f.Name, f.Kind)
	}
	return nil
}

// InferEntities names the schema's entities and amount when it has none
// and the rows (in schema order) show them: the amount is the first
// numeric field named like one (amount, amt); the entities are the id
// fields other than the transaction id whose values repeat (at least half
// the values are repeats and there are more values than a category keeps:
// cards, customers, terminals) and that are not time counters. Nothing is
// named without an event time and an amount. It reports what it named.
func InferEntities(s *Schema, rows [][]string) []string {
	if len(s.EntityFields) > 0 || s.TimeField == "" || s.Fields[s.Index(s.TimeField)].Kind != Timestamp {
		return nil
	}
	setAmount := s.AmountField == ""
	if setAmount {
		for _, f := range s.Fields {
			if f.Kind == Numeric && amountName.MatchString(f.Name) {
				s.AmountField = f.Name
				break
			}
		}
		if s.AmountField == "" {
			return nil
		}
	}
	stride := 1
	const maxSample = 100000
	if len(rows) > maxSample {
		stride = (len(rows) + maxSample - 1) / maxSample
	}
	ti := s.Index(s.TimeField)
	layout := s.Fields[ti].Layout
	var notes []string
	for c, f := range s.Fields {
		if f.Kind != ID || f.Name == s.IDField {
			continue
		}
		distinct := map[string]struct{}{}
		nonEmpty := 0
		var tv []timeValue
		for r := 0; r < len(rows); r += stride {
			row := rows[r]
			if c >= len(row) || IsNull(row[c]) {
				continue
			}
			v := strings.TrimSpace(row[c])
			nonEmpty++
			distinct[v] = struct{}{}
			if ti < len(row) {
				if t, ok := parseClock(strings.TrimSpace(row[ti]), layout); ok {
					if x, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(x) && !math.IsInf(x, 0) {
						tv = append(tv, timeValue{float64(t.unix), x})
					}
				}
			}
		}
		if len(distinct) <= vocabLevels || 2*len(distinct) > nonEmpty {
			continue
		}
		// A counter (seconds or days since the start) repeats too, but
		// moves with the time; an entity's ids do not.
		if g, ok := timeGamma(tv); ok && math.Abs(g) >= minCounterGamma {
			continue
		}
		s.EntityFields = append(s.EntityFields, f.Name)
		notes = append(notes, fmt.Sprintf("%s (%d values, %.1f records each)", f.Name, len(distinct), float64(nonEmpty)/float64(len(distinct))))
		if len(s.EntityFields) == maxEntityFields {
			break
		}
	}
	if len(s.EntityFields) == 0 && setAmount {
		s.AmountField = ""
	}
	return notes
}
