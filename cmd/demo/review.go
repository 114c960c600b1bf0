package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/reviewservice"
	"github.com/fraudstream/fraudstream/pkg/reviewweb"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// The demo's analyst. A fixed password is fine on localhost; anywhere
// else the users file comes from `review passwd`.
const (
	demoUser     = "demo"
	demoPassword = "demo-review"
	topicLabels  = "labels"
)

// startReview runs the review service on the demo's broker and Redis and,
// with --analyst-sim, a simulated analyst who works the queue from the top.
func startReview(ctx context.Context, c liveConfig, sc stream.Config, rc *redis.Client, tr *truth, goRun func(string, func() error), stdout io.Writer) error {
	line, err := reviewweb.Line(demoUser, reviewweb.RoleAnalyst, demoPassword)
	if err != nil {
		return err
	}
	users, err := reviewweb.ParseUsers(strings.NewReader(line))
	if err != nil {
		return err
	}
	ready := make(chan *casework.Service, 1)
	cfg := reviewservice.Config{Stream: sc, Redis: rc, Alerts: topicAlerts, Labels: topicLabels, Transactions: topicTx, Dead: "alerts-dead",
		CreateTopics: true, Users: users, Addr: c.ReviewAddr, InsecureCookies: true, Recent: 200_000, Retention: c.Window, Refit: 10 * time.Second,
		Ready: func(url string, svc *casework.Service) {
			fmt.Fprintf(stdout, "review page: %s (user %s, password %s)\n", url, demoUser, demoPassword)
			ready <- svc
		}}
	goRun("review", func() error { return reviewservice.Run(ctx, cfg) })
	if !c.AnalystSim {
		return nil
	}
	goRun("analyst-sim", func() error {
		select {
		case <-ctx.Done():
			return nil
		case svc := <-ready:
			return simulateAnalyst(ctx, c, svc, tr)
		}
	})
	return nil
}

// analyst counts the simulated analyst's work for the summaries.
type analyst struct {
	mu      sync.Mutex
	reviews int
	frauds  int
	recent  []bool // the last 50 reviews, fraud or not
}

func (a *analyst) add(fraud bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reviews++
	if fraud {
		a.frauds++
	}
	if a.recent = append(a.recent, fraud); len(a.recent) > 50 {
		a.recent = a.recent[1:]
	}
}

func (a *analyst) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reviews == 0 {
		return "analyst-sim: waiting for cases"
	}
	last := 0
	for _, f := range a.recent {
		if f {
			last++
		}
	}
	return fmt.Sprintf("analyst-sim: %d reviewed, %d fraud | precision %.2f overall, %.2f of the last %d", a.reviews, a.frauds,
		ratio(a.frauds, a.reviews), ratio(last, len(a.recent)), len(a.recent))
}

// simulateAnalyst labels the top of the queue --reviews-per-minute times a
// minute with the generator's truth, as analyst "analyst-sim".
func simulateAnalyst(ctx context.Context, c liveConfig, svc *casework.Service, tr *truth) error {
	tick := time.NewTicker(time.Minute / time.Duration(max(c.ReviewsPerMinute, 1)))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		q, err := svc.Queue(ctx, 1)
		if err != nil || len(q) == 0 {
			continue
		}
		fraud := tr.fraud(q[0].ID())
		l := labels.Legitimate
		if fraud {
			l = labels.Fraud
		}
		if _, err := svc.Label(ctx, labels.Label{TransactionID: q[0].ID(), Label: l, Analyst: "analyst-sim",
			Note: "simulated from the generator's truth"}); err != nil {
			continue
		}
		tr.analyst.add(fraud)
	}
}
