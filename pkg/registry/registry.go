// Package registry stores model bundles in Redis: numbered versions, a
// `current` pointer that scorers follow, pub/sub notices when it moves,
// rollback and an operator's pin, a record of candidates that were not
// promoted, the deployment's pinned schema, and the leader lock that keeps
// several trainer replicas from training at once.
//
// A model's identity is its digest: the SHA-256 that ends every bundle
// (model.Digest), which model.Unmarshal checks against the content. Version
// numbers come from a counter in Redis and start again at 1 when Redis
// loses its data, so one number can name two models over time; whatever
// must tell models apart (the scorers' loader, outputs, logs) compares
// digests. The registry checks each bundle against its digest when it is
// stored and again when it is read.
//
// Keys (Prefix defaults to "fraudstream:model:"):
//
//	<prefix>seq          INCR counter of version numbers
//	<prefix>blob:<n>     the bundle bytes of version n
//	<prefix>info:<n>     JSON Info of version n
//	<prefix>versions     sorted set of version numbers
//	<prefix>current      the promoted version: "<n> <digest>"
//	<prefix>pin          the version an operator pinned, if any
//	<prefix>schema       the deployment's pinned schema (JSON)
//	<prefix>leader       the trainer leader lock ("<owner> <token>", with expiry)
//	<prefix>signatures   present: only signed bundles are stored or made current
//	                     (its value says who required it)
//	<prefix>updates      pub/sub channel: "<n> <digest>" of each new current version
//
// A version's blob and info are written in the same transaction that moves
// `current` to it, so a reader that follows `current` never sees a
// half-written model. Writes made through a Lock (the trainer's) are fenced:
// they fail with ErrNotLeader unless the lock still holds that lock's token
// when they commit (WATCH/MULTI on the lock key), so a trainer that lost the
// lock while it trained cannot overwrite the new leader's work.
//
// While a version is pinned, the trainer's rounds store their candidates
// without promoting them (Store with promote fails with ErrPinned); operators
// move or clear the pin (Rollback, Unpin).
//
// Signatures (model.Sign): once signatures are required, by an operator
// (RequireSignatures) or by the first signed bundle stored, Store and
// Rollback refuse a bundle that is not signed (ErrUnsigned), so that a
// publisher without the signing key cannot make current a model that
// verifying scorers would refuse. This guards against mistakes, not
// attackers: whoever can write to Redis can write any key; the scorers'
// verify keys are the defence. The registry does not check signatures.
//
// Every call is bounded by Config.Timeout. The deadline travels in the
// context: give the client ContextTimeoutEnabled so that it reaches the
// socket (go-redis's ReadTimeout bounds each read otherwise).
package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// Errors callers branch on.
var (
	// ErrNoModel means no version has been promoted yet.
	ErrNoModel = errors.New("registry: no current model")
	// ErrNoVersion means the requested version does not exist (or was trimmed).
	ErrNoVersion = errors.New("registry: no such version")
	// ErrPinned means an operator pinned a version: nothing is promoted
	// over it until the pin moves or is cleared.
	ErrPinned = errors.New("registry: a version is pinned")
	// ErrNotLeader means a fenced write found the leader lock expired or
	// held by another owner.
	ErrNotLeader = errors.New("registry: leader lock lost")
	// ErrDigest means a bundle does not match its digest: corrupted,
	// truncated, or replaced while it was being read.
	ErrDigest = errors.New("registry: bundle does not match its digest")
	// ErrNoSchema means the deployment has no pinned schema yet.
	ErrNoSchema = errors.New("registry: no pinned schema")
	// ErrUnsigned means the registry requires signed bundles and this
	// one is not signed.
	ErrUnsigned = errors.New("registry: the registry requires signed models and this bundle is not signed")
)

// Config configures a Registry.
type Config struct {
	// Client is the Redis client. Required.
	Client redis.UniversalClient
	// Prefix starts every key. Default "fraudstream:model:".
	Prefix string
	// Keep is the number of promoted versions kept (rollback targets);
	// older ones are deleted, except the current and the pinned one.
	// Default 5.
	Keep int
	// KeepCandidates is the number of candidates that were never promoted
	// kept for inspection, apart from Keep, so that rejections cannot push
	// rollback targets out. Default 5.
	KeepCandidates int
	// Timeout bounds every call. Default 5s.
	Timeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("registry: Config.Client is required")
	}
	if c.Keep < 0 || c.KeepCandidates < 0 {
		return errors.New("registry: Config.Keep and Config.KeepCandidates must not be negative")
	}
	if c.Timeout < 0 {
		return errors.New("registry: Config.Timeout must not be negative")
	}
	return nil
}

