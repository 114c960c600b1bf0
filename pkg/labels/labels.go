// Package labels reads analysts' labels, the records of the labels topic
// (key = transaction id), and resolves relabelling: the latest label of a
// transaction wins. It does no I/O.
//
// A label is JSON:
//
//	{"transaction_id":"t1","label":"fraud","analyst":"ana","at":"2026-12-04T10:00:00Z",
//	 "model_version":"7","note":"","source":"case"}
//
// label is fraud, legitimate or unsure; source is case or cluster.
package labels

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Values of Label.Label.
const (
	Fraud      = "fraud"
	Legitimate = "legitimate"
	Unsure     = "unsure"
)

// Label is one analyst decision.
type Label struct {
	TransactionID string    `json:"transaction_id"`
	Label         string    `json:"label"`
	Analyst       string    `json:"analyst"`
	At            time.Time `json:"at"`
	ModelVersion  string    `json:"model_version,omitempty"`
	Note          string    `json:"note,omitempty"`
	Source        string    `json:"source,omitempty"`
}

// MaxSize bounds a label record; a longer one is refused unread.
const MaxSize = 16 << 10

// Parse decodes and checks one label record.
func Parse(value []byte) (Label, error) {
	var l Label
	if len(value) > MaxSize {
		return l, fmt.Errorf("labels: record of %d bytes is larger than %d", len(value), MaxSize)
	}
	if err := json.Unmarshal(value, &l); err != nil {
		return l, fmt.Errorf("labels: %w", err)
	}
	switch {
	case l.TransactionID == "":
		return l, errors.New("labels: no transaction_id")
	case l.Label != Fraud && l.Label != Legitimate && l.Label != Unsure:
		return l, fmt.Errorf("labels: label %q is not fraud, legitimate or unsure", l.Label)
	case l.At.IsZero():
		return l, errors.New("labels: no time (at)")
	}
	return l, nil
}

// Book holds the latest label of each transaction.
type Book struct {
	latest map[string]Label
	// Bad counts records Add refused.
	Bad int
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{latest: map[string]Label{}} }

// Add reads one record in topic order. A transaction's label given later
// (by its time, then by topic order) replaces the earlier one; a bad
// record is counted and skipped.
func (b *Book) Add(value []byte) {
	l, err := Parse(value)
	if err != nil {
		b.Bad++
		return
	}
	if old, ok := b.latest[l.TransactionID]; ok && old.At.After(l.At) {
		return
	}
	b.latest[l.TransactionID] = l
}

// Get returns the latest label of a transaction.
func (b *Book) Get(id string) (Label, bool) {
	l, ok := b.latest[id]
	return l, ok
}

// Len is the number of labelled transactions.
func (b *Book) Len() int { return len(b.latest) }

// Fraud reports whether a transaction's latest label is fraud.
func (b *Book) Fraud(id string) bool { return b.latest[id].Label == Fraud }
