package model

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testKey is a fixed key per seed byte, so that corpora and tests agree.
func testKey(seed byte) *SigningKey {
	return NewSigningKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

func TestSignedRoundTrip(t *testing.T) {
	b := fitTest(t)
	plain, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	k := testKey(1)
	signed, err := b.MarshalSigned(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) != len(plain)+sigSize {
		t.Fatalf("signed bundle is %d bytes, unsigned %d: the signature block is %d", len(signed), len(plain), sigSize)
	}
	// The checksum still ends the bundle and covers the signature: the
	// registry's digest check works unchanged, and names another model.
	if !bytes.Equal(sumOf(signed[:len(signed)-32]), signed[len(signed)-32:]) || Digest(signed) == Digest(plain) {
		t.Fatal("a signed bundle must end with its own SHA-256")
	}
	id, ok, err := Signer(signed)
	if err != nil || !ok || id != k.ID() {
		t.Fatalf("Signer: %v %v %v, want %s", id, ok, err, k.ID())
	}
	if _, ok, err := Signer(plain); ok || err != nil {
		t.Fatalf("Signer of an unsigned bundle: %v %v", ok, err)
	}
	got, err := UnmarshalVerified(signed, NewKeyring(k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	// Verified, the model is the same model: same bytes once re-encoded.
	again, _ := got.MarshalBinary()
	if !bytes.Equal(again, plain) {
		t.Fatal("the verified bundle differs from the one signed")
	}
	// Without keys a signed bundle loads as any other.
	if _, err := Unmarshal(signed); err != nil {
		t.Fatalf("Unmarshal of a signed bundle: %v", err)
	}
	// Signing is deterministic (ed25519), and signing again with another
	// key replaces the signature.
	if s2, _ := Sign(plain, k); !bytes.Equal(s2, signed) {
		t.Fatal("signing the same bundle twice gave other bytes")
	}
	k2 := testKey(2)
	re, err := Sign(signed, k2)
	if err != nil || len(re) != len(signed) {
		t.Fatalf("re-sign: %d bytes, %v", len(re), err)
	}
	if _, err := NewKeyring(k2.Public()).Verify(re); err != nil {
		t.Fatalf("re-signed bundle: %v", err)
	}
	if _, err := NewKeyring(k.Public()).Verify(re); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("the old key still verifies a re-signed bundle: %v", err)
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := b.WriteSignedFile(path, k); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFileVerified(path, NewKeyring(k.Public())); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyRefuses: whatever is changed after signing, by whoever can
// recompute the checksum, is refused with a reason.
func TestVerifyRefuses(t *testing.T) {
	data := tinyBundle(t)
	k, other := testKey(1), testKey(2)
	keys := NewKeyring(k.Public())
	signed, err := Sign(data, k)
	if err != nil {
		t.Fatal(err)
	}
	hlen := int(binary.LittleEndian.Uint32(signed[12:]))
	content := len(signed) - 32 - sigSize
	// alter changes one byte of the signed bundle and fixes its checksum,
	// as anyone with write access to the registry can.
	alter := func(i int) []byte {
		b := bytes.Clone(signed[:len(signed)-32])
		b[i] ^= 0x01
		return resum(b)
	}
	byOther, _ := Sign(data, other)
	otherID := byOther[content : content+keyIDSize]
	withOtherID := bytes.Clone(signed[:len(signed)-32]) // a trusted key's signature under another id
	copy(withOtherID[content:], otherID)
	stripped := bytes.Clone(signed[:content]) // signature dropped, flag cleared
	stripped[10] = 0
	cases := []struct {
		name   string
		blob   []byte
		want   error
		reason string
	}{
		{"unsigned", data, ErrUnsigned, ReasonUnsigned},
		{"signature stripped", resum(stripped), ErrUnsigned, ReasonUnsigned},
		{"signed by another key", byOther, ErrUnknownKey, ReasonUnknownKey},
		{"another key id", resum(withOtherID), ErrUnknownKey, ReasonUnknownKey},
		{"header (schema, encoder, metadata)", alter(fixed + hlen/2), ErrBadSignature, ReasonBadSignature},
		{"calibration and metadata end the header", alter(fixed + hlen - 2), ErrBadSignature, ReasonBadSignature},
		{"weights", alter(content - 1), ErrBadSignature, ReasonBadSignature},
		{"format bytes", alter(9), ErrFormat, ReasonCorrupt},
		{"signature bytes", alter(content + keyIDSize + 3), ErrBadSignature, ReasonBadSignature},
		{"checksum", append(bytes.Clone(signed[:len(signed)-1]), signed[len(signed)-1]^1), ErrChecksum, ReasonCorrupt},
		{"not a bundle", []byte("hello"), ErrNotBundle, ReasonCorrupt},
	}
	for _, tc := range cases {
		_, err := keys.Verify(tc.blob)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			continue
		}
		if r := RejectReason(err); r != tc.reason {
			t.Errorf("%s: reason %q, want %q", tc.name, r, tc.reason)
		}
		if tc.reason != ReasonCorrupt && !strings.Contains(err.Error(), "signature") {
			t.Errorf("%s: the error does not say signature: %v", tc.name, err)
		}
		if _, err := UnmarshalVerified(tc.blob, keys); !errors.Is(err, tc.want) {
			t.Errorf("%s: UnmarshalVerified: %v", tc.name, err)
		}
	}
	// The flag bit alone cannot hide a signature: clearing it (checksum
	// fixed) leaves 72 bytes the decoder refuses.
	cleared := bytes.Clone(signed[:len(signed)-32])
	cleared[10] = 0
	if _, err := Unmarshal(resum(cleared)); err == nil {
		t.Error("a bundle with its signed flag cleared decoded")
	}
	// Unknown flags are refused, not ignored.
	flags := bytes.Clone(data[:len(data)-32])
	flags[10] = 2
	if _, err := Unmarshal(resum(flags)); !errors.Is(err, ErrFormat) {
		t.Errorf("unknown flags: %v", err)
	}
	// The unknown-key error names the key that signed and the ones trusted.
	_, err = keys.Verify(byOther)
	if !strings.Contains(err.Error(), other.ID().String()) || !strings.Contains(err.Error(), k.ID().String()) {
		t.Errorf("unknown key error does not name the keys: %v", err)
	}
}

// TestKeyRotation: a verifier trusting two keys accepts bundles signed by
// either, and still refuses a third.
func TestKeyRotation(t *testing.T) {
	data := tinyBundle(t)
	oldK, newK, third := testKey(1), testKey(2), testKey(3)
	keys := NewKeyring(oldK.Public(), newK.Public(), oldK.Public())
	if len(keys.IDs()) != 2 {
		t.Fatalf("%d keys, want 2 (duplicates merged)", len(keys.IDs()))
	}
	for _, k := range []*SigningKey{oldK, newK} {
		s, _ := Sign(data, k)
		if id, err := keys.Verify(s); err != nil || id != k.ID() {
			t.Errorf("key %s: %v %v", k.ID(), id, err)
		}
	}
	s, _ := Sign(data, third)
	if _, err := keys.Verify(s); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("third key: %v", err)
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKeyFiles: PEM PKCS#8 and SPKI load; anything else is refused with an
// error that says what is wrong and how to make the right file.
func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k := testKey(7)
	priv, _ := x509.MarshalPKCS8PrivateKey(k.key)
	pub, _ := x509.MarshalPKIXPublicKey(k.Public())
	privPath := writePEM(t, dir, "signing.pem", "PRIVATE KEY", priv)
	pubPath := writePEM(t, dir, "verify.pem", "PUBLIC KEY", pub)
	sk, err := LoadSigningKey(privPath)
	if err != nil || sk.ID() != k.ID() {
		t.Fatalf("signing key: %v", err)
	}
	ring, err := LoadKeyring([]string{pubPath})
	if err != nil || len(ring.IDs()) != 1 || ring.IDs()[0] != k.ID() {
		t.Fatalf("verify key: %v", err)
	}
	if r, err := LoadKeyring(nil); r != nil || err != nil {
		t.Fatalf("no paths: %v %v", r, err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPriv, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPrivPath := writePEM(t, dir, "ec.pem", "PRIVATE KEY", ecPriv)
	ecPubPath := writePEM(t, dir, "ec.pub.pem", "PUBLIC KEY", ecPub)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("this is not a key\n"), 0o600)
	two := filepath.Join(dir, "two.pem")
	a, _ := os.ReadFile(pubPath)
	os.WriteFile(two, append(bytes.Clone(a), a...), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, maxKeyFile+1), 0o600)
	for _, tc := range []struct{ path, want string }{
		{garbage, "not a PEM file"},
		{pubPath, "public key; signing needs the private key"},
		{ecPrivPath, "ECDSA, not ed25519"},
		{writePEM(t, dir, "enc.pem", "ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
		{writePEM(t, dir, "rsa.pem", "RSA PRIVATE KEY", []byte{1}), "not a PKCS#8 ed25519 private key"},
		{big, "too large"},
		{filepath.Join(dir, "missing.pem"), "no such file"},
	} {
		if _, err := LoadSigningKey(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "signing key") {
			t.Errorf("signing key %s: %v, want %q", filepath.Base(tc.path), err, tc.want)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{garbage, "not a PEM file"},
		{privPath, "private key; scorers need only the public key"},
		{ecPubPath, "ECDSA, not ed25519"},
		{two, "more than one PEM block"},
		{writePEM(t, dir, "cert.pem", "CERTIFICATE", []byte{1}), "not an SPKI ed25519 public key"},
		{writePEM(t, dir, "bad.pem", "PUBLIC KEY", []byte{1, 2, 3}), "not an ed25519 public key"},
	} {
		if _, err := LoadKeyring([]string{pubPath, tc.path}); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("verify key %s: %v, want %q", filepath.Base(tc.path), err, tc.want)
		}
	}
}

// TestOpenSSLKeys: keys written by openssl, as operators make them, load;
// and openssl verifies the signature this package makes (plain ed25519
// over the bundle's content).
func TestOpenSSLKeys(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed; the PEM formats are covered by TestKeyFiles")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	priv, pub := filepath.Join(dir, "signing.pem"), filepath.Join(dir, "verify.pem")
	run("genpkey", "-algorithm", "ed25519", "-out", priv)
	run("pkey", "-in", priv, "-pubout", "-out", pub)
	sk, err := LoadSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeyring([]string{pub})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Sign(tinyBundle(t), sk)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := keys.Verify(signed); err != nil || id != sk.ID() {
		t.Fatalf("openssl keys: %v %v", id, err)
	}
	content, sig, _ := frame(signed)
	msg, sigFile := filepath.Join(dir, "content"), filepath.Join(dir, "sig")
	os.WriteFile(msg, content, 0o600)
	os.WriteFile(sigFile, sig[keyIDSize:], 0o600)
	run("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg, "-sigfile", sigFile)

	// Keys of other algorithms are named, not half-parsed.
	ec, ecPub := filepath.Join(dir, "ec.pem"), filepath.Join(dir, "ec.pub.pem")
	run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec)
	run("pkey", "-in", ec, "-pubout", "-out", ecPub)
	if _, err := LoadSigningKey(ec); err == nil || !strings.Contains(err.Error(), "not ed25519") {
		t.Errorf("EC signing key: %v", err)
	}
	if _, err := LoadKeyring([]string{ecPub}); err == nil || !strings.Contains(err.Error(), "not ed25519") {
		t.Errorf("EC verify key: %v", err)
	}
	ed448 := filepath.Join(dir, "ed448.pem")
	run("genpkey", "-algorithm", "ed448", "-out", ed448)
	if _, err := LoadSigningKey(ed448); err == nil || !strings.Contains(err.Error(), "not an ed25519 private key") {
		t.Errorf("ed448 signing key: %v", err)
	}
}

// FuzzVerify: any input, verified against a fixed key, gives an error or a
// bundle that verifies; never a panic.
func FuzzVerify(f *testing.F) {
	data := tinyBundle(f)
	k := testKey(1)
	signed, err := Sign(data, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(data)
	keys := NewKeyring(k.Public(), testKey(2).Public())
	f.Fuzz(func(t *testing.T, blob []byte) {
		id, err := keys.Verify(blob)
		if err != nil {
			return
		}
		if id != k.ID() && id != testKey(2).ID() {
			t.Fatalf("verified under key %s, which is not trusted", id)
		}
		if b, err := UnmarshalVerified(blob, keys); err == nil {
			s := b.NewScorer(1)
			s.SetRow(0, []string{"1", "3.5", "m1", "2024-03-01 10:00:00", "FR"})
			s.Score(1)
		}
	})
}

// BenchmarkVerify: what signatures add to a model load, on a bundle of the
// default architecture (benchBundle): the signature check alone, and a
// whole load with and without it.
func BenchmarkVerify(b *testing.B) {
	bd, _, _ := benchBundle(b)
	k := testKey(1)
	signed, err := bd.MarshalSigned(k)
	if err != nil {
		b.Fatal(err)
	}
	keys := NewKeyring(testKey(2).Public(), k.Public())
	b.Run("signature", func(b *testing.B) {
		b.SetBytes(int64(len(signed)))
		for b.Loop() {
			if _, err := keys.Verify(signed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load_unverified", func(b *testing.B) {
		b.SetBytes(int64(len(signed)))
		for b.Loop() {
			if _, err := Unmarshal(signed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load_verified", func(b *testing.B) {
		b.SetBytes(int64(len(signed)))
		for b.Loop() {
			if _, err := UnmarshalVerified(signed, keys); err != nil {
				b.Fatal(err)
			}
		}
	})
}
