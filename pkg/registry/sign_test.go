package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/model"
)

// framed is the smallest blob with a bundle's framing (magic, format 1, no
// flags, an empty header) and its checksum; model.Sign signs it.
func framed(note string) []byte {
	b := append([]byte("FSDAEMDL"), 1, 0, 0, 0, 0, 0, 0, 0)
	return bundle(string(append(b, note...)))
}

func TestSignatureRequirement(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testSignatureRequirement(t, b) })
	}
}

// testSignatureRequirement: the first signed bundle stored makes the
// registry refuse unsigned ones, for Store and Rollback alike, until an
// operator lifts the requirement; RequireSignatures sets it up front.
func testSignatureRequirement(t *testing.T, b backend) {
	ctx := context.Background()
	r := newRegistry(t, b, 5)
	key := model.NewSigningKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize)))
	if req, _, err := r.SignaturesRequired(ctx); req || err != nil {
		t.Fatalf("a new registry requires signatures: %v", err)
	}
	if v, err := r.Store(ctx, framed("unsigned"), Info{}, true); err != nil || v != 1 {
		t.Fatalf("unsigned store without the requirement: %d %v", v, err)
	}
	signed, err := model.Sign(framed("signed"), key)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Store(ctx, signed, Info{}, true); err != nil || v != 2 {
		t.Fatalf("signed store: %d %v", v, err)
	}
	req, why, err := r.SignaturesRequired(ctx)
	if !req || err != nil || !bytes.Contains([]byte(why), []byte(key.ID().String())) {
		t.Fatalf("after a signed store: required %v (%q), %v", req, why, err)
	}
	list, _ := r.List(ctx)
	if list[0].Signer != "" || list[1].Signer != key.ID().String() {
		t.Fatalf("signers %q %q", list[0].Signer, list[1].Signer)
	}
	if _, err := r.Store(ctx, framed("unsigned again"), Info{}, false); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned store with the requirement: %v", err)
	}
	if err := r.Rollback(ctx, 1, false); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("rollback to an unsigned version: %v", err)
	}
	if p, _ := r.Pointer(ctx); p.Version != 2 {
		t.Fatalf("current moved to %d", p.Version)
	}
	if err := r.RequireSignatures(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.Rollback(ctx, 1, false); err != nil {
		t.Fatalf("rollback once the requirement is lifted: %v", err)
	}
	if err := r.RequireSignatures(ctx, true, "operator"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Store(ctx, framed("x"), Info{}, true); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned store after RequireSignatures: %v", err)
	}
	if _, why, _ := r.SignaturesRequired(ctx); why != "operator" {
		t.Fatalf("why %q", why)
	}
}
