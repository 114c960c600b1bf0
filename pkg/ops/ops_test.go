package ops

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpointsAndShutdown(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ops_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	var ready atomic.Bool
	s, err := Listen("127.0.0.1:0", reg, func() error {
		if !ready.Load() {
			return errors.New("no model loaded yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	get := func(path string) (int, string) {
		r, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no model") {
		t.Fatalf("readyz before ready: %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "ops_test_total 1") {
		t.Fatalf("metrics: %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestLoggerWritesReadableDurations(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf).Info("waiting", "retry_in", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"retry_in":"1.5s"`) {
		t.Fatalf("duration not written as text: %s", buf.String())
	}
}

func TestLivenessCheck(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	get := func() (int, string) {
		res, err := http.Get("http://" + srv.Addr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get(); code != 200 {
		t.Fatalf("healthz without a check: %d", code)
	}
	var stalled atomic.Bool
	srv.SetLive(func() error {
		if stalled.Load() {
			return errors.New("no batch for 3m")
		}
		return nil
	})
	if code, _ := get(); code != 200 {
		t.Fatalf("healthy: %d", code)
	}
	stalled.Store(true)
	if code, body := get(); code != 503 || !strings.Contains(body, "no batch") {
		t.Fatalf("stalled: %d %q", code, body)
	}
}