// Info describes one stored version.
type Info struct {
	Version int64     `json:"version"`
	Stored  time.Time `json:"stored"`
	// Promoted: the version is or has been current (a rollback target).
	Promoted  bool    `json:"promoted"`
	Reason    string  `json:"reason,omitempty"` // why a candidate was not promoted
	Digest    string  `json:"digest,omitempty"` // the bundle's identity; set by Store
	Size      int     `json:"size"`
	Summary   string  `json:"summary,omitempty"`
	ValLoss   float64 `json:"val_loss,omitempty"`
	Rows      int     `json:"rows,omitempty"`
	TrainedBy string  `json:"trained_by,omitempty"`
	Signer    string  `json:"signer,omitempty"` // key id of the bundle's signature; set by Store
	Current   bool    `json:"current"`          // filled by List
	Pinned    bool    `json:"pinned"`           // filled by List
}

// Pointer names the current model: its version number and its digest.
type Pointer struct {
	Version int64
	Digest  string
}

func (p Pointer) String() string { return strconv.FormatInt(p.Version, 10) + " " + p.Digest }

// ParsePointer reads a `current` value or a notice payload. A bare number
// (written before digests were recorded) gives an empty Digest.
func ParsePointer(s string) (Pointer, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return Pointer{}, fmt.Errorf("registry: %q is not a version pointer", s)
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || v <= 0 {
		return Pointer{}, fmt.Errorf("registry: %q is not a version pointer", s)
	}
	p := Pointer{Version: v}
	if len(f) == 2 {
		p.Digest = f[1]
	}
	return p, nil
}

// Short abbreviates a digest for logs and listings.
func Short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

// Registry is safe for concurrent use.
type Registry struct {
	c        redis.UniversalClient
	prefix   string
	keep     int
	keepCand int
	timeout  time.Duration
	now      func() time.Time
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
	if cfg.KeepCandidates == 0 {
		cfg.KeepCandidates = 5
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registry{c: cfg.Client, prefix: cfg.Prefix, keep: cfg.Keep, keepCand: cfg.KeepCandidates, timeout: cfg.Timeout, now: cfg.Now}, nil
}

func (r *Registry) key(parts ...string) string { return r.prefix + strings.Join(parts, ":") }

func vstr(v int64) string { return strconv.FormatInt(v, 10) }

// bound gives one call its deadline.
func (r *Registry) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// Channel is the pub/sub channel that carries promotions.
func (r *Registry) Channel() string { return r.key("updates") }

// Ping checks that Redis answers (readiness).
func (r *Registry) Ping(ctx context.Context) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("registry: redis: %w", err)
	}
	return nil
}

// checkBlob returns a bundle's digest after checking it against the content:
// a bundle ends with the SHA-256 of everything before it.
func checkBlob(blob []byte) (string, error) {
	if len(blob) <= sha256.Size {
		return "", fmt.Errorf("%w: %d bytes cannot hold a bundle and its digest", ErrDigest, len(blob))
	}
	body, tail := blob[:len(blob)-sha256.Size], blob[len(blob)-sha256.Size:]
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], tail) {
		return "", fmt.Errorf("%w: the content's SHA-256 is not the one it ends with (corrupted or truncated)", ErrDigest)
	}
	return hex.EncodeToString(tail), nil
}

