package reviewservice

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fraudstream/fraudstream/pkg/casework"
)

// metrics are the review service's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	queued   prometheus.Counter
	dead     prometheus.Counter
	labels   *prometheus.CounterVec
	requests *prometheus.HistogramVec
}

func newMetrics(svc *casework.Service, recent *recentStore) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.queued = prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_review_alerts_queued_total",
		Help: "Alerts queued for review (redeliveries of a queued transaction not counted)."})
	m.dead = prometheus.NewCounter(prometheus.CounterOpts{Name: "fraudstream_review_alerts_dead_lettered_total",
		Help: "Records on the alerts topic that were not alerts, sent to the dead-letter topic."})
	m.labels = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fraudstream_review_labels_total",
		Help: "Labels written to the labels topic by this replica, by label and source (case or cluster)."}, []string{"label", "source"})
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fraudstream_review_http_request_duration_seconds",
		Help: "Server time of the review page's and API's requests, by route and status.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)},
		[]string{"route", "code"})
	for _, l := range []string{"fraud", "legitimate", "unsure"} {
		for _, s := range []string{casework.SourceCase, casework.SourceCluster} {
			m.labels.WithLabelValues(l, s) // exported at zero, so increase() sees the first label
		}
	}
	m.reg.MustRegister(m.queued, m.dead, m.labels, m.requests)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraudstream_review_pending",
		Help: "Cases waiting for review (-1 when Redis cannot say)."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := svc.Pending(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraudstream_review_reranker_labels",
		Help: "Labels the re-ranker in use was fitted on (0: none yet)."}, func() float64 {
		if rr := svc.Reranker(); rr != nil {
			return float64(rr.Labels)
		}
		return 0
	}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraudstream_review_recent_transactions",
		Help: "Recent transactions held for similar-transaction search."}, func() float64 { return float64(recent.len()) }))
	return m
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// instrument times each request by the route pattern it matched (the
// pattern, not the path, so case ids do not become label values).
func (m *metrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, http.StatusText(sw.code)).Observe(time.Since(start).Seconds())
	})
}
