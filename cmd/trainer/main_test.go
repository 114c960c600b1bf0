package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

func TestRunUsageAndErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: trainer"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"fit"}, 1, "no input given"},
		{[]string{"fit", "--input", "/nonexistent.csv"}, 1, "no such file"},
		{[]string{"fit", "--bogus-flag"}, 2, ""},
		{[]string{"schema", "--input", "-"}, 1, "empty"},
		{[]string{"fit", "-h"}, 0, "-swap-noise"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run(ctx, tc.args, strings.NewReader(""), &out, &errb)
		if tc.code == 2 && tc.want == "" {
			if code == 0 {
				t.Errorf("%v: exit 0 for a bad flag", tc.args)
			}
			continue
		}
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d; output %q", tc.args, code, tc.code, out.String()+errb.String())
		}
	}
}

func TestSchemaThenFitWithEditedSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("id,amount,shop,label\n")
	for i := range 400 {
		csv.WriteString(strings.Join([]string{itoa(i), itoa(10 + i%37), []string{"a", "b", "c"}[i%3], "0"}, ",") + "\n")
	}
	in := filepath.Join(dir, "in.csv")
	os.WriteFile(in, []byte(csv.String()), 0o644)
	var schema, errb bytes.Buffer
	if code := run(ctx, []string{"schema", "--input", in}, nil, &schema, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	// The user turns the shop into an ignored field.
	edited := strings.Replace(schema.String(), `"name": "shop",
      "kind": "categorical"`, `"name": "shop",
      "kind": "ignored"`, 1)
	if edited == schema.String() {
		t.Fatalf("schema did not list shop as categorical:\n%s", schema.String())
	}
	sp := filepath.Join(dir, "schema.json")
	os.WriteFile(sp, []byte(edited), 0o644)
	out := filepath.Join(dir, "m.bin")
	if code := run(ctx, []string{"fit", "--input", in, "--out", out, "--schema", sp, "--epochs", "2", "--seed", "3"}, nil, &bytes.Buffer{}, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	if !strings.Contains(errb.String(), "shop") || !strings.Contains(errb.String(), "(not learned") {
		t.Fatalf("fit log does not show the edited schema:\n%s", errb.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestModelsHelp(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		args          []string
		code          int
		want, notWant []string
	}{
		{[]string{"models", "-h"}, 0, []string{"rollback", "unpin", "schema", "pinned"}, nil},
		{[]string{"models", "list", "-h"}, 0, []string{"-redis", "-registry-prefix"}, []string{"-model", "-to", "-keep"}},
		{[]string{"models", "rollback", "-h"}, 0, []string{"-to", "-no-pin"}, []string{"-model"}},
		{[]string{"models", "publish", "-h"}, 0, []string{"-model", "-keep-candidates", "-no-pin"}, []string{"-to"}},
		{[]string{"models"}, 2, []string{"usage: trainer models"}, nil},
		{[]string{"models", "bogus"}, 2, []string{`unknown command "bogus"`}, nil},
		{[]string{"models", "list", "--model", "x"}, 2, []string{"not defined: -model"}, nil},
		{[]string{"run", "-h"}, 0, []string{"-every", "-allow-schema-change", "-max-alert-shift", "-keep-candidates"}, []string{"-model", "-to"}},
		{[]string{"-h"}, 0, []string{"usage: trainer", "models"}, nil},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run(ctx, tc.args, strings.NewReader(""), &out, &errb)
		all := out.String() + errb.String()
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d; output %q", tc.args, code, tc.code, all)
		}
		for _, w := range tc.want {
			if !strings.Contains(all, w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, all)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(all, w+" ") || strings.Contains(all, w+"\n") {
				t.Errorf("%v: output shows another command's flag %q:\n%s", tc.args, w, all)
			}
		}
	}
}

// TestModelsCommands: publish pins by default, list shows digests and the
// pin, pin/unpin/rollback say what they did, schema prints the pinned schema.
func TestModelsCommands(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("id,amount,shop\n")
	for i := range 400 {
		csv.WriteString(strings.Join([]string{itoa(i), itoa(10 + i%37), []string{"a", "b", "c"}[i%3]}, ",") + "\n")
	}
	in := filepath.Join(dir, "in.csv")
	os.WriteFile(in, []byte(csv.String()), 0o644)
	m1, m2 := filepath.Join(dir, "m1.bin"), filepath.Join(dir, "m2.bin")
	for i, m := range []string{m1, m2} {
		var errb bytes.Buffer
		if code := run(ctx, []string{"fit", "--input", in, "--out", m, "--epochs", "1", "--seed", itoa(i + 1)}, nil, &bytes.Buffer{}, &errb); code != 0 {
			t.Fatal(errb.String())
		}
	}
	reg := []string{"--redis", mr.Addr()}
	cmd := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(ctx, append(append([]string{"models"}, args...), reg...), nil, &out, &errb); code != want {
			t.Fatalf("%v: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	if out := cmd(0, "publish", "--model", m1); !strings.Contains(out, "version 1") || !strings.Contains(out, "pinned") {
		t.Fatalf("publish: %s", out)
	}
	if out := cmd(0, "publish", "--model", m2, "--no-pin"); !strings.Contains(out, "version 2") || !strings.Contains(out, "may promote") {
		t.Fatalf("publish --no-pin: %s", out)
	}
	b1, _ := model.ReadFile(m1)
	blob1, _ := b1.MarshalBinary()
	if out := cmd(0, "pin", "--to", "1"); !strings.Contains(out, model.Digest(blob1)[:12]) || !strings.Contains(out, "pinned") {
		t.Fatalf("pin: %s", out)
	}
	list := cmd(0, "list")
	var row1 []string
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "1" {
			row1 = f
		}
	}
	if len(row1) < 4 || row1[1] != "*" || row1[2] != model.Digest(blob1)[:12] || row1[3] != "pinned" {
		t.Fatalf("list:\n%s", list)
	}
	if out := cmd(0, "unpin"); !strings.Contains(out, "version 1 is no longer pinned") {
		t.Fatalf("unpin: %s", out)
	}
	if out := cmd(0, "rollback", "--to", "2", "--no-pin"); !strings.Contains(out, "not pinned") {
		t.Fatalf("rollback --no-pin: %s", out)
	}
	if out := cmd(1, "rollback", "--to", "9"); !strings.Contains(out, "no such version") {
		t.Fatalf("rollback to a missing version: %s", out)
	}
	if out := cmd(1, "schema"); !strings.Contains(out, "no schema is pinned") {
		t.Fatalf("schema before a pin: %s", out)
	}
	r, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	if err := r.PinSchema(ctx, &b1.Encoder.Schema); err != nil {
		t.Fatal(err)
	}
	out := cmd(0, "schema")
	s, err := features.ReadSchema(strings.NewReader(out))
	if err != nil || s.Index("amount") < 0 {
		t.Fatalf("schema: %v\n%s", err, out)
	}
}

// TestRunReadyz: `trainer run`'s /readyz answers 200 while Redis and Kafka
// do, and 503 naming Redis once it is gone.
func TestRunReadyz(t *testing.T) {
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if err := stream.EnsureTopics(context.Background(), e.Config(), stream.Topic{Name: "transactions"}); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb syncBuffer
	go func() {
		done <- run(ctx, []string{"run", "--brokers", strings.Join(e.Addrs(), ","), "--redis", mr.Addr(), "--metrics-addr", addr, "--min-rows", "100000"}, nil, io.Discard, &errb)
	}()
	get := func() (int, string) {
		for range 100 {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no /readyz on %s: %s", addr, errb.String())
		return 0, ""
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("readyz with Redis and Kafka up: %d %s", code, body)
	}
	// The first round (skipped: too few rows) is logged with its retry
	// before Redis goes away, or a slow machine sees it fail instead.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(errb.String(), `"retry_in":"5s"`); {
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mr.Close()
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "redis") {
		t.Fatalf("readyz with Redis down: %d %s", code, body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
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

// TestRunRefusesASchemaChange: a --schema whose kinds differ from the
// pinned schema stops `trainer run` at once, naming each change.
func TestRunRefusesASchemaChange(t *testing.T) {
	mr := miniredis.RunT(t)
	reg, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	pinned := &features.Schema{Fields: []features.Field{{Name: "tx_id", Kind: features.ID}, {Name: "amount", Kind: features.Numeric}, {Name: "channel", Kind: features.Categorical}}}
	if err := reg.PinSchema(context.Background(), pinned); err != nil {
		t.Fatal(err)
	}
	edited := *pinned
	edited.Fields = []features.Field{{Name: "tx_id", Kind: features.ID}, {Name: "amount", Kind: features.Numeric}, {Name: "channel", Kind: features.ID}}
	f := filepath.Join(t.TempDir(), "schema.json")
	var buf bytes.Buffer
	edited.WriteJSON(&buf)
	os.WriteFile(f, buf.Bytes(), 0o644)
	var errb bytes.Buffer
	code := run(context.Background(), []string{"run", "--brokers", "127.0.0.1:1", "--redis", mr.Addr(), "--schema", f, "--metrics-addr", ""}, nil, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "channel: categorical -> id") || !strings.Contains(errb.String(), "--allow-schema-change") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
