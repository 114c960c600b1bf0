// Package ops serves a process's operational endpoints: /metrics from an
// injected Prometheus gatherer, /healthz (alive) and /readyz (able to do its
// work), with a graceful shutdown when the context ends.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is a listening ops endpoint.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	live atomic.Pointer[func() error]
}

// Listen binds addr. ready reports why the process is not ready yet (nil:
// ready); a nil ready means always ready.
func Listen(addr string, g prometheus.Gatherer, ready func() error) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	s := &Server{ln: ln}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if f := s.live.Load(); f != nil {
			if err := (*f)(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// SetLive installs the liveness check behind /healthz: an error makes it
// answer 503 with the reason (an orchestrator restarts the process). Without
// one, /healthz answers 200 while the process serves.
func (s *Server) SetLive(live func() error) { s.live.Store(&live) }

// Addr is the address actually bound (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx ends, then shuts down (waiting up to 5s for
// requests in flight) and returns once the server has stopped.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() {
		if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	})
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	wg.Wait()
	if serveErr != nil {
		return serveErr
	}
	return err
}
