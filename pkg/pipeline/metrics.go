package pipeline

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// maxSegmentLabels bounds the label cardinality of per-segment metrics.
const maxSegmentLabels = 50

func (m *metrics) observeSegment(segment string, alert bool, threshold float32) {
	s := m.segments[segment]
	if s == nil {
		if len(m.segments) >= maxSegmentLabels {
			if m.overflow == nil {
				m.overflow = m.newSegmentMetrics("other")
			}
			s = m.overflow
		} else {
			s = m.newSegmentMetrics(segment)
			m.segments[segment] = s
		}
	}
	// A decision series is created on its first decision, as before.
	c := &s.pass
	if alert {
		c = &s.alert
	}
	if *c == nil {
		*c = m.decided.WithLabelValues(s.label, strconv.FormatBool(alert))
	}
	(*c).Inc()
	s.threshold.Set(float64(threshold))
}

// segmentMetrics holds one segment's series, looked up once: resolving the
// labels for every record cost ~4% of the drain's CPU.
type segmentMetrics struct {
	label       string
	alert, pass prometheus.Counter // nil until the first such decision
	threshold   prometheus.Gauge
}

func (m *metrics) newSegmentMetrics(label string) *segmentMetrics {
	return &segmentMetrics{label: label, threshold: m.threshold.WithLabelValues(label)}
}

type metrics struct {
	threshold      *prometheus.GaugeVec
	segments       map[string]*segmentMetrics // the first maxSegmentLabels segments
	overflow       *segmentMetrics            // "other": every later segment
	decided        *prometheus.CounterVec
	records        *prometheus.CounterVec
	missing        *prometheus.CounterVec
	invalid        *prometheus.CounterVec
	score          prometheus.Histogram
	batch          prometheus.Histogram
	e2e            prometheus.Histogram
	lastBatch      prometheus.Gauge
	failures       prometheus.Counter
	commitFailures prometheus.Counter
	fetchErrors    prometheus.Counter
	lost           prometheus.Counter
	// entityUnreadable counts stored entity states that could not be read
	// (damaged: started afresh; a newer version's: left as they are).
	entityUnreadable prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		segments: map[string]*segmentMetrics{},
		threshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fraudstream_threshold",
			Help: "The latest threshold used, by segment (the first 50 segments; later ones are \"other\")."}, []string{"segment"}),
		decided: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_decisions_total",
			Help: "Decisions by the segment whose threshold decided them and by alert (the first 50 segments; later ones count as \"other\")."}, []string{"segment", "alert"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_records_total", Help: "Records processed, by outcome (scored, alert, dead_letter)."}, []string{"outcome"}),
		missing: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_missing_values_total",
			Help: "Learned fields absent or null in a record, by field."}, []string{"field"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_invalid_values_total",
			Help: "Learned fields present in a record but not of the field's kind (text for a number, an unparseable time, an array for a category), by field."}, []string{"field"}),
		score: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fraudstream_score", Help: "Anomaly scores.", Buckets: prometheus.ExponentialBuckets(1, 1.5, 20)}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fraudstream_batch_seconds", Help: "Time from a batch's start to its commit.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fraudstream_end_to_end_seconds",
			Help: "Time from a transaction's Kafka timestamp to its decision being written and committed.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		lastBatch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fraudstream_last_batch_timestamp_seconds", Help: "Unix time of the last committed batch."}),
		failures:  prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_batch_failures_total", Help: "Failed attempts to write a batch's outputs (each is retried)."}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_commit_failures_total",
			Help: "Failed attempts to commit a batch's offsets (retried; a commit the group refuses after a rebalance is given up and the records are decided again)."}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_fetch_errors_total", Help: "Failed fetches from the transactions topic (retried)."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_dead_letters_dropped_total",
			Help: "Dead letters the broker refused even without their value (logged with the record's partition and offset)."}),
		entityUnreadable: prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_entity_states_unreadable_total",
			Help: "Stored entity states that could not be read: damaged ones (the entity started afresh) and a newer version's (left as they are; the entity gave no value)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.threshold, m.decided, m.records, m.missing, m.invalid, m.score, m.batch, m.e2e,
			m.lastBatch, m.failures, m.commitFailures, m.fetchErrors, m.lost, m.entityUnreadable} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("pipeline: metrics: %w", err)
			}
		}
	}
	return m, nil
}
