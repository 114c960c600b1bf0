package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	randv2 "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/offline"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// keyPair writes a new ed25519 key pair as openssl writes them (PKCS#8 and
// SPKI PEM).
func keyPair(t *testing.T, dir, name string) (priv, pub string, k *model.SigningKey) {
	t.Helper()
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(sk)
	spki, _ := x509.MarshalPKIXPublicKey(sk.Public())
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644)
	return priv, pub, model.NewSigningKey(sk)
}

// resummed ends body with its SHA-256, as anyone altering a bundle can.
func resummed(body []byte) []byte {
	s := sha256.Sum256(body)
	return append(bytes.Clone(body), s[:]...)
}

// TestOfflineVerifyKey: a model fitted with a signing key (trainer fit
// --signing-key runs offline.FitFile) scores with --verify-key; an unsigned
// model, one signed by another key or one altered after signing is refused
// by score, impute and eval with an error that says why; two keys
// (repeated or comma-separated) accept either; without --verify-key
// nothing changes.
func TestOfflineVerifyKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv, pub, key := keyPair(t, dir, "trainer")
	_, otherPub, _ := keyPair(t, dir, "other")
	var csv strings.Builder
	csv.WriteString("id,amount,shop,label\n")
	for i := range 400 {
		csv.WriteString(fmt.Sprintf("%d,%d,%s,%d\n", i, 10+i%37, []string{"a", "b", "c"}[i%3], i%2))
	}
	in := filepath.Join(dir, "in.csv")
	os.WriteFile(in, []byte(csv.String()), 0o644)
	signed, plain := filepath.Join(dir, "signed.bin"), filepath.Join(dir, "plain.bin")
	fit := offline.FitConfig{Input: in, Out: signed, Ignore: "label", AE: ae.Config{Epochs: 1}, SigningKey: priv}
	if _, err := offline.FitFile(ctx, fit, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	fit.Out, fit.SigningKey = plain, ""
	if _, err := offline.FitFile(ctx, fit, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(signed)
	tampered := filepath.Join(dir, "tampered.bin")
	body := bytes.Clone(data[:len(data)-32])
	body[len(body)/2] ^= 0x04 // one byte of the header, checksum fixed
	os.WriteFile(tampered, resummed(body), 0o644)
	if _, err := model.ReadFile(tampered); err != nil {
		t.Fatalf("the tampered model must still decode, or the test proves nothing: %v", err)
	}
	if id, _, _ := model.Signer(data); id != key.ID() {
		t.Fatal("fit did not sign with the key")
	}
	// score runs the scorer and returns its standard output and error.
	score := func(want int, args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(ctx, args, nil, &out, &errb); code != want {
			t.Fatalf("%v: exit %d, want %d: %s", args, code, want, errb.String())
		}
		return out.String(), errb.String()
	}
	if out, _ := score(0, "score", "--model", signed, "--input", in, "--verify-key", pub); strings.Count(out, "\n") != 401 {
		t.Fatalf("score --verify-key: %d lines", strings.Count(out, "\n"))
	}
	score(0, "score", "--model", signed, "--input", in, "--verify-key", otherPub+","+pub)
	score(0, "score", "--model", signed, "--input", in, "--verify-key", otherPub, "--verify-key", pub)
	score(0, "score", "--model", plain, "--input", in) // no keys: unchanged
	score(0, "score", "--model", tampered, "--input", in)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"score", "--model", signed, "--verify-key", otherPub}, "signed by an unknown key"},
		{[]string{"score", "--model", plain, "--verify-key", pub}, "no signature (unsigned)"},
		{[]string{"score", "--model", tampered, "--verify-key", pub}, "signature does not match the content"},
		{[]string{"impute", "--model", plain, "--verify-key", pub}, "no signature (unsigned)"},
		{[]string{"eval", "--model", signed, "--label", "label", "--plot", "", "--verify-key", otherPub}, "signed by an unknown key"},
		{[]string{"eval", "--model", tampered, "--label", "label", "--plot", "", "--verify-key", pub}, "signature does not match the content"},
		{[]string{"score", "--model", signed, "--verify-key", priv}, "this is a private key"},
	} {
		_, out := score(1, append(tc.args, "--input", in)...)
		if !strings.Contains(out, tc.want) || tc.args[len(tc.args)-1] != priv && !strings.Contains(out, "signature") {
			t.Errorf("%v: %s", tc.args, out)
		}
	}
	score(0, "eval", "--model", signed, "--input", in, "--label", "label", "--plot", "", "--verify-key", pub)
	score(0, "impute", "--model", signed, "--input", in, "--verify-key", pub)
}

