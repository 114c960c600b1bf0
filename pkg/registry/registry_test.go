package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// backend is a Redis for the contract tests: always miniredis, and also a
// real redis-server when REDIS_ADDR is set (CI starts one).
type backend struct {
	name   string
	client func(t *testing.T) redis.UniversalClient
	// expire makes keys with a TTL lapse (miniredis needs its clock moved).
	expire func(t *testing.T, d time.Duration)
}

func backends(t *testing.T) []backend {
	var mr *miniredis.Miniredis
	out := []backend{{
		name: "miniredis",
		client: func(t *testing.T) redis.UniversalClient {
			mr = miniredis.RunT(t)
			return redis.NewClient(&redis.Options{Addr: mr.Addr()})
		},
		expire: func(t *testing.T, d time.Duration) { mr.FastForward(d) },
	}}
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		out = append(out, backend{
			name: "redis-server",
			client: func(t *testing.T) redis.UniversalClient {
				c := redis.NewClient(&redis.Options{Addr: addr})
				if err := c.Ping(context.Background()).Err(); err != nil {
					t.Fatalf("REDIS_ADDR=%s: %v", addr, err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			},
			expire: func(t *testing.T, d time.Duration) { time.Sleep(d) },
		})
	}
	return out
}

// newRegistry gives each test its own key prefix so that runs against a
// shared real Redis do not see each other.
func newRegistry(t *testing.T, b backend, keep int) *Registry {
	r, err := New(Config{Client: b.client(t), Keep: keep, Prefix: fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryContract(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("versions, current, trim", func(t *testing.T) { testVersions(t, b) })
			t.Run("rollback and candidates", func(t *testing.T) { testRollback(t, b) })
			t.Run("notices", func(t *testing.T) { testNotices(t, b) })
			t.Run("leader lock", func(t *testing.T) { testLeader(t, b) })
			t.Run("readers see whole models", func(t *testing.T) { testWholeModels(t, b) })
		})
	}
}

func testVersions(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 3)
	if _, _, err := r.Current(ctx); !errors.Is(err, ErrNoModel) {
		t.Fatalf("empty registry: %v", err)
	}
	for i := 1; i <= 5; i++ {
		v, err := r.Store(ctx, []byte(fmt.Sprintf("bundle %d", i)), Info{Summary: fmt.Sprint(i)}, true)
		if err != nil || v != int64(i) {
			t.Fatalf("store %d: v=%d %v", i, v, err)
		}
	}
	v, blob, err := r.Current(ctx)
	if err != nil || v != 5 || string(blob) != "bundle 5" {
		t.Fatalf("current: %d %q %v", v, blob, err)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Version != 3 || !list[2].Current || list[2].Size != 8 || list[1].Current {
		t.Fatalf("kept versions: %+v", list)
	}
	if _, err := r.Get(ctx, 1); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("trimmed version 1: %v", err)
	}
}

func testRollback(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 2)
	r.Store(ctx, []byte("good"), Info{}, true)
	// A candidate that failed the gate is recorded, not promoted.
	v2, err := r.Store(ctx, []byte("worse"), Info{Reason: "validation loss 2x the current model's"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := r.CurrentVersion(ctx); cur != 1 {
		t.Fatalf("a rejected candidate became current (%d)", cur)
	}
	r.Store(ctx, []byte("third"), Info{}, true)
	r.Store(ctx, []byte("fourth"), Info{}, true)
	// Version 1 was current until version 3; now trimmed (keep 2).
	if err := r.Rollback(ctx, 1); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("rollback to a trimmed version: %v", err)
	}
	if err := r.Rollback(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if v, blob, _ := r.Current(ctx); v != 3 || string(blob) != "third" {
		t.Fatalf("after rollback: %d %q", v, blob)
	}
	// The current version survives trimming however old it gets.
	r.Store(ctx, []byte("fifth"), Info{}, false)
	r.Store(ctx, []byte("sixth"), Info{}, false)
	if v, blob, err := r.Current(ctx); v != 3 || string(blob) != "third" || err != nil {
		t.Fatalf("current trimmed away: %d %q %v", v, blob, err)
	}
	_ = v2
}

func testNotices(t *testing.T, b backend) {
	ctx, cancel := context.WithCancel(context.Background())
	r := newRegistry(t, b, 5)
	ch, err := r.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Store(ctx, []byte("a"), Info{}, true)
	r.Store(ctx, []byte("b"), Info{}, false) // not promoted: no notice
	r.Store(ctx, []byte("c"), Info{}, true)
	r.Rollback(ctx, 1)
	var got []int64
	for len(got) < 3 {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-time.After(5 * time.Second):
			t.Fatalf("notices so far %v", got)
		}
	}
	if fmt.Sprint(got) != "[1 3 1]" {
		t.Fatalf("notices %v, want [1 3 1]", got)
	}
	cancel()
	for range ch {
	} // closed once ctx ends: the goroutine has exited
}

func testLeader(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 5)
	ttl := 300 * time.Millisecond
	a, ok, err := r.TryLead(ctx, "trainer-a", ttl)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, _ := r.TryLead(ctx, "trainer-b", ttl); ok {
		t.Fatal("two leaders at once")
	}
	if ok, err := a.Renew(ctx, ttl); !ok || err != nil {
		t.Fatalf("renew: %v %v", ok, err)
	}
	// A crashed leader's lock lapses and another replica takes over.
	b.expire(t, 2*ttl)
	bl, ok, err := r.TryLead(ctx, "trainer-b", ttl)
	if err != nil || !ok {
		t.Fatalf("lock after expiry: %v %v", ok, err)
	}
	if ok, _ := a.Renew(ctx, ttl); ok {
		t.Fatal("the old leader renewed a lock it lost")
	}
	a.Release(ctx) // must not release b's lock
	if _, ok, _ := r.TryLead(ctx, "trainer-c", ttl); ok {
		t.Fatal("the old leader's release freed the new leader's lock")
	}
	bl.Release(ctx)
	if _, ok, _ := r.TryLead(ctx, "trainer-c", ttl); !ok {
		t.Fatal("lock not free after release")
	}
}

// testWholeModels: readers following `current` while versions are being
// stored always get a complete bundle of the version they were pointed at.
func testWholeModels(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 3)
	blob := func(v int64) []byte { return bytes.Repeat([]byte{byte(v)}, 1000+int(v)*37) }
	r.Store(ctx, blob(1), Info{}, true)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, got, err := r.Current(ctx)
				if errors.Is(err, ErrNoVersion) {
					continue // trimmed between the two reads: the next read is newer
				}
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, blob(v)) {
					errs <- fmt.Errorf("version %d: got %d bytes, want %d", v, len(got), len(blob(v)))
					return
				}
			}
		})
	}
	for v := int64(2); v <= 30; v++ {
		if _, err := r.Store(ctx, blob(v), Info{}, true); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("accepted a config without a client")
	}
	if _, err := New(Config{Client: redis.NewClient(&redis.Options{}), Keep: -1}); err == nil {
		t.Fatal("accepted a negative Keep")
	}
}
