package pipeline

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
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
