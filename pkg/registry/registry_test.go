package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/features"
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

// bundle makes a blob in the bundle format's framing: content followed by
// its SHA-256, which is what the registry checks and calls the digest.
func bundle(content string) []byte {
	sum := sha256.Sum256([]byte(content))
	return append([]byte(content), sum[:]...)
}

func digest(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

func TestRegistryContract(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("versions, current, trim", func(t *testing.T) { testVersions(t, b) })
			t.Run("rollback and candidates", func(t *testing.T) { testRollback(t, b) })
			t.Run("rejections do not trim rollback targets", func(t *testing.T) { testTrimKeepsRollbackTargets(t, b) })
			t.Run("pin", func(t *testing.T) { testPin(t, b) })
			t.Run("digests", func(t *testing.T) { testDigests(t, b) })
			t.Run("notices", func(t *testing.T) { testNotices(t, b) })
			t.Run("leader lock", func(t *testing.T) { testLeader(t, b) })
			t.Run("fenced writes", func(t *testing.T) { testFencing(t, b) })
			t.Run("schema pin", func(t *testing.T) { testSchema(t, b) })
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
		v, err := r.Store(ctx, bundle(fmt.Sprintf("bundle %d", i)), Info{Summary: fmt.Sprint(i)}, true)
		if err != nil || v != int64(i) {
			t.Fatalf("store %d: v=%d %v", i, v, err)
		}
	}
	p, blob, err := r.Current(ctx)
	if err != nil || p.Version != 5 || !bytes.Equal(blob, bundle("bundle 5")) || p.Digest != digest("bundle 5") {
		t.Fatalf("current: %+v %q %v", p, blob, err)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Version != 3 || !list[2].Current || list[2].Size != 40 || list[1].Current || list[2].Digest != digest("bundle 5") {
		t.Fatalf("kept versions: %+v", list)
	}
	if _, err := r.Get(ctx, 1); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("trimmed version 1: %v", err)
	}
}

func testRollback(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 2)
	r.Store(ctx, bundle("good"), Info{}, true)
	// A candidate that failed the gate is recorded, not promoted.
	if _, err := r.Store(ctx, bundle("worse"), Info{Reason: "validation loss 2x the current model's"}, false); err != nil {
		t.Fatal(err)
	}
	if cur, _ := r.CurrentVersion(ctx); cur != 1 {
		t.Fatalf("a rejected candidate became current (%d)", cur)
	}
	r.Store(ctx, bundle("third"), Info{}, true)
	r.Store(ctx, bundle("fourth"), Info{}, true)
	// Version 1 was current until version 3; now trimmed (keep 2 promoted).
	if err := r.Rollback(ctx, 1, false); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("rollback to a trimmed version: %v", err)
	}
	if err := r.Rollback(ctx, 3, false); err != nil {
		t.Fatal(err)
	}
	if p, blob, _ := r.Current(ctx); p.Version != 3 || !bytes.Equal(blob, bundle("third")) {
		t.Fatalf("after rollback: %+v %q", p, blob)
	}
	// The current version survives trimming however old it gets.
	for i := range 4 {
		r.Store(ctx, bundle(fmt.Sprint("candidate ", i)), Info{Reason: "worse"}, false)
	}
	if p, blob, err := r.Current(ctx); p.Version != 3 || !bytes.Equal(blob, bundle("third")) || err != nil {
		t.Fatalf("current trimmed away: %+v %q %v", p, blob, err)
	}
}

