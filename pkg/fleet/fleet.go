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
//
// Whoever can write to Redis could otherwise move every worker's
// threshold, so a peer's window is merged only when it passes three checks:
// with a shared secret (Config.Secret), its HMAC-SHA256 verifies, and the
// MAC covers the worker ID and Redis key it was published under, so a
// window cannot be replayed under another member's name; its sketch
// decodes; and it counts no more values than a worker's window can hold
// (Config.MaxCount). A window that fails is ignored and counted by reason
// (Exchange.Rejected). Reads are bounded too: at most MaxPeers members and
// the longest window a worker can publish. A MAC does not date a window:
// a writer to Redis can still replay a worker's own earlier window under
// its name, which holds real scores of that model and no more than a window.
package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
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
	// Secret keys the HMAC-SHA256 that authenticates windows: a worker
	// with one signs its window and merges only peers' windows that verify
	// under the same secret. Nil: windows are neither signed nor verified,
	// and anyone who can write to Redis can move the threshold with up to
	// MaxPeers windows of MaxCount values each (the caller should warn).
	Secret []byte
	// MaxCount is the most values a peer's window may count; a window
	// above it is ignored (RejectOverBound). Default DefaultMaxCount.
	MaxCount uint64
	// MaxPeers is the most members a Sync reads; with more, it merges none
	// and keeps the last view. Default 1,000.
	MaxPeers int
}

// DefaultMaxCount is the most scores the window of a worker running the
// defaults can count: threshold.WindowConfig's 10 intervals of 5,000 scores
// plus the 20,000 that pkg/pipeline seeds a budget with from a model's
// calibration (its seedWeight), which stay until their interval turns over.
const DefaultMaxCount = 10*5000 + 20000

// Reasons a peer's window is ignored, as Rejected reports them.
const (
	// RejectUnsigned: the window has no MAC, and this worker has a secret.
	RejectUnsigned = "unsigned"
	// RejectBadMAC: the MAC does not verify: another secret, an altered
	// window, or one replayed under another member's name.
	RejectBadMAC = "bad_mac"
	// RejectMalformed: not a window, or its sketch does not decode or is
	// of another accuracy.
	RejectMalformed = "malformed"
	// RejectOverBound: the window counts more than MaxCount values.
	RejectOverBound = "over_bound"
)

// RejectReasons lists the reasons, for exporting them all from the start.
var RejectReasons = []string{RejectUnsigned, RejectBadMAC, RejectMalformed, RejectOverBound}

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
	// Windows ignored since New, by reason (RejectReasons' order).
	rejected [4]atomic.Int64
}

