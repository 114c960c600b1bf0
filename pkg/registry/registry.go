// Package registry stores model bundles in Redis: numbered versions, a
// `current` pointer that scorers follow, pub/sub notices when it moves,
// rollback, a record of candidates that were not promoted, and the leader
// lock that keeps several trainer replicas from training at once.
//
// Keys (Prefix defaults to "fraudstream:model:"):
//
//	<prefix>seq          INCR counter of versions
//	<prefix>blob:<n>     the bundle bytes of version n
//	<prefix>info:<n>     JSON Info of version n
//	<prefix>versions     sorted set of version numbers
//	<prefix>current      the promoted version number
//	<prefix>leader       the trainer leader lock (owner id, with expiry)
//	<prefix>updates      pub/sub channel: the new current version
//
// A version's blob and info are written before `current` points at it, so a
// reader that follows `current` never sees a half-written model.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoModel means no version has been promoted yet.
var ErrNoModel = errors.New("registry: no current model")

// ErrNoVersion means the requested version does not exist (or was trimmed).
var ErrNoVersion = errors.New("registry: no such version")

// Config configures a Registry.
type Config struct {
	// Client is the Redis client. Required.
	Client redis.UniversalClient
	// Prefix starts every key. Default "fraudstream:model:".
	Prefix string
	// Keep is the number of versions kept; older ones are deleted, except the
	// current one. Default 5.
	Keep int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("registry: Config.Client is required")
	}
	if c.Keep < 0 {
		return errors.New("registry: Config.Keep must not be negative")
	}
	return nil
}

// Info describes one stored version.
type Info struct {
	Version   int64     `json:"version"`
	Stored    time.Time `json:"stored"`
	Promoted  bool      `json:"promoted"`
	Reason    string    `json:"reason,omitempty"` // why a candidate was not promoted
	Digest    string    `json:"digest,omitempty"`
	Size      int       `json:"size"`
	Summary   string    `json:"summary,omitempty"`
	ValLoss   float64   `json:"val_loss,omitempty"`
	Rows      int       `json:"rows,omitempty"`
	TrainedBy string    `json:"trained_by,omitempty"`
	Current   bool      `json:"current"` // filled by List
}

// Registry is safe for concurrent use.
type Registry struct {
	c      redis.UniversalClient
	prefix string
	keep   int
	now    func() time.Time
}

// New returns a registry.
func New(cfg Config) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "fraudstream:model:"
	}
	if cfg.Keep == 0 {
		cfg.Keep = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registry{c: cfg.Client, prefix: cfg.Prefix, keep: cfg.Keep, now: cfg.Now}, nil
}

func (r *Registry) key(parts ...string) string {
	k := r.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

func vstr(v int64) string { return strconv.FormatInt(v, 10) }

// Channel is the pub/sub channel that carries promotions.
func (r *Registry) Channel() string { return r.key("updates") }

// Store saves a bundle as a new version. With promote, the version becomes
// current and a notice is published; without, it is recorded (with
// info.Reason saying why) for operators to inspect or promote later.
func (r *Registry) Store(ctx context.Context, blob []byte, info Info, promote bool) (int64, error) {
	if len(blob) == 0 {
		return 0, errors.New("registry: empty bundle")
	}
	v, err := r.c.Incr(ctx, r.key("seq")).Result()
	if err != nil {
		return 0, fmt.Errorf("registry: next version: %w", err)
	}
	info.Version, info.Stored, info.Promoted, info.Size = v, r.now().UTC(), promote, len(blob)
	ij, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	// Blob and info first, in one transaction; the pointer moves after.
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.key("blob", vstr(v)), blob, 0)
		p.Set(ctx, r.key("info", vstr(v)), ij, 0)
		p.ZAdd(ctx, r.key("versions"), redis.Z{Score: float64(v), Member: vstr(v)})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("registry: store version %d: %w", v, err)
	}
	if promote {
		if err := r.point(ctx, v); err != nil {
			return v, err
		}
	}
	return v, r.trim(ctx)
}

// point moves `current` to v and publishes the notice.
func (r *Registry) point(ctx context.Context, v int64) error {
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.key("current"), vstr(v), 0)
		p.Publish(ctx, r.Channel(), vstr(v))
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: promote version %d: %w", v, err)
	}
	return nil
}

// trim deletes the oldest versions beyond Keep, never the current one.
func (r *Registry) trim(ctx context.Context) error {
	all, err := r.versions(ctx)
	if err != nil || len(all) <= r.keep {
		return err
	}
	cur, err := r.CurrentVersion(ctx)
	if err != nil && !errors.Is(err, ErrNoModel) {
		return err
	}
	for _, v := range all[:len(all)-r.keep] {
		if v == cur {
			continue
		}
		if err := r.c.Del(ctx, r.key("blob", vstr(v)), r.key("info", vstr(v))).Err(); err != nil {
			return fmt.Errorf("registry: trim version %d: %w", v, err)
		}
		if err := r.c.ZRem(ctx, r.key("versions"), vstr(v)).Err(); err != nil {
			return fmt.Errorf("registry: trim version %d: %w", v, err)
		}
	}
	return nil
}