// txn runs fn under WATCH of keys (and of the leader lock when fenced) and
// retries when a watched key changed before EXEC.
func (r *Registry) txn(ctx context.Context, fence *Lock, keys []string, fn func(*redis.Tx) error) error {
	if fence != nil {
		keys = append(slices.Clone(keys), r.key("leader"))
	}
	var err error
	for range 3 {
		err = r.c.Watch(ctx, func(tx *redis.Tx) error {
			if fence != nil {
				if err := fence.check(ctx, tx); err != nil {
					return err
				}
			}
			return fn(tx)
		}, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("registry: keys kept changing during the write; try again: %w", err)
}

// Store saves a bundle as a new version. With promote, the version becomes
// current and a notice is published (ErrPinned while a version is pinned);
// without, it is recorded (with info.Reason saying why) for operators to
// inspect or roll back to later. The bundle must match its digest; Info's
// Digest, if set, must be that digest. Store is not fenced: the trainer
// stores through its Lock.
func (r *Registry) Store(ctx context.Context, blob []byte, info Info, promote bool) (int64, error) {
	return r.store(ctx, nil, blob, info, promote)
}

func (r *Registry) store(ctx context.Context, fence *Lock, blob []byte, info Info, promote bool) (int64, error) {
	d, err := checkBlob(blob)
	if err != nil {
		return 0, err
	}
	if info.Digest != "" && info.Digest != d {
		return 0, fmt.Errorf("%w: Info.Digest %s, bundle %s", ErrDigest, Short(info.Digest), Short(d))
	}
	signer := signerOf(blob)
	ctx, cancel := r.bound(ctx)
	defer cancel()
	var v int64
	err = r.txn(ctx, fence, []string{r.key("pin"), r.key("signatures")}, func(tx *redis.Tx) error {
		required, err := r.signaturesRequired(ctx, tx)
		if err != nil {
			return err
		}
		if required && signer == "" {
			return ErrUnsigned
		}
		if promote {
			if p, ok, err := r.pinned(ctx, tx); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("%w: version %d", ErrPinned, p)
			}
		}
		n, err := tx.Incr(ctx, r.key("seq")).Result()
		if err != nil {
			return fmt.Errorf("registry: next version: %w", err)
		}
		v = n
		in := info
		in.Version, in.Stored, in.Promoted, in.Size, in.Digest, in.Signer = v, r.now().UTC(), promote, len(blob), d, signer
		in.Current, in.Pinned = false, false
		ij, err := json.Marshal(in)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, r.key("blob", vstr(v)), blob, 0)
			p.Set(ctx, r.key("info", vstr(v)), ij, 0)
			p.ZAdd(ctx, r.key("versions"), redis.Z{Score: float64(v), Member: vstr(v)})
			if signer != "" && !required {
				p.Set(ctx, r.key("signatures"), fmt.Sprintf("version %d, the first signed bundle (key %s)", v, signer), 0)
			}
			if promote {
				ptr := Pointer{Version: v, Digest: d}.String()
				p.Set(ctx, r.key("current"), ptr, 0)
				p.Publish(ctx, r.Channel(), ptr)
			}
			return nil
		})
		return err
	})
	if err != nil {
		if errors.Is(err, ErrPinned) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnsigned) {
			return 0, err
		}
		return 0, fmt.Errorf("registry: store: %w", err)
	}
	if err := r.trim(ctx, fence); err != nil {
		return v, fmt.Errorf("registry: stored version %d, but trimming failed: %w", v, err)
	}
	return v, nil
}

// trim deletes promoted versions beyond Keep and never-promoted candidates
// beyond KeepCandidates, oldest first, never the current or pinned one.
func (r *Registry) trim(ctx context.Context, fence *Lock) error {
	return r.txn(ctx, fence, []string{r.key("current"), r.key("pin"), r.key("versions")}, func(tx *redis.Tx) error {
		infos, cur, pin, err := r.list(ctx, tx)
		if err != nil {
			return err
		}
		var promoted, cands []int64
		for _, in := range infos {
			if in.Version == cur || in.Version == pin {
				continue
			}
			if in.Promoted {
				promoted = append(promoted, in.Version)
			} else {
				cands = append(cands, in.Version)
			}
		}
		// The current and pinned versions count towards Keep.
		keep := r.keep
		if cur != 0 {
			keep--
		}
		if pin != 0 && pin != cur {
			keep--
		}
		var del []int64
		if n := len(promoted) - max(keep, 0); n > 0 {
			del = append(del, promoted[:n]...)
		}
		if n := len(cands) - r.keepCand; n > 0 {
			del = append(del, cands[:n]...)
		}
		if len(del) == 0 {
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, v := range del {
				p.Del(ctx, r.key("blob", vstr(v)), r.key("info", vstr(v)))
				p.ZRem(ctx, r.key("versions"), vstr(v))
			}
			return nil
		})
		return err
	})
}

