// Package casework keeps the analysts' review queue in Redis: alerts
// become cases, ordered by priority (the detector's score, or the
// re-ranker's fraud probability once labels exist) and interleaved across
// embedding clusters; labels go to the labels topic (the system of record)
// and are indexed here; confirmed fraud raises the cases that share its
// card or terminal or lie near it. Several replicas of the review service
// share one queue: every state change is a Redis transaction or script.
// The ordering and learning math is pkg/review's; this package is its I/O.
package casework

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/review"
)

// Alert is the part of an alerts-topic record the queue reads.
type Alert struct {
	DecisionID    string          `json:"decision_id"`
	TransactionID string          `json:"transaction_id"`
	EntityKey     string          `json:"entity_key"`
	EventTime     string          `json:"event_time,omitempty"`
	Score         float32         `json:"score"`
	Threshold     float32         `json:"threshold"`
	Segment       string          `json:"segment,omitempty"`
	ModelVersion  string          `json:"model_version"`
	Reasons       []review.Reason `json:"reasons"`
	Transaction   json.RawMessage `json:"transaction"`
}

// MaxAlertBytes bounds an alert record; a longer one is refused.
const MaxAlertBytes = 256 << 10

// ParseAlert decodes and checks one alerts-topic record.
func ParseAlert(value []byte) (Alert, error) {
	var a Alert
	if len(value) > MaxAlertBytes {
		return a, fmt.Errorf("alert of %d bytes is larger than %d", len(value), MaxAlertBytes)
	}
	if err := json.Unmarshal(value, &a); err != nil {
		return a, fmt.Errorf("alert: %w", err)
	}
	switch {
	case a.TransactionID == "":
		return a, errors.New("alert: no transaction_id")
	case len(a.Transaction) == 0 || a.Transaction[0] != '{':
		return a, errors.New("alert: no transaction object")
	case math.IsNaN(float64(a.Score)) || math.IsNaN(float64(a.Threshold)):
		return a, errors.New("alert: score or threshold is not a number")
	}
	return a, nil
}

// Case is an alert in the queue, with what the review service derived
// from it under the current model.
type Case struct {
	Alert
	// Received is when the review service queued it.
	Received time.Time `json:"received"`
	// Digest names the model the features, embedding and cluster come from.
	Digest    string    `json:"digest,omitempty"`
	Features  []float32 `json:"features,omitempty"`
	Embedding []float32 `json:"embedding,omitempty"`
	// Keys are the entity keys ("terminal_id=T7") of the transaction.
	Keys []string `json:"keys,omitempty"`
	// Cluster is the embedding cluster, -1 while clusters are being learned.
	Cluster  int     `json:"cluster"`
	Priority float64 `json:"priority"`
	// Prob is the re-ranker's fraud probability, when there is one.
	Prob *float64 `json:"prob,omitempty"`
	// Raised says why the case was raised: it shares an entity with, or
	// lies near, a confirmed fraud; Near, that it lies near one (see lift).
	Raised string `json:"raised,omitempty"`
	Near   bool   `json:"near,omitempty"`
	// Label is the latest label, when the case has been reviewed.
	Label *labels.Label `json:"label,omitempty"`
}

// Pending reports whether the case still waits for review.
func (c *Case) Pending() bool { return c.Label == nil }

// ScorePriority is a case's priority before the re-ranker exists: how far
// its score is above its threshold, mapped into (0, 1) so that it and the
// re-ranker's probabilities are on one scale (a case at its threshold
// gets 0.5, one at e times the threshold 0.88).
func ScorePriority(score, threshold float32) float64 {
	if !(threshold > 0) || !(score > 0) {
		return 0.5
	}
	return 0.5 * (1 + math.Tanh(math.Log(float64(score)/float64(threshold))))
}

// nearLift is the lift of a case among a confirmed fraud's nearest
// neighbours (within the clusters' radius).
const nearLift = 0.25

// lift is what a raised case adds to its priority (otherwise in [0, 1]):
// for each of its entity keys with confirmed fraud, the evidence
// frauds / (frauds + legitimate + 1), the largest counting (one fraud and
// no legitimate label: 0.5; one fraud among four labels: 0.2), so a busy
// merchant with one fraud among many good labels lifts little; at least
// nearLift for a near neighbour of a confirmed fraud.
func lift(c *Case, t map[string]tally) float64 {
	if c.Raised == "" {
		return 0
	}
	var l float64
	if c.Near {
		l = nearLift
	}
	for _, k := range c.Keys {
		tl := t[k]
		if tl.fraud > 0 {
			l = max(l, float64(tl.fraud)/float64(tl.fraud+max(tl.legit, 0)+1))
		}
	}
	return l
}
