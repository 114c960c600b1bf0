package features

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Kind says how a field is used.
type Kind string

const (
	// Numeric fields are parsed as numbers, robustly scaled and reconstructed with squared error.
	Numeric Kind = "numeric"
	// Categorical fields are mapped to a vocabulary (plus OTHER and MISSING) and
	// reconstructed with softmax cross-entropy.
	Categorical Kind = "categorical"
	// Timestamp fields become cyclic hour-of-day and day-of-week.
	Timestamp Kind = "timestamp"
	// ID fields are kept for keys and output but never learned from.
	ID Kind = "id"
	// Ignored fields are dropped.
	Ignored Kind = "ignored"
)

func (k Kind) valid() bool {
	switch k {
	case Numeric, Categorical, Timestamp, ID, Ignored:
		return true
	}
	return false
}

// Learned reports whether the model learns from fields of this kind.
func (k Kind) Learned() bool { return k == Numeric || k == Categorical || k == Timestamp }

// Transform selects the numeric pre-scaling transform.
const (
	TransformAuto = ""     // decided when the encoder is fitted (log for heavy-tailed non-negative data)
	TransformLog  = "log"  // log1p, for non-negative amounts
	TransformNone = "none" // scale the raw value
)

// Field is one column of a transaction record.
type Field struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Layout is the time layout of a Timestamp field: a Go layout
	// ("2006-01-02 15:04:05"), "unix" (seconds) or "unixms".
	Layout string `json:"layout,omitempty"`
	// Transform applies to Numeric fields: "" (auto), "log" or "none".
	Transform string `json:"transform,omitempty"`
	// Reason records why inference chose the kind; informational.
	Reason string `json:"reason,omitempty"`
}

// Schema lists a record's fields and names the roles other programs rely on.
type Schema struct {
	Fields []Field `json:"fields"`
	// IDField names the transaction id (output only), if any.
	IDField string `json:"id_field,omitempty"`
	// KeyField names the entity key (card, customer), if any.
	KeyField string `json:"key_field,omitempty"`
	// TimeField names the event time, if any.
	TimeField string `json:"time_field,omitempty"`
	// EntityFields name the entities (card, customer, terminal) whose
	// behaviour over time is tracked (see pkg/entity), if any; they need
	// TimeField and AmountField. Set by InferEntities or by hand.
	EntityFields []string `json:"entity_fields,omitempty"`
	// AmountField names the transaction amount the entities' habits are
	// measured on, if any.
	AmountField string `json:"amount_field,omitempty"`
}

// Names returns the field names in order.
func (s *Schema) Names() []string {
	out := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		out[i] = f.Name
	}
	return out
}

// Index returns the position of the named field, or -1.
func (s *Schema) Index(name string) int {
	for i, f := range s.Fields {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// Validate checks that the schema is usable for learning.
func (s *Schema) Validate() error {
	if len(s.Fields) == 0 {
		return errors.New("schema: no fields")
	}
	seen := make(map[string]bool, len(s.Fields))
	learned := 0
	for i, f := range s.Fields {
		if f.Name == "" {
			return fmt.Errorf("schema: field %d has no name", i)
		}
		if seen[f.Name] {
			return fmt.Errorf("schema: field %q appears twice", f.Name)
		}
		seen[f.Name] = true
		if !f.Kind.valid() {
			return fmt.Errorf("schema: field %q has unknown kind %q (want numeric, categorical, timestamp, id or ignored)", f.Name, f.Kind)
		}
		if f.Kind == Timestamp && f.Layout == "" {
			return fmt.Errorf("schema: timestamp field %q has no layout", f.Name)
		}
		switch f.Transform {
		case TransformAuto, TransformLog, TransformNone:
		default:
			return fmt.Errorf("schema: field %q has unknown transform %q (want \"\", log or none)", f.Name, f.Transform)
		}
		if f.Kind.Learned() {
			learned++
		}
	}
	if learned == 0 {
		return errors.New("schema: no numeric, categorical or timestamp field to learn from")
	}
	for _, role := range []struct{ what, name string }{{"id_field", s.IDField}, {"key_field", s.KeyField}, {"time_field", s.TimeField}} {
		if role.name != "" && !seen[role.name] {
			return fmt.Errorf("schema: %s %q is not a field", role.what, role.name)
		}
	}
	return s.validateEntities()
}

// WriteJSON writes the schema as indented JSON, the form users edit.
func (s *Schema) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// ReadSchema reads and validates a schema written by WriteJSON.
func ReadSchema(r io.Reader) (*Schema, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var s Schema
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	for i := range s.Fields {
		s.Fields[i].Kind = Kind(strings.ToLower(string(s.Fields[i].Kind)))
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