// list reads every version's info (a version whose info is missing counts
// as a candidate), the current version and the pinned one (0 when none).
func (r *Registry) list(ctx context.Context, c redis.Cmdable) (infos []Info, cur, pin int64, err error) {
	ms, err := c.ZRange(ctx, r.key("versions"), 0, -1).Result()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("registry: list versions: %w", err)
	}
	var vs []int64
	for _, m := range ms {
		if v, err := strconv.ParseInt(m, 10, 64); err == nil {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	keys := []string{r.key("current"), r.key("pin")}
	for _, v := range vs {
		keys = append(keys, r.key("info", vstr(v)))
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("registry: read infos: %w", err)
	}
	if s, ok := vals[0].(string); ok {
		if p, err := ParsePointer(s); err == nil {
			cur = p.Version
		}
	}
	if s, ok := vals[1].(string); ok {
		pin, _ = strconv.ParseInt(s, 10, 64)
	}
	for i, v := range vs {
		in := Info{Version: v}
		if s, ok := vals[i+2].(string); ok {
			if err := json.Unmarshal([]byte(s), &in); err != nil {
				return nil, 0, 0, fmt.Errorf("registry: info of version %d: %w", v, err)
			}
			in.Version = v
		}
		in.Current, in.Pinned = v == cur, v == pin
		infos = append(infos, in)
	}
	return infos, cur, pin, nil
}

// Pointer returns the current version and its digest, or ErrNoModel.
func (r *Registry) Pointer(ctx context.Context) (Pointer, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	s, err := r.c.Get(ctx, r.key("current")).Result()
	if errors.Is(err, redis.Nil) {
		return Pointer{}, ErrNoModel
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("registry: read current: %w", err)
	}
	p, err := ParsePointer(s)
	if err != nil {
		return Pointer{}, err
	}
	if p.Digest == "" { // written before digests were recorded
		if in, err := r.info(ctx, p.Version); err == nil {
			p.Digest = in.Digest
		}
	}
	return p, nil
}

// CurrentVersion returns the promoted version number, or ErrNoModel. The
// number alone does not identify a model; see Pointer.
func (r *Registry) CurrentVersion(ctx context.Context) (int64, error) {
	p, err := r.Pointer(ctx)
	return p.Version, err
}

// Current returns the promoted version and its bundle bytes, checked
// against the digest `current` names.
func (r *Registry) Current(ctx context.Context) (Pointer, []byte, error) {
	p, err := r.Pointer(ctx)
	if err != nil {
		return p, nil, err
	}
	b, err := r.Get(ctx, p.Version)
	if err != nil {
		return p, nil, err
	}
	if p.Digest != "" && p.Digest != hex.EncodeToString(b[len(b)-sha256.Size:]) {
		return p, nil, fmt.Errorf("%w: version %d was replaced while it was read", ErrDigest, p.Version)
	}
	return p, b, nil
}

func (r *Registry) info(ctx context.Context, v int64) (Info, error) {
	s, err := r.c.Get(ctx, r.key("info", vstr(v))).Bytes()
	if errors.Is(err, redis.Nil) {
		return Info{}, fmt.Errorf("%w: %d", ErrNoVersion, v)
	}
	if err != nil {
		return Info{}, fmt.Errorf("registry: read info %d: %w", v, err)
	}
	var in Info
	if err := json.Unmarshal(s, &in); err != nil {
		return Info{}, fmt.Errorf("registry: info of version %d: %w", v, err)
	}
	return in, nil
}

// Get returns the bundle bytes of version v, after checking them against
// their checksum and the digest recorded when they were stored.
func (r *Registry) Get(ctx context.Context, v int64) ([]byte, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	var blob, info *redis.StringCmd
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		blob = p.Get(ctx, r.key("blob", vstr(v)))
		info = p.Get(ctx, r.key("info", vstr(v)))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("registry: read version %d: %w", v, err)
	}
	b, err := blob.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %d", ErrNoVersion, v)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: read version %d: %w", v, err)
	}
	d, err := checkBlob(b)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", v, err)
	}
	if ij, err := info.Bytes(); err == nil {
		var in Info
		if json.Unmarshal(ij, &in) == nil && in.Digest != "" && in.Digest != d {
			return nil, fmt.Errorf("%w: version %d holds %s, recorded as %s", ErrDigest, v, Short(d), Short(in.Digest))
		}
	}
	return b, nil
}

// List returns the stored versions, oldest first.
func (r *Registry) List(ctx context.Context) ([]Info, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	infos, _, _, err := r.list(ctx, r.c)
	return infos, err
}

