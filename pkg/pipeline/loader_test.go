package pipeline

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
)

func waitVersion(t *testing.T, cur *Current, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := cur.Load(); m != nil && m.Version == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := "none"
	if m := cur.Load(); m != nil {
		got = m.Version
	}
	t.Fatalf("model version %s, want %s", got, want)
}

func TestLoaderFollowsRegistry(t *testing.T) {
	mr := miniredis.RunT(t)
	reg, err := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cur := &Current{}
	loaded := make(chan int64, 10)
	l, _ := NewLoader(LoaderConfig{Registry: reg, Models: cur, Poll: 50 * time.Millisecond, OnLoad: func(v int64, _ *model.Bundle) { loaded <- v }})
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(ctx) })

	// No model yet: the loader waits instead of failing.
	time.Sleep(150 * time.Millisecond)
	if cur.Load() != nil {
		t.Fatal("a model appeared from nowhere")
	}
	b := bundle(t)
	blob, _ := b.MarshalBinary()
	reg.Store(ctx, blob, registry.Info{}, true)
	waitVersion(t, cur, "1")
	// A bundle the registry cannot check is refused when stored; one that
	// is checksummed but does not decode is skipped by the loader, and the
	// good model stays in use.
	if _, err := reg.Store(ctx, blob[:len(blob)-10], registry.Info{}, true); err == nil {
		t.Fatal("the registry stored a truncated bundle")
	}
	reg.Store(ctx, rechecksum(blob[:len(blob)-42]), registry.Info{}, true)
	time.Sleep(200 * time.Millisecond)
	waitVersion(t, cur, "1")
	// A good one is picked up (by notice or by polling).
	reg.Store(ctx, blob, registry.Info{}, true)
	waitVersion(t, cur, "3")
	// Rollback is followed too.
	reg.Rollback(ctx, 1, false)
	waitVersion(t, cur, "1")
	cancel()
	wg.Wait()
	if len(loaded) != 3 {
		t.Fatalf("%d loads, want 3", len(loaded))
	}
}

// rechecksum ends body with its SHA-256, as a bundle is framed.
func rechecksum(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(slices.Clone(body), sum[:]...)
}