// testTrimKeepsRollbackTargets: promoted versions and rejected candidates
// are trimmed apart, so a run of rejections keeps every rollback target.
func testTrimKeepsRollbackTargets(t *testing.T, b backend) {
	ctx := context.Background()
	r, err := New(Config{Client: b.client(t), Keep: 3, KeepCandidates: 2, Prefix: fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.Store(ctx, bundle(fmt.Sprint("promoted ", i)), Info{}, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if _, err := r.Store(ctx, bundle(fmt.Sprint("rejected ", i)), Info{Reason: "gate"}, false); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := r.List(ctx)
	var got []string
	for _, in := range list {
		got = append(got, fmt.Sprintf("%d:%v", in.Version, in.Promoted))
	}
	// Versions 1-3 promoted (all kept), 4-8 rejected (the last two kept).
	if fmt.Sprint(got) != "[1:true 2:true 3:true 7:false 8:false]" {
		t.Fatalf("kept %v", got)
	}
	if err := r.Rollback(ctx, 1, false); err != nil {
		t.Fatalf("rollback after five rejections: %v", err)
	}
	// A rolled-back-to version counts as promoted from then on.
	if err := r.Rollback(ctx, 8, false); err != nil {
		t.Fatal(err)
	}
	list, _ = r.List(ctx)
	if n := len(list); n != 5 || !list[4].Promoted || !list[4].Current {
		t.Fatalf("after rolling forward to a candidate: %+v", list)
	}
}

func testPin(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 5)
	r.Store(ctx, bundle("one"), Info{}, true)
	r.Store(ctx, bundle("two"), Info{}, true)
	if err := r.Rollback(ctx, 1, true); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := r.Pinned(ctx); v != 1 || !ok || err != nil {
		t.Fatalf("pinned: %d %v %v", v, ok, err)
	}
	// While pinned nothing is promoted; candidates are still recorded.
	if _, err := r.Store(ctx, bundle("three"), Info{}, true); !errors.Is(err, ErrPinned) {
		t.Fatalf("promoting over a pin: %v", err)
	}
	if v, err := r.Store(ctx, bundle("three"), Info{Reason: "pinned"}, false); err != nil || v != 3 {
		t.Fatalf("candidate while pinned: %d %v", v, err)
	}
	if p, _ := r.Pointer(ctx); p.Version != 1 || p.Digest != digest("one") {
		t.Fatalf("pinned version moved: %+v", p)
	}
	list, _ := r.List(ctx)
	if !list[0].Pinned || !list[0].Current || list[1].Pinned {
		t.Fatalf("list marks: %+v", list)
	}
	if err := r.Unpin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Store(ctx, bundle("four"), Info{}, true); err != nil {
		t.Fatalf("promoting after unpin: %v", err)
	}
	// A rollback without pin clears a pin.
	r.Rollback(ctx, 2, true)
	r.Rollback(ctx, 1, false)
	if _, ok, _ := r.Pinned(ctx); ok {
		t.Fatal("an unpinned rollback left the pin")
	}
}

func testDigests(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 5)
	// A blob that does not match its checksum is refused.
	bad := bundle("model")
	bad[0] ^= 1
	if _, err := r.Store(ctx, bad, Info{}, true); !errors.Is(err, ErrDigest) {
		t.Fatalf("stored a corrupt bundle: %v", err)
	}
	if _, err := r.Store(ctx, bundle("model"), Info{Digest: digest("other")}, true); !errors.Is(err, ErrDigest) {
		t.Fatalf("stored a bundle under another digest: %v", err)
	}
	v, err := r.Store(ctx, bundle("model"), Info{}, true)
	if err != nil {
		t.Fatal(err)
	}
	// Bytes changed in Redis (a valid bundle, but not the recorded one) are
	// refused on read.
	if err := r.c.Set(ctx, r.key("blob", vstr(v)), bundle("swapped"), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, v); !errors.Is(err, ErrDigest) {
		t.Fatalf("read a bundle that is not the recorded one: %v", err)
	}
	if _, _, err := r.Current(ctx); !errors.Is(err, ErrDigest) {
		t.Fatalf("current: %v", err)
	}
	// Redis loses its data: numbering starts again, the digest tells the
	// new version 1 from the old.
	r.Store(ctx, bundle("first"), Info{}, true)
	before, _ := r.Pointer(ctx)
	keys, _ := r.c.Keys(ctx, r.prefix+"*").Result()
	r.c.Del(ctx, keys...)
	r.Store(ctx, bundle("after the loss"), Info{}, true)
	after, _ := r.Pointer(ctx)
	if after.Version != 1 || after.Digest == before.Digest || after.Digest != digest("after the loss") {
		t.Fatalf("before %+v, after %+v", before, after)
	}
}

func testNotices(t *testing.T, b backend) {
	ctx, cancel := context.WithCancel(context.Background())
	r := newRegistry(t, b, 5)
	ch, err := r.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Store(ctx, bundle("a"), Info{}, true)
	r.Store(ctx, bundle("b"), Info{}, false) // not promoted: no notice
	r.Store(ctx, bundle("c"), Info{}, true)
	r.Rollback(ctx, 1, false)
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

// testFencing: a trainer whose lock lapsed while it trained cannot store or
// promote, whoever holds the lock now (even a replica of the same name).
func testFencing(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 5)
	ttl := 300 * time.Millisecond
	a, _, _ := r.TryLead(ctx, "trainer", ttl)
	if _, err := a.Store(ctx, bundle("a1"), Info{}, true); err != nil {
		t.Fatalf("store as leader: %v", err)
	}
	b.expire(t, 2*ttl)
	if _, err := a.Store(ctx, bundle("a2"), Info{}, true); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("store after the lock expired: %v", err)
	}
	// Another replica with the same name takes the lock.
	a2, ok, _ := r.TryLead(ctx, "trainer", time.Minute)
	if !ok {
		t.Fatal("lock not free")
	}
	if _, err := a.Store(ctx, bundle("a3"), Info{}, true); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("store with a lock now held by another: %v", err)
	}
	if err := a.PinSchema(ctx, testSchema1()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("schema pin with a lost lock: %v", err)
	}
	if p, _ := r.Pointer(ctx); p.Digest != digest("a1") {
		t.Fatalf("a fenced-out write moved current: %+v", p)
	}
	if list, _ := r.List(ctx); len(list) != 1 {
		t.Fatalf("a fenced-out write stored a version: %+v", list)
	}
	if _, err := a2.Store(ctx, bundle("b1"), Info{}, true); err != nil {
		t.Fatalf("the new leader's store: %v", err)
	}
}

