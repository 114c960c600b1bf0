package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// TestReadFleetSecret: a missing, empty or short secret file is refused
// with an error that names the file and never shows its content; the
// trailing newline of a file written by a shell is not part of the secret.
func TestReadFleetSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "no such file"},
		{write("empty", ""), "is empty"},
		{write("blank", " \n"), "is empty"},
		{write("short", "s3cr3t\n"), "at least 16"},
	} {
		_, err := readFleetSecret(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: %v, want an error naming the file and saying %q", tc.path, err, tc.want)
		}
	}
	a, err := readFleetSecret(write("a", "0123456789abcdef0123\n"))
	b, _ := readFleetSecret(write("b", "0123456789abcdef0123"))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("secret with and without a newline: %q, %q, %v", a, b, err)
	}
	// The environment form sets the flag's default.
	t.Setenv("FRAUDSTREAM_FLEET_SECRET_FILE", "/run/secrets/fleet")
	var c runConfig
	fs := newFlagSet()
	runFlags(fs, &c)
	fs.Parse(nil)
	if c.FleetSecretFile != "/run/secrets/fleet" {
		t.Errorf("FRAUDSTREAM_FLEET_SECRET_FILE gave --fleet-secret-file %q", c.FleetSecretFile)
	}
	// An empty file stops the scorer before it connects to anything.
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run", "--fleet-secret-file", write("empty2", "\n"), "--brokers", "127.0.0.1:1"}, strings.NewReader(""), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "is empty") {
		t.Errorf("scorer run with an empty secret file: exit %d, %s", code, errb.String())
	}
}

// TestServeFleetSecret: a scorer run with --fleet-secret-file publishes
// signed windows, counts a forged window planted in Redis in
// fraudstream_fleet_peers_rejected_total{reason="unsigned"} and never logs
// the secret; run without one, it warns that the windows are not
// authenticated.
func TestServeFleetSecret(t *testing.T) {
	broker, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	mr := miniredis.RunT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const secret = "fleet-secret-for-the-test-0123456789"
	path := filepath.Join(t.TempDir(), "fleet.secret")
	os.WriteFile(path, []byte(secret+"\n"), 0o600)
	addr := freeAddr(t)
	c := testConfig(broker, mr.Addr(), addr)
	c.CreateTopics, c.Partitions, c.FleetSecretFile = true, 1, path
	var log syncBuffer
	var wg sync.WaitGroup
	var serveErr error
	runCtx, stop := context.WithCancel(ctx)
	wg.Go(func() { serveErr = serve(runCtx, c, &log) })

	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	reg, _ := registry.New(registry.Config{Client: rc})
	blob := testBundle(t)
	if _, err := reg.Store(ctx, blob, registry.Info{Digest: model.Digest(blob)}, true); err != nil {
		t.Fatal(err)
	}
	// The worker's own window, once it has joined: signed.
	fleetPrefix := c.Prefix + "fleet:" + c.Group + ":"
	var own []byte
	for own == nil && ctx.Err() == nil {
		keys, _ := rc.Keys(ctx, fleetPrefix+"w:*").Result()
		if len(keys) > 0 {
			own, _ = rc.Get(ctx, keys[0]).Bytes()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(own) < 2 || own[0] != 2 {
		t.Fatalf("the worker's window does not start with the signed format: % x\n%s", own[:min(len(own), 8)], log.String())
	}
	// A forged window of the same model, unsigned.
	forged := append([]byte{1}, own[1:len(own)-32]...)
	rc.SAdd(ctx, fleetPrefix+"members", "forger")
	rc.Set(ctx, fleetPrefix+"w:forger", forged, 0)
	unsigned := regexp.MustCompile(`fraudstream_fleet_peers_rejected_total\{reason="unsigned"\} ([1-9][0-9]*)`)
	var metrics string
	for ctx.Err() == nil {
		metrics = get(addr, "/metrics")
		if unsigned.MatchString(metrics) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range []string{"bad_mac", "malformed", "over_bound"} {
		if !strings.Contains(metrics, fmt.Sprintf(`fraudstream_fleet_peers_rejected_total{reason=%q} 0`, r)) {
			t.Errorf("no rejected series for %s at 0:\n%s", r, metrics)
		}
	}
	stop()
	wg.Wait()
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	if !unsigned.MatchString(metrics) {
		t.Fatalf("the forged window was not counted:\n%s", metrics)
	}
	if strings.Contains(log.String(), secret) || strings.Contains(log.String(), "not authenticated") {
		t.Errorf("the log shows the secret or warns without cause:\n%s", log.String())
	}

	// Without a secret: the warning, before anything else happens.
	c.FleetSecretFile, c.Brokers = "", "127.0.0.1:1"
	var log2 syncBuffer
	short, cancel2 := context.WithCancel(ctx)
	cancel2()
	serve(short, c, &log2)
	if !strings.Contains(log2.String(), "not authenticated") || !strings.Contains(log2.String(), "--fleet-secret-file") {
		t.Errorf("no warning without a secret:\n%s", log2.String())
	}
}

func get(addr, path string) string {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
