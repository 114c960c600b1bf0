package pipeline

import (
	"context"
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
	// A corrupt version is refused; the good model stays in use.
	reg.Store(ctx, blob[:len(blob)-10], registry.Info{}, true)
	time.Sleep(200 * time.Millisecond)
	waitVersion(t, cur, "1")
	// A good one is picked up (by notice or by polling).
	reg.Store(ctx, blob, registry.Info{}, true)
	waitVersion(t, cur, "3")
	// Rollback is followed too.
	reg.Rollback(ctx, 1)
	waitVersion(t, cur, "1")
	cancel()
	wg.Wait()
	if len(loaded) != 3 {
		t.Fatalf("%d loads, want 3", len(loaded))
	}
}
