// Package fleet makes scorer workers share one alert budget: each worker
// publishes its recent-score window (a threshold.Sketch) to Redis on a
// short interval and merges the windows of the others, so the threshold
// is placed on the fleet's traffic, not on one worker's share of it.
//
// A budget belongs to one model: scores of two models are on different
// scales, so a published window is tagged with the model's identity (its
// digest) and a worker merges only the windows of peers on the same model.
// During a rollout each model's workers meet the budget among themselves.
//
// Whole windows are exchanged rather than deltas: a window is bounded
// (at most a few thousand buckets, a few KB encoded) and publishing it is
// idempotent, so a lost or repeated exchange never double-counts. Each
// worker's key expires after TTL, so a dead worker drops out of the fleet.
// A worker that cannot reach Redis keeps deciding with the last peer view
// it merged, plus its own fresh observations.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	// Timeout bounds one Sync's Redis round trips. Default 2s.
	Timeout time.Duration
}

// Budget is one model's fleet-wide budget on this worker. Decide is called
// by the scoring goroutine while the exchange feeds it peers' windows, so
// the threshold.Budget it wraps is guarded by a mutex.
type Budget struct {
	model string
	mu    sync.Mutex
	b     *threshold.Budget
}

// Decide decides with the fleet-wide threshold of this budget's model.
func (b *Budget) Decide(score float64) (float64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Decide(score)
}

// Rate returns the budget's alert rate.
func (b *Budget) Rate() float64 { return b.b.Rate }

// Model returns the identity of the model the budget belongs to.
func (b *Budget) Model() string { return b.model }

// Exchange shares the window of the budget in use with peers on the same
// model.
type Exchange struct {
	cfg Config
	cur atomic.Pointer[Budget]
	// Peers skipped in the last Sync because they were on another model.
	otherModel atomic.Int64
}

// New returns an exchange; it publishes nothing until a budget is attached.
func New(cfg Config) (*Exchange, error) {
	if cfg.Client == nil || cfg.ID == "" {
		return nil, errors.New("fleet: a Redis client and a worker ID are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "fraudstream:fleet:"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	return &Exchange{cfg: cfg}, nil
}

// Attach makes b, the budget of the model identified by model, the one
// this worker publishes and feeds with peers from the next Sync on. The
// budget of the previous model is left as it was: a batch still deciding
// with it finishes on its threshold. The new budget starts without a peer
// view (peers on the old model are on another scale); it joins the fleet's
// view at the next Sync.
func (e *Exchange) Attach(model string, b *threshold.Budget) *Budget {
	fb := &Budget{model: model, b: b}
	e.cur.Store(fb)
	return fb
}

// Current returns the attached budget, or nil.
func (e *Exchange) Current() *Budget { return e.cur.Load() }

// OtherModelPeers returns how many live peers the last Sync left out
// because they published a window of another model.
func (e *Exchange) OtherModelPeers() int { return int(e.otherModel.Load()) }

// Sync publishes the attached budget's window and merges the windows of
// the live peers on the same model into it. On a Redis error the budget
// keeps its last peer view.
func (e *Exchange) Sync(ctx context.Context) error {
	fb := e.cur.Load()
	if fb == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	fb.mu.Lock()
	blob, err := fb.b.Window().Sketch().MarshalBinary()
	alpha := fb.b.Window().Sketch().Alpha()
	fb.mu.Unlock()
	if err != nil {
		return err
	}
	members := e.cfg.Prefix + "members"
	_, err = e.cfg.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, e.cfg.Prefix+"w:"+e.cfg.ID, encodeWindow(fb.model, blob), e.cfg.TTL)
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
	other := 0
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
		model, sk, ok := decodeWindow(b)
		if !ok {
			continue // a foreign or damaged blob does not stop the fleet
		}
		if model != fb.model {
			other++
			continue
		}
		s, err := threshold.UnmarshalSketch(sk)
		if err != nil {
			continue
		}
		if err := peers.Merge(s); err != nil {
			continue
		}
	}
	e.otherModel.Store(int64(other))
	fb.mu.Lock()
	fb.b.SetPeers(peers)
	fb.mu.Unlock()
	return nil
}

// Run syncs every interval until ctx ends. Errors leave each budget with
// its last peer view; onError, when set, hears of them.
func (e *Exchange) Run(ctx context.Context, every time.Duration, onError func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.Sync(ctx); err != nil && onError != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}

// A published window: one byte of model-identity length, the identity,
// then the sketch's own encoding.
func encodeWindow(model string, sketch []byte) []byte {
	if len(model) > 255 {
		model = model[:255]
	}
	out := make([]byte, 0, 1+len(model)+len(sketch))
	out = append(out, byte(len(model)))
	out = append(out, model...)
	return append(out, sketch...)
}

func decodeWindow(b []byte) (model string, sketch []byte, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}
