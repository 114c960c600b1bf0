package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
)

// Registry is the part of registry.Registry the loader needs.
type Registry interface {
	CurrentVersion(ctx context.Context) (int64, error)
	Get(ctx context.Context, v int64) ([]byte, error)
	Subscribe(ctx context.Context) (<-chan int64, error)
}

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	Registry Registry // required
	Models   *Current // required
	// NewDecider makes the decider for a freshly loaded bundle. Default:
	// a 0.5% alert budget warm-started from its calibration.
	NewDecider func(*model.Bundle) Decider
	// Poll is how often the current pointer is checked in case a notice
	// was missed. Default 10s.
	Poll   time.Duration
	Logger *slog.Logger
	// OnLoad, when set, is called after each swap (metrics, readiness).
	OnLoad func(version int64, b *model.Bundle)
}

// Loader keeps Models on the registry's current version: it loads at start
// (retrying with backoff while there is none), then follows pub/sub
// notices and polls. A bundle that fails to decode is logged and skipped;
// the model in use stays.
type Loader struct {
	cfg    LoaderConfig
	log    *slog.Logger
	loaded int64
}

// NewLoader checks cfg.
func NewLoader(cfg LoaderConfig) (*Loader, error) {
	if cfg.Registry == nil || cfg.Models == nil {
		return nil, errors.New("pipeline: the loader needs a registry and a model holder")
	}
	if cfg.NewDecider == nil {
		cfg.NewDecider = func(b *model.Bundle) Decider { return NewBudgeted(b, 0.005) }
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Loader{cfg: cfg, log: log}, nil
}

// Run follows the registry until ctx ends; it returns nil then.
func (l *Loader) Run(ctx context.Context) error {
	notices, err := l.cfg.Registry.Subscribe(ctx)
	if err != nil {
		l.log.Warn("model notices unavailable; polling only", "err", err)
		notices = nil
	}
	backoff := 100 * time.Millisecond
	for l.cfg.Models.Load() == nil {
		if err := l.sync(ctx); err != nil {
			l.log.Info("no usable model yet; waiting", "retry_in", backoff, "reason", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}
	tick := time.NewTicker(l.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-notices:
			if !ok {
				notices = nil
				continue
			}
		case <-tick.C:
		}
		if err := l.sync(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("model update failed; keeping the current model", "version", l.loaded, "err", err)
		}
	}
}

// sync loads the registry's current version if it is not the one in use.
func (l *Loader) sync(ctx context.Context) error {
	v, err := l.cfg.Registry.CurrentVersion(ctx)
	if err != nil {
		return err
	}
	if v == l.loaded && l.cfg.Models.Load() != nil {
		return nil
	}
	blob, err := l.cfg.Registry.Get(ctx, v)
	if err != nil {
		return err
	}
	b, err := model.Unmarshal(blob)
	if err != nil {
		return fmt.Errorf("version %d: %w", v, err)
	}
	l.cfg.Models.Swap(&Model{Bundle: b, Version: strconv.FormatInt(v, 10), Digest: model.Digest(blob), Decider: l.cfg.NewDecider(b)})
	l.log.Info("model loaded", "version", v, "digest", model.Digest(blob)[:12], "model", b.Describe())
	l.loaded = v
	if l.cfg.OnLoad != nil {
		l.cfg.OnLoad(v, b)
	}
	return nil
}

var _ Registry = (*registry.Registry)(nil)
