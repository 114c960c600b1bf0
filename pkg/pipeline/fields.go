package pipeline

import (
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraudstream/fraudstream/pkg/model"
)

// fieldStats counts each learned field's missing and invalid values
// (fraudstream_missing_values_total and fraudstream_invalid_values_total,
// by field) and watches their share per window of records: a producer that
// starts sending "EUR 12.50" for an amount, or drops a key, makes that
// share jump, which is logged once, while the budget would otherwise keep
// alerting on the noise without a word.
type fieldStats struct {
	names            []string
	missing, invalid []prometheus.Counter
	window           int
	n                int       // records in the current window
	bad              []int     // per field: missing or invalid in the window
	baseline         []float64 // per field: share in earlier windows (NaN: none yet)
	alarmed          []bool
}

func newFieldStats(b *model.Bundle, m *metrics, window int) *fieldStats {
	fs := &fieldStats{window: window}
	for _, f := range b.Encoder.Fields {
		fs.names = append(fs.names, f.Name)
		fs.missing = append(fs.missing, m.missing.WithLabelValues(f.Name))
		fs.invalid = append(fs.invalid, m.invalid.WithLabelValues(f.Name))
	}
	fs.bad = make([]int, len(fs.names))
	fs.alarmed = make([]bool, len(fs.names))
	fs.baseline = make([]float64, len(fs.names))
	for i := range fs.baseline {
		fs.baseline[i] = math.NaN()
	}
	return fs
}

// observe counts one record's field states; any says whether any field is
// not valid (the common case skips the loop).
func (fs *fieldStats) observe(states []model.FieldState, any bool) {
	fs.n++
	if !any {
		return
	}
	for f, st := range states {
		switch st {
		case model.Missing:
			fs.missing[f].Inc()
			fs.bad[f]++
		case model.Invalid:
			fs.invalid[f].Inc()
			fs.bad[f]++
		}
	}
}

// Jump rule: a field's share of missing or invalid values jumps when it is
// more than jumpFactor times its baseline and at least jumpMin above it;
// the alarm ends once the share is back within jumpMin/2 of the baseline.
const (
	jumpFactor = 2
	jumpMin    = 0.05
)

// flush closes the window once it is full, logging fields whose share
// jumped or recovered.
func (fs *fieldStats) flush(log *slog.Logger) {
	if fs.n < fs.window {
		return
	}
	for f := range fs.names {
		share := float64(fs.bad[f]) / float64(fs.n)
		base := fs.baseline[f]
		switch {
		case math.IsNaN(base):
			fs.baseline[f] = share
		case !fs.alarmed[f] && share > jumpFactor*base && share-base >= jumpMin:
			fs.alarmed[f] = true
			log.Warn("a field's share of missing or invalid values jumped; check the producer", "field", fs.names[f],
				"share", round3(share), "baseline", round3(base), "records", fs.n)
		case fs.alarmed[f] && share-base < jumpMin/2:
			fs.alarmed[f] = false
			log.Info("a field's share of missing or invalid values is back to its baseline", "field", fs.names[f],
				"share", round3(share), "baseline", round3(base))
		case !fs.alarmed[f]:
			fs.baseline[f] = 0.8*base + 0.2*share
		}
		fs.bad[f] = 0
	}
	fs.n = 0
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// describe says which fields made a record unusable, for its dead letter.
func (fs *fieldStats) describe(states []model.FieldState, missing, invalid int) string {
	var inv, mis []string
	for f, st := range states {
		switch st {
		case model.Invalid:
			inv = append(inv, fs.names[f])
		case model.Missing:
			mis = append(mis, fs.names[f])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d learned fields are missing or invalid", missing+invalid, len(states))
	if len(inv) > 0 {
		fmt.Fprintf(&b, "; invalid: %s", strings.Join(inv, ", "))
	}
	if len(mis) > 0 {
		fmt.Fprintf(&b, "; missing: %s", strings.Join(mis, ", "))
	}
	return b.String()
}
