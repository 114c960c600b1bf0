package pipeline

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSegmentMetrics: decisions are counted by segment and alert, the
// threshold gauge holds each segment's latest threshold, segments past the
// first maxSegmentLabels share the "other" label, and observing a decision
// allocates nothing (it runs once per record).
func TestSegmentMetrics(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxSegmentLabels + 10 {
		seg := fmt.Sprintf("s%d", i)
		for k := range 3 {
			m.observeSegment(seg, k == 0, float32(i+k))
		}
	}
	m.observeSegment("s0", true, 0.5) // a known segment stays itself after the cap
	if got := testutil.ToFloat64(m.decided.WithLabelValues("s0", "true")); got != 2 {
		t.Errorf("s0 alerts: %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.decided.WithLabelValues("s7", "false")); got != 2 {
		t.Errorf("s7 passes: %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.threshold.WithLabelValues("s0")); got != 0.5 {
		t.Errorf("s0 threshold: %v, want the latest, 0.5", got)
	}
	if got := testutil.ToFloat64(m.decided.WithLabelValues("other", "false")); got != 20 {
		t.Errorf("other passes: %v, want 20 (10 segments past the cap, 2 each)", got)
	}
	if got := testutil.ToFloat64(m.threshold.WithLabelValues("other")); got != float64(maxSegmentLabels+9+2) {
		t.Errorf("other threshold: %v, want the latest, %d", got, maxSegmentLabels+9+2)
	}
	if n := testutil.CollectAndCount(m.decided); n != 2*(maxSegmentLabels+1) {
		t.Errorf("%d decision series, want %d", n, 2*(maxSegmentLabels+1))
	}
	if a := testing.AllocsPerRun(100, func() {
		m.observeSegment("s3", true, 1)
		m.observeSegment("s99", false, 1)
	}); a != 0 {
		t.Errorf("observeSegment allocates %v times per call", a)
	}
}

// BenchmarkObserveSegment: the per-record cost of the decision metrics.
func BenchmarkObserveSegment(b *testing.B) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	segs := []string{"", "EUR", "USD", "GBP"}
	for i := 0; b.Loop(); i++ {
		m.observeSegment(segs[i&3], i%100 == 0, 1.5)
	}
}