// metricValue reads one sample from /metrics ("" when absent).
func metricValue(addr, sample string) string {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestServeRefusesForgedModels: a scorer run with --verify-key scores with
// a signed model; a forged model planted in Redis (valid checksum, unsigned
// or signed by another key), with `current` moved and a notice published,
// is refused and counted by reason, and the worker goes on deciding with
// the signed model.
func TestServeRefusesForgedModels(t *testing.T) {
	broker, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	mr := miniredis.RunT(t)
	dir := t.TempDir()
	_, pub, key := keyPair(t, dir, "trainer")
	_, _, stranger := keyPair(t, dir, "stranger")
	addr := freeAddr(t)
	c := testConfig(broker, mr.Addr(), addr)
	c.CreateTopics, c.Partitions, c.VerifyKeys = true, 2, []string{pub}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log syncBuffer
	var wg sync.WaitGroup
	var serveErr error
	runCtx, stop := context.WithCancel(ctx)
	wg.Go(func() { serveErr = serve(runCtx, c, &log) })
	defer func() { stop(); wg.Wait() }()

	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	reg, _ := registry.New(registry.Config{Client: rc})
	plain := testBundle(t)
	good, _ := model.Sign(plain, key)
	if _, err := reg.Store(ctx, good, registry.Info{}, true); err != nil {
		t.Fatal(err)
	}
	prod, _ := stream.NewProducer(broker.Config(), stream.ProducerOptions{})
	defer prod.Close()
	cons, err := stream.NewConsumer(broker.Config(), c.Scores, "check", stream.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	rng := randv2.New(randv2.NewPCG(3, 3))
	// decide sends n transactions and returns the model versions that
	// decided them.
	next := 0
	decide := func(n int) map[string]int {
		t.Helper()
		var msgs []kafka.Message
		want := map[string]bool{}
		for range n {
			id := fmt.Sprintf("t%d", next)
			next++
			want[id] = true
			v, _ := json.Marshal(testTx(rng, id))
			msgs = append(msgs, kafka.Message{Topic: c.Tx, Value: v})
		}
		if err := prod.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		versions := map[string]int{}
		for len(want) > 0 {
			b, err := cons.FetchBatch(ctx, nil, 100, 50*time.Millisecond)
			if err != nil {
				t.Fatalf("%d decisions missing: %v\n%s", len(want), err, log.String())
			}
			for _, m := range b {
				var d struct {
					ID           string
					ModelVersion string `json:"model_version"`
				}
				json.Unmarshal(m.Value, &d)
				if want[d.ID] {
					delete(want, d.ID)
					versions[d.ModelVersion]++
				}
			}
		}
		return versions
	}
	if v := decide(50); v["1"] != 50 {
		t.Fatalf("decisions by version before the forgery: %v", v)
	}

	// The attacker writes Redis directly, as the registry would.
	plant := func(v int, blob []byte) {
		ptr := registry.Pointer{Version: int64(v), Digest: model.Digest(blob)}.String()
		mr.Set(fmt.Sprintf("fraudstream:model:blob:%d", v), string(blob))
		mr.Set("fraudstream:model:current", ptr)
		mr.Publish(reg.Channel(), ptr)
	}
	byStranger, _ := model.Sign(plain, stranger)
	for i, tc := range []struct {
		blob   []byte
		reason string
	}{{plain, "unsigned"}, {byStranger, "unknown_key"}} {
		plant(2+i, tc.blob)
		sample := fmt.Sprintf(`fraudstream_model_rejected_total{reason="%s"}`, tc.reason)
		for deadline := time.Now().Add(20 * time.Second); metricValue(addr, sample) != "1"; {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q:\n%s", sample, metricValue(addr, sample), log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if v := decide(50); v["1"] != 50 {
		t.Fatalf("decisions by version after the forgeries: %v\n%s", v, log.String())
	}
	if s := metricValue(addr, "fraudstream_model_version"); s != "1" {
		t.Fatalf("fraudstream_model_version %s", s)
	}
	logs := log.String()
	if strings.Count(logs, "model bundle refused") != 2 || !strings.Contains(logs, "signed by an unknown key") || !strings.Contains(logs, "no signature (unsigned)") ||
		strings.Contains(logs, "model signatures are not checked") {
		t.Fatalf("log:\n%s", logs)
	}
	stop()
	wg.Wait()
	if serveErr != nil {
		t.Fatal(serveErr)
	}
}

// TestServeVerifyKeyStartup: without --verify-key the scorer warns that
// model signatures are not checked; a key file that is not a public key
// stops it at once, naming the file.
func TestServeVerifyKeyStartup(t *testing.T) {
	var c runConfig
	fs := newFlagSet()
	runFlags(fs, &c)
	fs.Parse([]string{"--brokers", "127.0.0.1:1", "--metrics-addr", ""})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve stops where it would wait for Kafka
	var log bytes.Buffer
	serve(ctx, c, &log)
	if !strings.Contains(log.String(), "model signatures are not checked") {
		t.Fatalf("no warning:\n%s", log.String())
	}
	priv, _, _ := keyPair(t, t.TempDir(), "k")
	if err := fs.Parse([]string{"--verify-key", priv}); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	err := serve(context.Background(), c, &log)
	if err == nil || !strings.Contains(err.Error(), priv) || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("serve with a private key as --verify-key: %v", err)
	}
}