// Rollback makes an existing version current again (checking its bundle
// first) and notifies scorers. With pin, the version stays current until an
// operator moves or clears the pin: training rounds store their candidates
// without promoting them. Without, any pin is cleared and the next training
// round may promote a new version over this one.
func (r *Registry) Rollback(ctx context.Context, to int64, pin bool) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	err := r.txn(ctx, nil, []string{r.key("current"), r.key("pin"), r.key("info", vstr(to)), r.key("signatures")}, func(tx *redis.Tx) error {
		b, err := tx.Get(ctx, r.key("blob", vstr(to))).Bytes()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("%w: %d", ErrNoVersion, to)
		}
		if err != nil {
			return err
		}
		d, err := checkBlob(b)
		if err != nil {
			return fmt.Errorf("version %d: %w", to, err)
		}
		if required, err := r.signaturesRequired(ctx, tx); err != nil {
			return err
		} else if required && signerOf(b) == "" {
			return fmt.Errorf("%w: version %d", ErrUnsigned, to)
		}
		in := Info{Version: to, Digest: d, Size: len(b)}
		if ij, err := tx.Get(ctx, r.key("info", vstr(to))).Bytes(); err == nil {
			if err := json.Unmarshal(ij, &in); err != nil {
				return fmt.Errorf("info of version %d: %w", to, err)
			}
		}
		if in.Digest != "" && in.Digest != d {
			return fmt.Errorf("%w: version %d holds %s, recorded as %s", ErrDigest, to, Short(d), Short(in.Digest))
		}
		in.Promoted, in.Digest = true, d
		ij, err := json.Marshal(in)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			ptr := Pointer{Version: to, Digest: d}.String()
			p.Set(ctx, r.key("info", vstr(to)), ij, 0)
			p.Set(ctx, r.key("current"), ptr, 0)
			if pin {
				p.Set(ctx, r.key("pin"), vstr(to), 0)
			} else {
				p.Del(ctx, r.key("pin"))
			}
			p.Publish(ctx, r.Channel(), ptr)
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, ErrNoVersion) && !errors.Is(err, ErrDigest) && !errors.Is(err, ErrUnsigned) {
		return fmt.Errorf("registry: rollback to %d: %w", to, err)
	}
	return err
}

// signerOf returns the key id a bundle's signature names, or "" when it
// is unsigned (or not a bundle the model package reads).
func signerOf(blob []byte) string {
	id, ok, err := model.Signer(blob)
	if err != nil || !ok {
		return ""
	}
	return id.String()
}

func (r *Registry) signaturesRequired(ctx context.Context, c redis.Cmdable) (bool, error) {
	n, err := c.Exists(ctx, r.key("signatures")).Result()
	if err != nil {
		return false, fmt.Errorf("registry: read the signature requirement: %w", err)
	}
	return n > 0, nil
}

// SignaturesRequired reports whether only signed bundles are stored and
// made current, and why (who required it).
func (r *Registry) SignaturesRequired(ctx context.Context) (bool, string, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	why, err := r.c.Get(ctx, r.key("signatures")).Result()
	if errors.Is(err, redis.Nil) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("registry: read the signature requirement: %w", err)
	}
	return true, why, nil
}

// RequireSignatures makes Store and Rollback refuse unsigned bundles from
// now on (why is recorded), or, with on false, accept them again. Versions
// already stored are not checked.
func (r *Registry) RequireSignatures(ctx context.Context, on bool, why string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	var err error
	if on {
		err = r.c.Set(ctx, r.key("signatures"), why, 0).Err()
	} else {
		err = r.c.Del(ctx, r.key("signatures")).Err()
	}
	if err != nil {
		return fmt.Errorf("registry: set the signature requirement: %w", err)
	}
	return nil
}

// Unpin clears the pin: the next training round may promote again.
func (r *Registry) Unpin(ctx context.Context) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if err := r.c.Del(ctx, r.key("pin")).Err(); err != nil {
		return fmt.Errorf("registry: unpin: %w", err)
	}
	return nil
}

// Pinned returns the pinned version, if any.
func (r *Registry) Pinned(ctx context.Context) (int64, bool, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	return r.pinned(ctx, r.c)
}

func (r *Registry) pinned(ctx context.Context, c redis.Cmdable) (int64, bool, error) {
	s, err := c.Get(ctx, r.key("pin")).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("registry: read pin: %w", err)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("registry: pin %q is not a version", s)
	}
	return v, true, nil
}

// Schema returns the deployment's pinned schema, or ErrNoSchema.
func (r *Registry) Schema(ctx context.Context) (*features.Schema, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	b, err := r.c.Get(ctx, r.key("schema")).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoSchema
	}
	if err != nil {
		return nil, fmt.Errorf("registry: read schema: %w", err)
	}
	s, err := features.ReadSchema(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("registry: pinned schema: %w", err)
	}
	return s, nil
}

