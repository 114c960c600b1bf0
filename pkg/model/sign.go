package model

// Signed bundles. A bundle's SHA-256 catches corruption but anyone who can
// write a bundle can recompute it; an ed25519 signature by the trainer's key
// tells a scorer that the model came from that trainer. Keys are PEM files
// as OpenSSL writes them, so that operators use the tools they know:
//
//	openssl genpkey -algorithm ed25519 -out signing.pem        # PKCS#8, for the trainer
//	openssl pkey -in signing.pem -pubout -out verify.pem       # SPKI, for the scorers
//
// The signature is plain ed25519 (RFC 8032) over the bundle's content, from
// the magic to the last tensor, so `openssl pkeyutl -verify -rawin` checks it
// too. The bundle layout is in bundle.go.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// sigSize is the signature block: key id and ed25519 signature.
const sigSize = keyIDSize + ed25519.SignatureSize

const keyIDSize = 8

// maxKeyFile bounds what a key file may hold; a PEM ed25519 key is ~120 bytes.
const maxKeyFile = 64 << 10

// Reasons a bundle is refused, small and fixed (metric labels).
const (
	ReasonUnsigned     = "unsigned"
	ReasonUnknownKey   = "unknown_key"
	ReasonBadSignature = "bad_signature"
	ReasonCorrupt      = "corrupt"
)

// Errors of signature verification; each says "signature" and why.
var (
	ErrUnsigned     = errors.New("model: the bundle has no signature (unsigned), and a signature by a trusted key is required")
	ErrUnknownKey   = errors.New("model: the bundle's signature is by a key that is not trusted (signed by an unknown key)")
	ErrBadSignature = errors.New("model: the bundle's signature does not match the content (altered after signing, or forged)")
)

// RejectReason names why err refused a bundle: one of the Reason constants
// (ReasonCorrupt for anything that is not a signature failure).
func RejectReason(err error) string {
	switch {
	case errors.Is(err, ErrUnsigned):
		return ReasonUnsigned
	case errors.Is(err, ErrUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, ErrBadSignature):
		return ReasonBadSignature
	}
	return ReasonCorrupt
}

// KeyID names a public key: the first 8 bytes of the SHA-256 of its 32 raw
// bytes. It travels in the signature block so that a verifier holding
// several keys (rotation) knows which one to use.
type KeyID [keyIDSize]byte

// String is the id in hex, as logs and listings show it.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// IDOf returns the id of a public key.
func IDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], sum[:])
	return id
}

// SigningKey signs bundles.
type SigningKey struct {
	key ed25519.PrivateKey
	id  KeyID
}

// NewSigningKey wraps an ed25519 private key.
func NewSigningKey(k ed25519.PrivateKey) *SigningKey {
	return &SigningKey{key: k, id: IDOf(k.Public().(ed25519.PublicKey))}
}

// ID is the id of the key's public half.
func (k *SigningKey) ID() KeyID { return k.id }

// Public is the key's public half.
func (k *SigningKey) Public() ed25519.PublicKey { return k.key.Public().(ed25519.PublicKey) }

// readKeyFile reads a key file, bounded.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s: %d bytes or more is too large for a key file (PEM, as openssl writes it)", path, maxKeyFile)
	}
	return data, nil
}

// onePEM decodes the single PEM block of a key file.
func onePEM(data []byte, what string) (*pem.Block, error) {
	blk, rest := pem.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("not a PEM file (expected the %s as openssl writes it, starting with -----BEGIN)", what)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("holds more than one PEM block; give one %s per file", what)
	}
	return blk, nil
}

const genHint = "make one with: openssl genpkey -algorithm ed25519 -out signing.pem"

// ParseSigningKey reads a PEM PKCS#8 ed25519 private key, as
// `openssl genpkey -algorithm ed25519` writes it.
func ParseSigningKey(data []byte) (*SigningKey, error) {
	blk, err := onePEM(data, "ed25519 private key")
	if err != nil {
		return nil, err
	}
	switch blk.Type {
	case "PRIVATE KEY":
	case "PUBLIC KEY":
		return nil, errors.New("this is a public key; signing needs the private key (" + genHint + ")")
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the private key is encrypted; give it unencrypted (openssl pkey -in KEY.pem -out plain.pem) and protect the file instead")
	default:
		return nil, fmt.Errorf("PEM block %q is not a PKCS#8 ed25519 private key (%s)", blk.Type, genHint)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not an ed25519 private key: %v (%s)", err, genHint)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %s, not ed25519 (%s)", keyType(k), genHint)
	}
	return NewSigningKey(ek), nil
}

// LoadSigningKey reads a signing key file (see ParseSigningKey).
func LoadSigningKey(path string) (*SigningKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := ParseSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

const pubHint = "write it with: openssl pkey -in signing.pem -pubout -out verify.pem"

// ParseVerifyKey reads a PEM SPKI ed25519 public key, as `openssl pkey
// -pubout` writes it.
func ParseVerifyKey(data []byte) (ed25519.PublicKey, error) {
	blk, err := onePEM(data, "ed25519 public key")
	if err != nil {
		return nil, err
	}
	switch blk.Type {
	case "PUBLIC KEY":
	case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
		return nil, errors.New("this is a private key; scorers need only the public key (" + pubHint + "), and the private key should stay with the trainer")
	default:
		return nil, fmt.Errorf("PEM block %q is not an SPKI ed25519 public key (%s)", blk.Type, pubHint)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not an ed25519 public key: %v (%s)", err, pubHint)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the key is %s, not ed25519 (%s)", keyType(k), pubHint)
	}
	return ek, nil
}

