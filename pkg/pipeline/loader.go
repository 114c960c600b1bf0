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
	// Pointer names the current version and its digest.
	Pointer(ctx context.Context) (registry.Pointer, error)
	// Get returns a version's bundle, checked against its recorded digest.
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
	// Verify, when set, loads only bundles signed by one of its keys;
	// others are refused (ErrUnsigned, ErrUnknownKey, ErrBadSignature)
	// like bundles that do not decode. Nil loads any sound bundle.
	Verify *model.Keyring
	// OnReject, when set, is called once for each bundle refused (per
	// digest), with the reason: model.RejectReason of the error, one of
	// unsigned, unknown_key, bad_signature, corrupt (metrics).
	OnReject func(version int64, reason string)
}

// Loader keeps Models on the registry's current model: it loads at start
// (retrying with backoff while there is none), then follows pub/sub
// notices and polls. Models are told apart by digest, not version number:
// after Redis has lost its data a new "version 1" is a different model and
// is loaded, and the same model under a new number only changes the label.
// A bundle that does not match its digest or fails to decode is logged and
// skipped; the model in use stays. A bundle that fails to decode or, with
// Verify, to verify is refused: logged and reported (OnReject) once, then
// skipped without being read again while `current` names it.
type Loader struct {
	cfg     LoaderConfig
	log     *slog.Logger
	loaded  int64
	digest  string
	refused map[string]bool // digests of refused bundles, at most maxRefused
}

// maxRefused bounds the refused digests remembered; past it the set starts
// again (a bundle refused then is reported once more).
const maxRefused = 64

// errBundleRefused marks a sync error already logged and reported as a refusal.
var errBundleRefused = errors.New("bundle refused")

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
	return &Loader{cfg: cfg, log: log, refused: map[string]bool{}}, nil
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
			if !errors.Is(err, errBundleRefused) {
				l.log.Info("no usable model yet; waiting", "retry_in", backoff, "reason", err)
			}
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
		if err := l.sync(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errBundleRefused) {
			l.log.Warn("model update failed; keeping the current model", "version", l.loaded, "err", err)
		}
	}
}

// sync loads the registry's current model if it is not the one in use.
func (l *Loader) sync(ctx context.Context) error {
	p, err := l.cfg.Registry.Pointer(ctx)
	if err != nil {
		return err
	}
	in := l.cfg.Models.Load()
	if in != nil && p.Digest != "" && p.Digest == l.digest {
		l.relabel(in, p.Version)
		return nil
	}
	if l.refused[p.Digest] {
		return errBundleRefused
	}
	blob, err := l.cfg.Registry.Get(ctx, p.Version)
	if err != nil {
		return err
	}
	d := model.Digest(blob)
	if p.Digest != "" && d != p.Digest {
		// The version was replaced between the two reads; the next sync
		// sees the new pointer.
		return fmt.Errorf("version %d changed while it was read (pointer %s, bundle %s)", p.Version, registry.Short(p.Digest), registry.Short(d))
	}
	if in != nil && d == l.digest { // pointer written before digests were recorded
		l.relabel(in, p.Version)
		return nil
	}
	if l.refused[d] {
		return errBundleRefused
	}
	var signer []any
	if l.cfg.Verify != nil {
		id, err := l.cfg.Verify.Verify(blob)
		if err != nil {
			return l.refuse(p.Version, d, err)
		}
		signer = []any{"signed_by", id.String()}
	}
	b, err := model.Unmarshal(blob)
	if err != nil {
		return l.refuse(p.Version, d, err)
	}
	l.cfg.Models.Swap(&Model{Bundle: b, Version: strconv.FormatInt(p.Version, 10), Digest: d, Decider: l.cfg.NewDecider(b)})
	l.log.Info("model loaded", append([]any{"version", p.Version, "digest", registry.Short(d), "model", b.Describe()}, signer...)...)
	l.loaded, l.digest = p.Version, d
	if l.cfg.OnLoad != nil {
		l.cfg.OnLoad(p.Version, b)
	}
	return nil
}

// refuse records a bundle that will not be loaded, logs and reports it;
// the model in use ("serving") stays.
func (l *Loader) refuse(v int64, digest string, err error) error {
	if len(l.refused) >= maxRefused {
		clear(l.refused)
	}
	l.refused[digest] = true
	reason := model.RejectReason(err)
	args := []any{"version", v, "digest", registry.Short(digest), "reason", reason, "err", err}
	if l.cfg.Models.Load() != nil {
		args = append(args, "serving", l.loaded)
	}
	if reason == model.ReasonCorrupt {
		l.log.Warn("model bundle refused: it does not decode", args...)
	} else {
		l.log.Error("model bundle refused: signature not accepted", args...)
	}
	if l.cfg.OnReject != nil {
		l.cfg.OnReject(v, reason)
	}
	return fmt.Errorf("%w: version %d (%s): %w", errBundleRefused, v, registry.Short(digest), err)
}

// relabel keeps the model in use (and its decider's state) when the
// registry names it by another number, e.g. republished after Redis lost
// its data, so that outputs carry the registry's current number.
func (l *Loader) relabel(in *Model, v int64) {
	if v == l.loaded {
		return
	}
	m := *in
	m.Version = strconv.FormatInt(v, 10)
	l.cfg.Models.Swap(&m)
	l.log.Info("same model under a new version number", "version", v, "was", l.loaded, "digest", registry.Short(l.digest))
	l.loaded = v
	if l.cfg.OnLoad != nil {
		l.cfg.OnLoad(v, m.Bundle)
	}
}

var _ Registry = (*registry.Registry)(nil)
