// Package fleet makes scorer workers share one alert budget: each worker
// publishes its recent-score window (a threshold.Sketch) to Redis on a
// short interval and merges the windows of the others, so the threshold
// is placed on the fleet's traffic, not on one worker's share of it.
//
// Whole windows are exchanged rather than deltas: a window is bounded
// (at most a few thousand buckets, a few KB encoded) and publishing it is
// idempotent, so a lost or repeated exchange never double-counts. Each
// worker's key expires after TTL, so a dead worker drops out of the fleet.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/threshold"
)

// Config configures an Exchange.
type Config struct {
	Client redis.UniversalClient // required
	// Prefix starts the keys. Default "fraudstream:fleet:".
	Prefix string
	// ID names this worker. Required.
	ID string
	// TTL is how long a worker's window counts after its last exchange.
	// Default 10s.
	TTL time.Duration
}

// Exchange shares one worker's budget window with its peers. The Budget it
// wraps is guarded by a mutex: call Decide through the Exchange.
type Exchange struct {
	cfg Config
	mu  sync.Mutex
	b   *threshold.Budget
}

// New wraps b.
func New(cfg Config, b *threshold.Budget) (*Exchange, error) {
	if cfg.Client == nil || cfg.ID == "" || b == nil {
		return nil, errors.New("fleet: a Redis client, a worker ID and a budget are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "fraudstream:fleet:"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	return &Exchange{cfg: cfg, b: b}, nil
}

// Decide decides with the fleet-wide threshold.
func (e *Exchange) Decide(score float64) (float64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.b.Decide(score)
}

// Sync publishes this worker's window and merges the live peers' windows
// into the budget. On a Redis error the budget keeps its last peer view.
func (e *Exchange) Sync(ctx context.Context) error {
	e.mu.Lock()
	blob, err := e.b.Window().Sketch().MarshalBinary()
	alpha := e.b.Window().Sketch().Alpha()
	e.mu.Unlock()
	if err != nil {
		return err
	}
	members := e.cfg.Prefix + "members"
	_, err = e.cfg.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, e.cfg.Prefix+"w:"+e.cfg.ID, blob, e.cfg.TTL)
		p.SAdd(ctx, members, e.cfg.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleet: publish window: %w", err)
	}
	ids, err := e.cfg.Client.SMembers(ctx, members).Result()
	if err != nil {
		return fmt.Errorf("fleet: list workers: %w", err)
	}
	peers := threshold.NewSketch(alpha)
	for _, id := range ids {
		if id == e.cfg.ID {
			continue
		}
		b, err := e.cfg.Client.Get(ctx, e.cfg.Prefix+"w:"+id).Bytes()
		if errors.Is(err, redis.Nil) {
			e.cfg.Client.SRem(ctx, members, id) // expired: the worker is gone
			continue
		}
		if err != nil {
			return fmt.Errorf("fleet: read window of %s: %w", id, err)
		}
		s, err := threshold.UnmarshalSketch(b)
		if err != nil {
			continue // a foreign or damaged blob does not stop the fleet
		}
		if err := peers.Merge(s); err != nil {
			continue
		}
	}
	e.mu.Lock()
	e.b.SetPeers(peers)
	e.mu.Unlock()
	return nil
}

// Run syncs every interval until ctx ends.
func (e *Exchange) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.Sync(ctx) // errors: keep deciding with the last view
		}
	}
}

// Replace swaps in a new budget (a new model's, warm-started from its
// calibration); the peers' view is kept until the next Sync refreshes it.
func (e *Exchange) Replace(b *threshold.Budget) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.b = b
}

// Rate returns the budget's alert rate.
func (e *Exchange) Rate() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.b.Rate
}