func testSchema1() *features.Schema {
	return &features.Schema{Fields: []features.Field{{Name: "id", Kind: features.ID}, {Name: "amount", Kind: features.Numeric}}, IDField: "id"}
}

func testSchema(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 5)
	if _, err := r.Schema(ctx); !errors.Is(err, ErrNoSchema) {
		t.Fatalf("empty registry's schema: %v", err)
	}
	if err := r.PinSchema(ctx, &features.Schema{}); err == nil {
		t.Fatal("pinned an invalid schema")
	}
	l, _, _ := r.TryLead(ctx, "trainer", time.Minute)
	if err := l.PinSchema(ctx, testSchema1()); err != nil {
		t.Fatal(err)
	}
	s, err := r.Schema(ctx)
	if err != nil || len(s.Fields) != 2 || s.Fields[1].Kind != features.Numeric || s.IDField != "id" {
		t.Fatalf("pinned schema: %+v %v", s, err)
	}
}

// testWholeModels: readers following `current` while versions are being
// stored always get a complete bundle of the version they were pointed at.
func testWholeModels(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 3)
	blob := func(v int64) []byte { return bundle(string(bytes.Repeat([]byte{byte(v)}, 1000+int(v)*37))) }
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
				p, got, err := r.Current(ctx)
				if errors.Is(err, ErrNoVersion) {
					continue // trimmed between the two reads: the next read is newer
				}
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, blob(p.Version)) {
					errs <- fmt.Errorf("version %d: got %d bytes, want %d", p.Version, len(got), len(blob(p.Version)))
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

// TestEveryCallHasADeadline: a Redis that accepts connections and never
// answers makes calls fail after Config.Timeout instead of hanging.
func TestEveryCallHasADeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: -1, WriteTimeout: -1, ContextTimeoutEnabled: true, MaxRetries: -1, Protocol: 2})
	defer c.Close()
	r, _ := New(Config{Client: c, Timeout: 100 * time.Millisecond})
	ctx := context.Background()
	calls := map[string]func() error{
		"Pointer": func() error { _, err := r.Pointer(ctx); return err },
		"Store":   func() error { _, err := r.Store(ctx, bundle("x"), Info{}, true); return err },
		"Get":     func() error { _, err := r.Get(ctx, 1); return err },
		"List":    func() error { _, err := r.List(ctx); return err },
		"TryLead": func() error { _, _, err := r.TryLead(ctx, "a", time.Second); return err },
		"Ping":    func() error { return r.Ping(ctx) },
		"Schema":  func() error { _, err := r.Schema(ctx); return err },
	}
	for name, call := range calls {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: no error from a Redis that never answers", name)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still waiting on a silent Redis after 30s", name)
		}
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