// New returns an exchange; it publishes nothing until a budget is attached.
func New(cfg Config) (*Exchange, error) {
	if cfg.Client == nil || cfg.ID == "" {
		return nil, errors.New("fleet: a Redis client and a worker ID are required")
	}
	if cfg.Secret != nil && len(cfg.Secret) == 0 {
		return nil, errors.New("fleet: the secret is empty (nil turns authentication off)")
	}
	cfg.Secret = bytes.Clone(cfg.Secret)
	if cfg.Prefix == "" {
		cfg.Prefix = "fraudstream:fleet:"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxCount == 0 {
		cfg.MaxCount = DefaultMaxCount
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = 1000
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

// Rejected returns how many peer windows were ignored since New, by reason
// (every reason of RejectReasons is present). A peer is counted at each
// Sync that reads its window.
func (e *Exchange) Rejected() map[string]int64 {
	out := make(map[string]int64, len(RejectReasons))
	for k, r := range RejectReasons {
		out[r] = e.rejected[k].Load()
	}
	return out
}

func (e *Exchange) reject(reason string) {
	for k, r := range RejectReasons {
		if r == reason {
			e.rejected[k].Add(1)
		}
	}
}

// Sync publishes the attached budget's window and merges the windows of
// the live peers on the same model that pass the checks (see the package
// comment) into it. On a Redis error the budget keeps its last peer view.
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
		p.Set(ctx, e.key(e.cfg.ID), e.encodeWindow(e.cfg.ID, fb.model, blob), e.cfg.TTL)
		p.SAdd(ctx, members, e.cfg.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleet: publish window: %w", err)
	}
	// At most MaxPeers+1 members (and ourselves): enough to tell that
	// there are too many without reading them all.
	ids, err := e.cfg.Client.SRandMemberN(ctx, members, int64(e.cfg.MaxPeers)+2).Result()
	if err != nil {
		return fmt.Errorf("fleet: list workers: %w", err)
	}
	// Each window is read up to the longest a worker publishes, so that a
	// planted giant value costs no more than that.
	reads := make([]*redis.StringCmd, len(ids))
	_, err = e.cfg.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, id := range ids {
			if id != e.cfg.ID {
				reads[k] = p.GetRange(ctx, e.key(id), 0, maxWindowBytes)
			}
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return fmt.Errorf("fleet: read windows: %w", err)
	}
	var gone []any
	peers := threshold.NewSketch(alpha)
	other, n := 0, 0
	for k, id := range ids {
		if reads[k] == nil {
			continue // ourselves
		}
		b, err := reads[k].Bytes()
		if err != nil && !errors.As(err, &rerr) {
			return fmt.Errorf("fleet: read window of %s: %w", id, err)
		}
		if err == nil && len(b) == 0 {
			gone = append(gone, id) // expired: the worker is gone
			continue
		}
		if n++; n > e.cfg.MaxPeers {
			continue
		}
		var model string
		var s *threshold.Sketch
		reason := RejectMalformed // a reply error: a key of another type
		if err == nil {
			model, s, reason = e.check(id, b)
		}
		switch {
		case reason != "":
			e.reject(reason) // a forged or damaged window does not stop the fleet
		case model != fb.model:
			other++
		case peers.Merge(s) != nil:
			e.reject(RejectMalformed) // another accuracy
		}
	}
	if len(gone) > 0 {
		e.cfg.Client.SRem(ctx, members, gone...)
	}
	if n > e.cfg.MaxPeers {
		return fmt.Errorf("fleet: more than %d live workers listed in %s; keeping the last view", e.cfg.MaxPeers, members)
	}
	e.otherModel.Store(int64(other))
	fb.mu.Lock()
	fb.b.SetPeers(peers)
	fb.mu.Unlock()
	return nil
}

// check decodes the window id published, b, and returns its model and
// sketch, or the reason to ignore it. The MAC is checked first, so that an
// unauthenticated window is not even decoded.
func (e *Exchange) check(id string, b []byte) (model string, s *threshold.Sketch, reason string) {
	format, model, sk, mac, ok := decodeWindow(b)
	if !ok {
		return "", nil, RejectMalformed
	}
	if e.cfg.Secret != nil {
		if format != formatHMAC {
			return "", nil, RejectUnsigned
		}
		if !hmac.Equal(mac, e.mac(id, b[:len(b)-len(mac)])) {
			return "", nil, RejectBadMAC
		}
	}
	s, err := threshold.UnmarshalSketch(sk)
	switch {
	case errors.Is(err, threshold.ErrSketchCount):
		return "", nil, RejectOverBound
	case err != nil:
		return "", nil, RejectMalformed
	case s.Count() > e.cfg.MaxCount:
		return "", nil, RejectOverBound
	}
	return model, s, ""
}

func (e *Exchange) key(id string) string { return e.cfg.Prefix + "w:" + id }

// mac authenticates a window's bytes as published by worker id under its
// key; the lengths keep the three parts from running into one another.
func (e *Exchange) mac(id string, window []byte) []byte {
	h := hmac.New(sha256.New, e.cfg.Secret)
	key := e.key(id)
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	h.Write([]byte(key))
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(id)))])
	h.Write([]byte(id))
	h.Write(window)
	return h.Sum(nil)
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

// A published window: a format byte, one byte of model-identity length,
// the identity, the sketch's own encoding and, in formatHMAC, the 32-byte
// HMAC-SHA256 of everything before it (see Exchange.mac).
const (
	formatPlain = 1
	formatHMAC  = 2
)

// maxWindowBytes is the longest window a worker publishes.
const maxWindowBytes = 2 + 255 + threshold.MaxSketchBytes + sha256.Size

func (e *Exchange) encodeWindow(id, model string, sketch []byte) []byte {
	if len(model) > 255 {
		model = model[:255]
	}
	out := make([]byte, 0, 2+len(model)+len(sketch)+sha256.Size)
	format := byte(formatPlain)
	if e.cfg.Secret != nil {
		format = formatHMAC
	}
	out = append(out, format, byte(len(model)))
	out = append(out, model...)
	out = append(out, sketch...)
	if format == formatHMAC {
		out = append(out, e.mac(id, out)...)
	}
	return out
}

// decodeWindow splits a window. A worker without a secret takes a signed
// window's sketch without checking its MAC.
func decodeWindow(b []byte) (format byte, model string, sketch, mac []byte, ok bool) {
	if len(b) < 2 || len(b) > maxWindowBytes || len(b) < 2+int(b[1]) {
		return 0, "", nil, nil, false
	}
	format, n := b[0], int(b[1])
	model, sketch = string(b[2:2+n]), b[2+n:]
	switch format {
	case formatPlain:
	case formatHMAC:
		if len(sketch) < sha256.Size {
			return 0, "", nil, nil, false
		}
		sketch, mac = sketch[:len(sketch)-sha256.Size], sketch[len(sketch)-sha256.Size:]
	default:
		return 0, "", nil, nil, false
	}
	return format, model, sketch, mac, true
}
