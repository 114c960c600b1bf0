package model

import "github.com/fraudstream/fraudstream/pkg/features"

// FieldState says whether a learned field of a record could be used.
type FieldState uint8

const (
	// Valid: the value was encoded as given.
	Valid FieldState = iota
	// Missing: the field was absent, null or a null token ("", "N/A", …).
	Missing
	// Invalid: a value was present but does not fit the field's kind (text
	// in a numeric field, an unparseable time, an array or object where a
	// category was learned). It is encoded as missing (numeric, timestamp)
	// or as a category not seen in training.
	Invalid
)

// classify records slot i's field states from the row just encoded into it.
// Most fields are valid (FieldState 0): it clears the slot's states, then
// looks only at the fields the encoder marked missing and at the
// categorical ones, reading their sources from the scorer's compact copy
// (fieldSrc, catField): the encoder's fields are large structs, and
// striding through them took a tenth of mixed-record scoring.
func (s *Scorer) classify(i int, row []string) {
	st := s.states[i*s.nf : (i+1)*s.nf]
	miss := s.d.Miss[i*s.nf : (i+1)*s.nf]
	clear(st)
	raw := func(f int) string {
		if src := int(s.fieldSrc[f]); src < len(row) {
			return row[src]
		}
		return ""
	}
	var m, bad int32
	for f, missing := range miss {
		if !missing {
			continue
		}
		if features.IsNull(raw(f)) {
			st[f] = Missing
			m++
		} else {
			st[f] = Invalid
			bad++
		}
	}
	for _, f := range s.catField {
		// The JSON decoder hands nested values over as their raw text.
		if v := raw(int(f)); !miss[f] && len(v) > 0 && (v[0] == '[' || v[0] == '{') {
			st[f] = Invalid
			bad++
		}
	}
	s.missing[i], s.invalid[i] = m, bad
}

// Unusable returns how many of slot i's learned fields were missing and
// how many were invalid.
func (s *Scorer) Unusable(i int) (missing, invalid int) {
	return int(s.missing[i]), int(s.invalid[i])
}

// FieldStates returns the state of each learned field of slot i, in the
// encoder's field order (valid until the slot is reused).
func (s *Scorer) FieldStates(i int) []FieldState { return s.states[i*s.nf : (i+1)*s.nf] }

// Fields returns the number of learned fields.
func (s *Scorer) Fields() int { return s.nf }