// PinSchema records s as the deployment's schema (not fenced; the trainer
// pins through its Lock).
func (r *Registry) PinSchema(ctx context.Context, s *features.Schema) error {
	return r.pinSchema(ctx, nil, s)
}

func (r *Registry) pinSchema(ctx context.Context, fence *Lock, s *features.Schema) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := s.WriteJSON(&buf); err != nil {
		return err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	err := r.txn(ctx, fence, nil, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, r.key("schema"), buf.Bytes(), 0)
			return nil
		})
		return err
	})
	if err != nil && !errors.Is(err, ErrNotLeader) {
		return fmt.Errorf("registry: pin schema: %w", err)
	}
	return err
}

// Subscribe delivers each promoted version number until ctx ends; the
// channel is closed then. Notices can be missed (Redis pub/sub is
// fire-and-forget), so consumers should also poll Pointer.
func (r *Registry) Subscribe(ctx context.Context) (<-chan int64, error) {
	ps := r.c.Subscribe(ctx, r.Channel())
	rctx, cancel := r.bound(ctx)
	_, err := ps.Receive(rctx)
	cancel()
	if err != nil {
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
				p, err := ParsePointer(m.Payload)
				if err != nil {
					continue
				}
				select {
				case out <- p.Version:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Lock is the trainer leader lock. Its value carries a random token so that
// a write fenced by it fails once the lock has lapsed, even if the same
// owner name took it again.
type Lock struct {
	r     *Registry
	owner string
	value string
}

// releaseScript deletes or extends the lock only if the caller owns it.
var (
	releaseScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)
	renewScript   = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`)
)

// TryLead takes the leader lock for owner with an expiry, so that a crashed
// leader's lock lapses. It reports false when another owner holds it.
func (r *Registry) TryLead(ctx context.Context, owner string, ttl time.Duration) (*Lock, bool, error) {
	var tok [8]byte
	rand.Read(tok[:])
	value := owner + " " + hex.EncodeToString(tok[:])
	ctx, cancel := r.bound(ctx)
	defer cancel()
	ok, err := r.c.SetNX(ctx, r.key("leader"), value, ttl).Result()
	if err != nil {
		return nil, false, fmt.Errorf("registry: leader lock: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	return &Lock{r: r, owner: owner, value: value}, true, nil
}

// Owner is the name the lock was taken with.
func (l *Lock) Owner() string { return l.owner }

// check is the fence: the lock must still hold this lock's value.
func (l *Lock) check(ctx context.Context, c redis.Cmdable) error {
	v, err := c.Get(ctx, l.r.key("leader")).Result()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: it expired", ErrNotLeader)
	}
	if err != nil {
		return fmt.Errorf("registry: read leader lock: %w", err)
	}
	if v != l.value {
		owner, _, _ := strings.Cut(v, " ")
		return fmt.Errorf("%w: now held by %s", ErrNotLeader, owner)
	}
	return nil
}

// Store is Registry.Store fenced by the lock: it fails with ErrNotLeader,
// storing nothing, unless this lock is still held.
func (l *Lock) Store(ctx context.Context, blob []byte, info Info, promote bool) (int64, error) {
	return l.r.store(ctx, l, blob, info, promote)
}

// PinSchema is Registry.PinSchema fenced by the lock.
func (l *Lock) PinSchema(ctx context.Context, s *features.Schema) error {
	return l.r.pinSchema(ctx, l, s)
}

// Renew extends the lock; false means it was lost (expired and taken).
func (l *Lock) Renew(ctx context.Context, ttl time.Duration) (bool, error) {
	ctx, cancel := l.r.bound(ctx)
	defer cancel()
	n, err := renewScript.Run(ctx, l.r.c, []string{l.r.key("leader")}, l.value, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("registry: renew leader lock: %w", err)
	}
	return n == 1, nil
}

// Release gives the lock up if still held.
func (l *Lock) Release(ctx context.Context) error {
	ctx, cancel := l.r.bound(ctx)
	defer cancel()
	if err := releaseScript.Run(ctx, l.r.c, []string{l.r.key("leader")}, l.value).Err(); err != nil {
		return fmt.Errorf("registry: release leader lock: %w", err)
	}
	return nil
}
