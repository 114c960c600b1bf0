package connect

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestEvictionRisk(t *testing.T) {
	for _, c := range []struct {
		max    int64
		policy string
		ok     bool
		level  slog.Level
	}{
		{0, "allkeys-lru", true, slog.LevelInfo}, // no limit: nothing is evicted
		{1 << 30, "noeviction", true, slog.LevelInfo},
		{1 << 30, "volatile-lru", false, slog.LevelWarn},
		{1 << 30, "volatile-ttl", false, slog.LevelWarn},
		{1 << 30, "allkeys-lru", false, slog.LevelError},
		{1 << 30, "allkeys-random", false, slog.LevelError},
	} {
		level, msg, ok := EvictionRisk(c.max, c.policy)
		if ok != c.ok || level != c.level || ok != (msg == "") {
			t.Errorf("maxmemory %d, %s: level %v, ok %v, %q", c.max, c.policy, level, ok, msg)
		}
		// The advice is noeviction, never another evicting policy.
		if !ok && (!strings.Contains(msg, "set maxmemory-policy noeviction") || strings.Contains(msg, "volatile-lru") || strings.Contains(msg, "allkeys-lru")) {
			t.Errorf("%s: the advice %q is not noeviction alone", c.policy, msg)
		}
	}
}

// TestLogEviction: against a redis-server that may evict any key the
// programs log an error naming the fix; against one that reports no
// memory settings (miniredis) they say it was not checked.
func TestLogEviction(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("REDIS_ADDR") != "" {
			t.Fatal("REDIS_ADDR is set (as in CI) but redis-server is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(ctx).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}
	max, policy, err := r.Eviction(ctx, c)
	if err != nil || max != 64<<20 || policy != "allkeys-lru" {
		t.Fatalf("Eviction: %d %q %v", max, policy, err)
	}
	var buf bytes.Buffer
	r.LogEviction(ctx, slog.New(slog.NewTextHandler(&buf, nil)), c)
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "maxmemory-policy noeviction") {
		t.Errorf("allkeys-lru with a limit logged %q", out)
	}
	// noeviction: logged as it is, no warning.
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	r.LogEviction(ctx, slog.New(slog.NewTextHandler(&buf, nil)), c)
	if out := buf.String(); !strings.Contains(out, "level=INFO") || !strings.Contains(out, "policy=noeviction") {
		t.Errorf("noeviction logged %q", out)
	}

	mr := miniredis.RunT(t)
	m := &Redis{Addr: mr.Addr()}
	mc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer mc.Close()
	buf.Reset()
	m.LogEviction(ctx, slog.New(slog.NewTextHandler(&buf, nil)), mc)
	if out := buf.String(); !strings.Contains(out, "not checked") {
		t.Errorf("a Redis without memory settings logged %q", out)
	}
}
