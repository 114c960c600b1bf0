package pipeline

import (
	"encoding/json"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// Delivery is at least once: a record whose outputs were written but whose
// offset was not committed (a crash, a rebalance, a broker outage) is
// decided again. Every decision therefore carries a decision id that is a
// function of the record's place in the source topic and of the model that
// decided it, so that:
//
//   - two outputs with the same decision_id are the same decision repeated
//     (same record, same model); consumers keep one;
//   - a record decided again after a model swap gets another decision_id
//     but the same source (topic, partition, offset); consumers that want
//     one decision per transaction keep the first per source.
//
// The redelivered decision may differ in its threshold (the budget moved
// meanwhile), so "first per decision_id" is the rule, not "identical
// payloads".

// Alert is the JSON written to the alerts topic.
type Alert struct {
	DecisionID    string          `json:"decision_id"`
	TransactionID string          `json:"transaction_id"`
	EntityKey     string          `json:"entity_key"`
	EventTime     string          `json:"event_time,omitempty"`
	Score         float32         `json:"score"`
	Threshold     float32         `json:"threshold"`
	Policy        string          `json:"policy"`
	Segment       string          `json:"segment"`
	ModelVersion  string          `json:"model_version"`
	ModelDigest   string          `json:"model_digest,omitempty"`
	Source        Origin          `json:"source"`
	Reasons       []AlertReason   `json:"reasons"`
	Transaction   json.RawMessage `json:"transaction"`
}

// Origin is where a decided record was read.
type Origin struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

// AlertReason is one field's part in an alert.
type AlertReason struct {
	Field        string  `json:"field"`
	Contribution float32 `json:"contribution"`
	Observed     string  `json:"observed"`
	Expected     string  `json:"expected"`
	// Probability the model gave the observed category (categorical
	// fields only).
	Probability *float32 `json:"probability,omitempty"`
	// Note says what an analyst can use: "not seen in training", "missing",
	// "outside the training range" (empty when there is nothing to add).
	Note string `json:"note,omitempty"`
}

// Decision is the compact JSON written to the scores topic for every record.
type Decision struct {
	DecisionID    string  `json:"decision_id"`
	TransactionID string  `json:"id"`
	Score         float32 `json:"score"`
	Threshold     float32 `json:"threshold"`
	Alert         bool    `json:"alert"`
	Policy        string  `json:"policy"`
	Segment       string  `json:"segment"`
	ModelVersion  string  `json:"model_version"`
	ModelDigest   string  `json:"model_digest,omitempty"`
	Source        Origin  `json:"source"`
}

// DecisionID is the deterministic id of the decision on message m by the
// model identified by digest (or, without a digest, its version):
// "topic/partition/offset@model", the model cut to 12 hex digits.
func DecisionID(m kafka.Message, model string) string {
	if len(model) > 12 {
		model = model[:12]
	}
	b := make([]byte, 0, len(m.Topic)+len(model)+24)
	b = append(b, m.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(m.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, m.Offset, 10)
	b = append(b, '@')
	b = append(b, model...)
	return string(b)
}

func sourceOf(m kafka.Message) Origin {
	return Origin{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
}