// keyType names a parsed key's Go type for an error message.
func keyType(k any) string {
	t := fmt.Sprintf("%T", k) // *rsa.PrivateKey, *ecdsa.PublicKey, *ecdh.PublicKey
	t = strings.TrimPrefix(t, "*")
	t, _, _ = strings.Cut(t, ".")
	return strings.ToUpper(t)
}

// Keyring holds the public keys a verifier trusts: one, or several while
// keys rotate.
type Keyring struct {
	keys map[KeyID]ed25519.PublicKey
	ids  []KeyID
}

// NewKeyring trusts keys.
func NewKeyring(keys ...ed25519.PublicKey) *Keyring {
	r := &Keyring{keys: map[KeyID]ed25519.PublicKey{}}
	for _, k := range keys {
		id := IDOf(k)
		if _, dup := r.keys[id]; !dup {
			r.keys[id] = k
			r.ids = append(r.ids, id)
		}
	}
	return r
}

// LoadKeyring reads public key files (see ParseVerifyKey). No paths give a
// nil Keyring: nothing is verified.
func LoadKeyring(paths []string) (*Keyring, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	var keys []ed25519.PublicKey
	for _, p := range paths {
		data, err := readKeyFile(p)
		if err != nil {
			return nil, fmt.Errorf("verify key: %w", err)
		}
		k, err := ParseVerifyKey(data)
		if err != nil {
			return nil, fmt.Errorf("verify key %s: %w", p, err)
		}
		keys = append(keys, k)
	}
	return NewKeyring(keys...), nil
}

// IDs lists the trusted keys' ids, in the order given.
func (r *Keyring) IDs() []KeyID { return r.ids }

func (r *Keyring) String() string {
	s := make([]string, len(r.ids))
	for i, id := range r.ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}

// Verify checks an encoded bundle's checksum and its signature, and returns
// the id of the key that signed it. Errors: those of Unmarshal for a blob
// that is not a sound bundle, ErrUnsigned, ErrUnknownKey, ErrBadSignature.
func (r *Keyring) Verify(data []byte) (KeyID, error) {
	content, sig, err := frame(data)
	if err != nil {
		return KeyID{}, err
	}
	return r.check(content, sig)
}

func (r *Keyring) check(content, sig []byte) (KeyID, error) {
	if sig == nil {
		return KeyID{}, fmt.Errorf("%w (trusted keys: %s)", ErrUnsigned, r)
	}
	var id KeyID
	copy(id[:], sig)
	pub, ok := r.keys[id]
	if !ok {
		return id, fmt.Errorf("%w: signed by key %s, trusted keys: %s", ErrUnknownKey, id, r)
	}
	if !ed25519.Verify(pub, content, sig[keyIDSize:]) {
		return id, fmt.Errorf("%w: signed as key %s", ErrBadSignature, id)
	}
	return id, nil
}

// UnmarshalVerified decodes a bundle after checking its signature against
// keys (see Keyring.Verify). A nil keys checks no signature: Unmarshal.
func UnmarshalVerified(data []byte, keys *Keyring) (*Bundle, error) {
	content, sig, err := frame(data)
	if err != nil {
		return nil, err
	}
	if keys != nil {
		if _, err := keys.check(content, sig); err != nil {
			return nil, err
		}
	}
	return decode(content)
}

// ReadFileVerified loads a bundle file, checking its signature against keys
// (nil: none, as ReadFile).
func ReadFileVerified(path string, keys *Keyring) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := UnmarshalVerified(data, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Signer returns the key id a bundle's signature names, and false for an
// unsigned bundle. It checks the checksum, not the signature.
func Signer(data []byte) (KeyID, bool, error) {
	_, sig, err := frame(data)
	if err != nil || sig == nil {
		return KeyID{}, false, err
	}
	var id KeyID
	copy(id[:], sig)
	return id, true, nil
}

// Sign returns an encoded bundle signed by k. A bundle already signed is
// signed again by k (its old signature dropped). The result is a new
// bundle, with its own digest.
func Sign(data []byte, k *SigningKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("model: no signing key")
	}
	content, _, err := frame(data)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(content)+sigSize+sha256.Size)
	out = append(out, content...)
	flags := binary.LittleEndian.Uint16(out[10:])
	binary.LittleEndian.PutUint16(out[10:], flags|flagSigned)
	sig := ed25519.Sign(k.key, out)
	out = append(out, k.id[:]...)
	out = append(out, sig...)
	sum := sha256.Sum256(out)
	return append(out, sum[:]...), nil
}

// MarshalSigned encodes the bundle signed by k.
func (b *Bundle) MarshalSigned(k *SigningKey) ([]byte, error) {
	data, err := b.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return Sign(data, k)
}

// WriteSignedFile writes the bundle signed by k, atomically; a nil k
// writes it unsigned (WriteFile).
func (b *Bundle) WriteSignedFile(path string, k *SigningKey) error {
	if k == nil {
		return b.WriteFile(path)
	}
	data, err := b.MarshalSigned(k)
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}
