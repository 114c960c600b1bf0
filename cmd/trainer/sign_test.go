package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// keyFiles writes a new ed25519 key pair as openssl writes them (PKCS#8
// and SPKI PEM) and returns the paths and the key.
func keyFiles(t *testing.T, dir, name string) (priv, pub string, k *model.SigningKey) {
	t.Helper()
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(sk)
	spki, _ := x509.MarshalPKIXPublicKey(sk.Public())
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644)
	return priv, pub, model.NewSigningKey(sk)
}

// TestSignedFitAndPublish: trainer fit --signing-key writes a bundle that
// verifies with the public key; a wrong key file fails before training;
// publish keeps a file's signature or signs it with --signing-key; once a
// signed model is in the registry, unsigned ones are refused by publish
// and by trainer run, until an operator lifts the requirement.
func TestSignedFitAndPublish(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv, pub, key := keyFiles(t, dir, "signing")
	var csv strings.Builder
	csv.WriteString("id,amount,shop\n")
	for i := range 400 {
		csv.WriteString(strings.Join([]string{itoa(i), itoa(10 + i%37), []string{"a", "b", "c"}[i%3]}, ",") + "\n")
	}
	in := filepath.Join(dir, "in.csv")
	os.WriteFile(in, []byte(csv.String()), 0o644)
	signed, plain := filepath.Join(dir, "signed.bin"), filepath.Join(dir, "plain.bin")
	var errb bytes.Buffer
	if code := run(ctx, []string{"fit", "--input", in, "--out", signed, "--epochs", "1", "--signing-key", priv}, nil, io.Discard, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	if !strings.Contains(errb.String(), "signed by key "+key.ID().String()) {
		t.Fatalf("fit does not say it signed: %s", errb.String())
	}
	keys, err := model.LoadKeyring([]string{pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := model.ReadFileVerified(signed, keys); err != nil {
		t.Fatalf("trainer fit --signing-key wrote a bundle that does not verify: %v", err)
	}
	errb.Reset()
	if code := run(ctx, []string{"fit", "--input", in, "--out", plain, "--epochs", "1", "--signing-key", pub}, nil, io.Discard, &errb); code != 1 ||
		!strings.Contains(errb.String(), "public key; signing needs the private key") || strings.Contains(errb.String(), "epoch") {
		t.Fatalf("fit with a public key as --signing-key: exit %d: %s", code, errb.String())
	}
	if code := run(ctx, []string{"fit", "--input", in, "--out", plain, "--epochs", "1", "--seed", "2"}, nil, io.Discard, &errb); code != 0 {
		t.Fatal(errb.String())
	}

	mr := miniredis.RunT(t)
	reg := []string{"--redis", mr.Addr()}
	cmd := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(ctx, append(append([]string{"models"}, args...), reg...), nil, &out, &errb); code != want {
			t.Fatalf("%v: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	r, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	current := func() []byte {
		_, blob, err := r.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return blob
	}
	// The file's signature is kept: the registry holds its very bytes.
	if out := cmd(0, "publish", "--model", signed); !strings.Contains(out, "signed by key "+key.ID().String()) {
		t.Fatalf("publish: %s", out)
	}
	if want, _ := os.ReadFile(signed); !bytes.Equal(current(), want) {
		t.Fatal("publish did not store the signed file as it is")
	}
	if out := cmd(1, "publish", "--model", plain); !strings.Contains(out, "not signed and the registry requires signed models") || !strings.Contains(out, "--signing-key") {
		t.Fatalf("unsigned publish after a signed one: %s", out)
	}
	if out := cmd(0, "publish", "--model", plain, "--signing-key", priv, "--no-pin"); !strings.Contains(out, "version 2 (signed by key "+key.ID().String()) {
		t.Fatalf("publish --signing-key: %s", out)
	}
	if _, err := keys.Verify(current()); err != nil {
		t.Fatalf("published with --signing-key: %v", err)
	}
	if out := cmd(0, "list"); strings.Count(out, key.ID().String()) != 2 {
		t.Fatalf("list does not show the signer:\n%s", out)
	}
	var runErr bytes.Buffer
	if code := run(ctx, []string{"run", "--brokers", "127.0.0.1:1", "--redis", mr.Addr(), "--metrics-addr", ""}, nil, io.Discard, &runErr); code != 1 ||
		!strings.Contains(runErr.String(), "requires signed models") || !strings.Contains(runErr.String(), "--signing-key") {
		t.Fatalf("trainer run without a key on a registry that requires signatures: exit %d: %s", code, runErr.String())
	}
	cmd(0, "require-signatures", "--off")
	if out := cmd(0, "publish", "--model", plain, "--no-pin"); !strings.Contains(out, "version 3 (unsigned)") {
		t.Fatalf("unsigned publish once accepted again: %s", out)
	}
	cmd(0, "require-signatures")
	if out := cmd(1, "rollback", "--to", "3"); !strings.Contains(out, "requires signed models") {
		t.Fatalf("rollback to an unsigned version: %s", out)
	}
}

// TestRunSigns: trainer run --signing-key stores signed models.
func TestRunSigns(t *testing.T) {
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx := context.Background()
	if err := stream.EnsureTopics(ctx, e.Config(), stream.Topic{Name: "transactions"}); err != nil {
		t.Fatal(err)
	}
	prod, err := stream.NewProducer(e.Config(), stream.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var msgs []kafka.Message
	for i := range 600 {
		v, _ := json.Marshal(map[string]any{"tx_id": fmt.Sprint(i), "amount": 10 + i%37, "shop": []string{"a", "b", "c"}[i%3]})
		msgs = append(msgs, kafka.Message{Topic: "transactions", Value: v})
	}
	if err := prod.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	priv, pub, key := keyFiles(t, t.TempDir(), "signing")
	var errb bytes.Buffer
	if code := run(ctx, []string{"run", "--once", "--brokers", strings.Join(e.Addrs(), ","), "--redis", mr.Addr(), "--metrics-addr", "",
		"--min-rows", "100", "--epochs", "1", "--seed", "1", "--signing-key", priv}, nil, io.Discard, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// The candidate is stored, promoted or not (the gate's verdict on so
	// few rows is not the point).
	r, _ := registry.New(registry.Config{Client: redis.NewClient(&redis.Options{Addr: mr.Addr()})})
	blob, err := r.Get(ctx, 1)
	if err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	keys, _ := model.LoadKeyring([]string{pub})
	if id, err := keys.Verify(blob); err != nil || id != key.ID() {
		t.Fatalf("trainer run --signing-key stored a model that does not verify: %v", err)
	}
}