func (r *Registry) versions(ctx context.Context) ([]int64, error) {
	ms, err := r.c.ZRange(ctx, r.key("versions"), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("registry: list versions: %w", err)
	}
	out := make([]int64, 0, len(ms))
	for _, m := range ms {
		if v, err := strconv.ParseInt(m, 10, 64); err == nil {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

// CurrentVersion returns the promoted version, or ErrNoModel.
func (r *Registry) CurrentVersion(ctx context.Context) (int64, error) {
	s, err := r.c.Get(ctx, r.key("current")).Result()
	if errors.Is(err, redis.Nil) {
		return 0, ErrNoModel
	}
	if err != nil {
		return 0, fmt.Errorf("registry: read current: %w", err)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("registry: current pointer %q is not a version", s)
	}
	return v, nil
}

// Current returns the promoted version and its bundle bytes.
func (r *Registry) Current(ctx context.Context) (int64, []byte, error) {
	v, err := r.CurrentVersion(ctx)
	if err != nil {
		return 0, nil, err
	}
	b, err := r.Get(ctx, v)
	return v, b, err
}

// Get returns the bundle bytes of version v.
func (r *Registry) Get(ctx context.Context, v int64) ([]byte, error) {
	b, err := r.c.Get(ctx, r.key("blob", vstr(v))).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %d", ErrNoVersion, v)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: read version %d: %w", v, err)
	}
	return b, nil
}

// List returns the stored versions, oldest first.
func (r *Registry) List(ctx context.Context) ([]Info, error) {
	all, err := r.versions(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := r.CurrentVersion(ctx)
	if err != nil && !errors.Is(err, ErrNoModel) {
		return nil, err
	}
	out := make([]Info, 0, len(all))
	for _, v := range all {
		s, err := r.c.Get(ctx, r.key("info", vstr(v))).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // trimmed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("registry: read info %d: %w", v, err)
		}
		var in Info
		if err := json.Unmarshal(s, &in); err != nil {
			return nil, fmt.Errorf("registry: info of version %d: %w", v, err)
		}
		in.Current = v == cur
		out = append(out, in)
	}
	return out, nil
}

// Rollback makes an existing version current again and notifies scorers.
func (r *Registry) Rollback(ctx context.Context, to int64) error {
	n, err := r.c.Exists(ctx, r.key("blob", vstr(to))).Result()
	if err != nil {
		return fmt.Errorf("registry: rollback: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %d", ErrNoVersion, to)
	}
	return r.point(ctx, to)
}

// Subscribe delivers each promoted version number until ctx ends; the
// channel is closed then. Notices can be missed (Redis pub/sub is
// fire-and-forget), so consumers should also poll CurrentVersion.
func (r *Registry) Subscribe(ctx context.Context) (<-chan int64, error) {
	ps := r.c.Subscribe(ctx, r.Channel())
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fmt.Errorf("registry: subscribe: %w", err)
	}
	out := make(chan int64, 1)
	go func() {
		defer close(out)
		defer ps.Close()
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				v, err := strconv.ParseInt(m.Payload, 10, 64)
				if err != nil {
					continue
				}
				select {
				case out <- v:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Lock is the trainer leader lock.
type Lock struct {
	r     *Registry
	owner string
}

// releaseScript deletes or extends the lock only if the caller owns it.
var (
	releaseScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)
	renewScript   = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`)
)

// TryLead takes the leader lock for owner with an expiry, so that a crashed
// leader's lock lapses. It reports false when another owner holds it.
func (r *Registry) TryLead(ctx context.Context, owner string, ttl time.Duration) (*Lock, bool, error) {
	ok, err := r.c.SetNX(ctx, r.key("leader"), owner, ttl).Result()
	if err != nil {
		return nil, false, fmt.Errorf("registry: leader lock: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	return &Lock{r: r, owner: owner}, true, nil
}

// Renew extends the lock; false means it was lost (expired and taken).
func (l *Lock) Renew(ctx context.Context, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, l.r.c, []string{l.r.key("leader")}, l.owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("registry: renew leader lock: %w", err)
	}
	return n == 1, nil
}

// Release gives the lock up if still held.
func (l *Lock) Release(ctx context.Context) error {
	if err := releaseScript.Run(ctx, l.r.c, []string{l.r.key("leader")}, l.owner).Err(); err != nil {
		return fmt.Errorf("registry: release leader lock: %w", err)
	}
	return nil
}