// TestLoaderTellsModelsApartByDigest: after Redis loses its data the trainer
// publishes a different model as "version 1" again; a scorer holding the old
// version 1 must load it, and one republished under a new number keeps its
// model (and decider) with the new label.
func TestLoaderTellsModelsApartByDigest(t *testing.T) {
	mr := miniredis.RunT(t)
	reg, err := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cur := &Current{}
	l, _ := NewLoader(LoaderConfig{Registry: reg, Models: cur, Poll: 20 * time.Millisecond})
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	old := bundle(t)
	oldBlob, _ := old.MarshalBinary()
	if v, err := reg.Store(ctx, oldBlob, registry.Info{}, true); err != nil || v != 1 {
		t.Fatalf("store: %d %v", v, err)
	}
	waitVersion(t, cur, "1")
	first := cur.Load()
	if first.Digest != model.Digest(oldBlob) {
		t.Fatalf("loaded digest %s", first.Digest)
	}

	mr.FlushAll()
	other := *old
	other.Meta.Seed = 99 // another model: other bytes, other digest
	otherBlob, _ := other.MarshalBinary()
	if v, err := reg.Store(ctx, otherBlob, registry.Info{}, true); err != nil || v != 1 {
		t.Fatalf("store after the flush: %d %v", v, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for cur.Load().Digest != model.Digest(otherBlob) {
		if time.Now().After(deadline) {
			t.Fatalf("still on %s after the registry named another version 1", registry.Short(cur.Load().Digest))
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := cur.Load()
	if second.Version != "1" || second.Bundle.Meta.Seed != 99 {
		t.Fatalf("loaded %s seed %d", second.Version, second.Bundle.Meta.Seed)
	}

	// The same bytes stored again as version 2: relabelled, not reloaded.
	reg.Store(ctx, otherBlob, registry.Info{}, true)
	waitVersion(t, cur, "2")
	if m := cur.Load(); m.Bundle != second.Bundle {
		t.Fatal("the same model was reloaded (decider state lost) instead of relabelled")
	}
}

// countingRegistry counts the loader's reads, so that a test can wait for
// polls to happen instead of sleeping.
type countingRegistry struct {
	*registry.Registry
	pointers, gets atomic.Int64
}

func (c *countingRegistry) Pointer(ctx context.Context) (registry.Pointer, error) {
	c.pointers.Add(1)
	return c.Registry.Pointer(ctx)
}

func (c *countingRegistry) Get(ctx context.Context, v int64) ([]byte, error) {
	c.gets.Add(1)
	return c.Registry.Get(ctx, v)
}

func signingKey(seed byte) *model.SigningKey {
	return model.NewSigningKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

// TestLoaderRefusesForgedBundles: someone with write access to Redis plants
// a bundle with a valid checksum (unsigned, signed by a key the scorer does
// not trust, or signed and then altered), moves `current` to it and
// publishes a notice, as the registry would. A verifying loader refuses
// each, reports it once with its reason, and keeps the model in use (and
// its decider); a bundle signed by either trusted key (rotation) loads.
func TestLoaderRefusesForgedBundles(t *testing.T) {
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	base, err := registry.New(registry.Config{Client: rc})
	if err != nil {
		t.Fatal(err)
	}
	reg := &countingRegistry{Registry: base}
	oldKey, newKey, stranger := signingKey(1), signingKey(2), signingKey(3)
	ctx, cancel := context.WithCancel(context.Background())
	cur := &Current{}
	type refusal struct {
		version int64
		reason  string
	}
	refused := make(chan refusal, 10)
	var log syncBuffer
	l, _ := NewLoader(LoaderConfig{Registry: reg, Models: cur, Poll: 10 * time.Millisecond,
		Verify:   model.NewKeyring(oldKey.Public(), newKey.Public()),
		OnReject: func(v int64, reason string) { refused <- refusal{v, reason} },
		Logger:   slog.New(slog.NewTextHandler(&log, nil))})
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	b := bundle(t)
	plain, _ := b.MarshalBinary()
	good, _ := model.Sign(plain, oldKey)
	if _, err := reg.Store(ctx, good, registry.Info{}, true); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, cur, "1")
	first := cur.Load()

	// plant writes version v straight into Redis, as an attacker would.
	plant := func(v int64, blob []byte) {
		ptr := registry.Pointer{Version: v, Digest: model.Digest(blob)}.String()
		mr.Set(fmt.Sprintf("fraudstream:model:blob:%d", v), string(blob))
		mr.Set("fraudstream:model:current", ptr)
		mr.Publish(base.Channel(), ptr)
	}
	other := *b
	other.Meta.Seed = 42 // another model: its own digest
	otherPlain, _ := other.MarshalBinary()
	byStranger, _ := model.Sign(otherPlain, stranger)
	altered := bytes.Clone(good[:len(good)-32])
	altered[len(altered)-100] ^= 0x20 // a weight, after signing
	altered = rechecksum(altered)
	cases := []struct {
		blob   []byte
		reason string
	}{
		{otherPlain, "unsigned"},
		{byStranger, "unknown_key"},
		{altered, "bad_signature"},
		{rechecksum(good[:len(good)-32-100]), "unknown_key"}, // truncated, re-summed: what ends it names no trusted key
	}
	for i, tc := range cases {
		v := int64(2 + i)
		plant(v, tc.blob)
		select {
		case r := <-refused:
			if r.version != v || r.reason != tc.reason {
				t.Fatalf("version %d refused as %+v, want reason %s", v, r, tc.reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("version %d (%s) was not refused:\n%s", v, tc.reason, log.String())
		}
		if m := cur.Load(); m != first {
			t.Fatalf("version %d (%s): the model in use changed to %s", v, tc.reason, m.Version)
		}
		// Polls go on; the refused bundle is neither read nor reported again.
		gets, polls := reg.gets.Load(), reg.pointers.Load()
		for reg.pointers.Load() < polls+5 {
			time.Sleep(time.Millisecond)
		}
		if n := reg.gets.Load(); n != gets {
			t.Fatalf("version %d: read %d more times after it was refused", v, n-gets)
		}
	}
	if len(refused) != 0 {
		t.Fatalf("refusals reported more than once: %v", <-refused)
	}
	if m := cur.Load(); m != first || m.Version != "1" { // the same *Model: bundle and decider state kept
		t.Fatal("the model in use was replaced")
	}
	if s := log.String(); strings.Count(s, "model bundle refused") != len(cases) || !strings.Contains(s, "signature does not match the content") ||
		!strings.Contains(s, "unsigned") || !strings.Contains(s, "serving=1") {
		t.Fatalf("log:\n%s", s)
	}

	// Rotation: a model signed by the new key loads, and so does one by
	// the old key again.
	byNew, _ := model.Sign(otherPlain, newKey)
	// (The planted versions did not move the registry's counter: this is
	// version 2 again, a digest not refused before.)
	if _, err := reg.Store(ctx, byNew, registry.Info{}, true); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, cur, "2")
	if cur.Load().Bundle.Meta.Seed != 42 || !strings.Contains(log.String(), "signed_by="+newKey.ID().String()) {
		t.Fatalf("version 2 is not the model signed by the new key:\n%s", log.String())
	}
	reg.Rollback(ctx, 1, false)
	waitVersion(t, cur, "1")
}

// TestLoaderWithoutVerifyLoadsAnySoundBundle: with no keys, signed and
// unsigned bundles load as before signatures existed.
func TestLoaderWithoutVerifyLoadsAnySoundBundle(t *testing.T) {
	mr := miniredis.RunT(t)
	reg, err := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cur := &Current{}
	l, _ := NewLoader(LoaderConfig{Registry: reg, Models: cur, Poll: 10 * time.Millisecond})
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	plain, _ := bundle(t).MarshalBinary()
	signed, _ := model.Sign(plain, signingKey(9))
	reg.Store(ctx, plain, registry.Info{}, true)
	waitVersion(t, cur, "1")
	reg.Store(ctx, signed, registry.Info{}, true)
	waitVersion(t, cur, "2")
	if cur.Load().Digest != model.Digest(signed) {
		t.Fatal("the signed bundle was not loaded")
	}
}

// syncBuffer is a log sink safe for the loader's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
