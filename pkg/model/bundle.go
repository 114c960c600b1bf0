// Package model holds the model bundle: one versioned, checksummed binary
// with everything scoring needs (schema, encoder state, architecture,
// weights, score normalisers, calibration and training metadata), and the
// scoring path that joins the feature encoder to the autoencoder.
//
// Bundle layout (all integers little-endian):
//
//	magic    "FSDAEMDL" (8 bytes)
//	format   uint16 (FormatVersion)
//	flags    uint16 (0, or 1: signed; was "reserved", always 0, before signing)
//	hlen     uint32, then hlen bytes of JSON header
//	8 tensors: uint32 count, then count float32 values
//	           (W0 B0 W1 B1 W2 B2 W3 B3)
//	signature, when flags has bit 1: key id (8 bytes, see KeyID) and the
//	           64-byte ed25519 signature of everything from the magic to
//	           the last tensor (flags included)
//	sha256   32 bytes over everything before it
//
// The signature covers the whole model (schema, encoder, weights,
// calibration, metadata); the checksum, outside it, catches corruption and
// stays the bundle's identity (Digest). See sign.go.
//
// Decoding checks the checksum first and every length against the header's
// architecture before allocating, so a truncated, corrupted or foreign blob
// returns an error, never a panic or a huge allocation.
package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
)

// FormatVersion is the bundle format this code writes and reads.
const FormatVersion = 1

var magic = [8]byte{'F', 'S', 'D', 'A', 'E', 'M', 'D', 'L'}

// Errors callers branch on.
var (
	ErrNotBundle = errors.New("model: not a model bundle (bad magic)")
	ErrChecksum  = errors.New("model: bundle checksum mismatch (corrupted or truncated)")
	ErrFormat    = errors.New("model: unsupported bundle format version")
)

const maxHeader = 64 << 20

// Calibration summarises the validation scores of a trained model, so that
// thresholds can start on the model's own score scale.
type Calibration struct {
	Count  int       `json:"count"`
	Mean   float64   `json:"mean"`
	Probs  []float64 `json:"probs"`
	Values []float64 `json:"values"`
}

// calibrationProbs is dense in the upper tail, where alert thresholds live.
func calibrationProbs() []float64 {
	var p []float64
	for i := 0; i < 99; i++ {
		p = append(p, float64(i)/100)
	}
	for i := 990; i < 999; i++ {
		p = append(p, float64(i)/1000)
	}
	return append(p, 0.999, 0.9995, 0.9999, 1)
}

// NewCalibration summarises scores.
func NewCalibration(scores []float32) Calibration {
	s := make([]float64, len(scores))
	var mean float64
	for i, v := range scores {
		s[i] = float64(v)
		mean += float64(v)
	}
	slices.Sort(s)
	c := Calibration{Count: len(s), Probs: calibrationProbs()}
	if len(s) > 0 {
		c.Mean = mean / float64(len(s))
	}
	c.Values = make([]float64, len(c.Probs))
	for i, p := range c.Probs {
		c.Values[i] = quantileSorted(s, p)
	}
	return c
}

func quantileSorted(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(lo)
	return s[lo]*(1-f) + s[lo+1]*f
}

// Quantile returns the validation score at probability p, interpolating
// between stored points.
func (c Calibration) Quantile(p float64) float64 {
	if len(c.Probs) == 0 {
		return math.NaN()
	}
	i, found := slices.BinarySearch(c.Probs, p)
	switch {
	case found:
		return c.Values[i]
	case i == 0:
		return c.Values[0]
	case i >= len(c.Probs):
		return c.Values[len(c.Values)-1]
	}
	f := (p - c.Probs[i-1]) / (c.Probs[i] - c.Probs[i-1])
	return c.Values[i-1]*(1-f) + c.Values[i]*f
}

// Meta records how a model was trained.
type Meta struct {
	Version     string    `json:"version,omitempty"` // set by the registry
	TrainedAt   time.Time `json:"trained_at"`
	CodeVersion string    `json:"code_version"`
	Seed        uint64    `json:"seed"`
	Rows        int       `json:"rows"`
	TrainRows   int       `json:"train_rows"`
	ValRows     int       `json:"val_rows"`
	BadRows     int       `json:"bad_rows"`
	TimeFrom    time.Time `json:"time_from,omitzero"`
	TimeTo      time.Time `json:"time_to,omitzero"`
	Epochs      int       `json:"epochs"`
	BestEpoch   int       `json:"best_epoch"`
	TrainLoss   float64   `json:"train_loss"`
	ValLoss     float64   `json:"val_loss"`
	Duration    float64   `json:"duration_seconds"`
	Source      string    `json:"source,omitempty"`
	Config      any       `json:"config,omitempty"`
}

// Bundle is a trained model with everything needed to score.
type Bundle struct {
	Encoder     *features.Encoder
	Model       *ae.Model
	Calibration Calibration
	Meta        Meta
	// Entity is the entity score joined to the DAE's (see entity.go);
	// nil in bundles without one, which score by the DAE alone.
	Entity *EntityPart
}

type header struct {
	Encoder     *features.Encoder `json:"encoder"`
	Fields      []ae.Field        `json:"fields"`
	Hidden      int               `json:"hidden"`
	Bottleneck  int               `json:"bottleneck"`
	InputClip   float32           `json:"input_clip"`
	Linear      bool              `json:"linear,omitempty"`
	SoftTargets bool              `json:"soft_targets,omitempty"`
	SoftFrom    float32           `json:"soft_from,omitempty"`
	Norm        []float32         `json:"norm"`
	Miss        []float32         `json:"miss_surprisal"`
	Calibration Calibration       `json:"calibration"`
	Meta        Meta              `json:"meta"`
	Entity      *EntityPart       `json:"entity,omitempty"`
}

// MarshalBinary encodes the bundle.
func (b *Bundle) MarshalBinary() ([]byte, error) {
	if b.Encoder == nil || b.Model == nil {
		return nil, errors.New("model: bundle lacks an encoder or a model")
	}
	h := header{Encoder: b.Encoder, Fields: b.Model.Fields, Hidden: b.Model.Hidden, Bottleneck: b.Model.Bottleneck,
		InputClip: b.Model.InputClip, Linear: b.Model.Linear, SoftTargets: b.Model.SoftTargets, SoftFrom: b.Model.SoftFrom, Norm: b.Model.Norm, Miss: b.Model.MissSurprisal, Calibration: b.Calibration, Meta: b.Meta, Entity: b.Entity}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("model: encode header: %w", err)
	}
	var buf bytes.Buffer
	buf.Write(magic[:])
	binary.Write(&buf, binary.LittleEndian, uint16(FormatVersion))
	binary.Write(&buf, binary.LittleEndian, uint16(0))
	binary.Write(&buf, binary.LittleEndian, uint32(len(hj)))
	buf.Write(hj)
	for l := range 4 {
		for _, t := range [][]float32{b.Model.W[l], b.Model.B[l]} {
			binary.Write(&buf, binary.LittleEndian, uint32(len(t)))
			var tmp [4]byte
			for _, v := range t {
				binary.LittleEndian.PutUint32(tmp[:], math.Float32bits(v))
				buf.Write(tmp[:])
			}
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	return buf.Bytes(), nil
}

// Digest returns the hex SHA-256 stored at the end of an encoded bundle.
func Digest(data []byte) string {
	if len(data) < sha256.Size {
		return ""
	}
	return hex.EncodeToString(data[len(data)-sha256.Size:])
}

// fixed is the length of the magic, format, flags and header length.
const fixed = 8 + 2 + 2 + 4

// flagSigned marks a bundle that carries a signature block.
const flagSigned = 1

// frame checks an encoded bundle's magic, checksum, format and flags, and
// returns its content (magic to last tensor: what a signature covers) and
// its signature block (nil when unsigned). It allocates nothing.
func frame(data []byte) (content, sig []byte, err error) {
	if len(data) < 8 || !bytes.Equal(data[:8], magic[:]) {
		return nil, nil, ErrNotBundle
	}
	if len(data) < fixed+sha256.Size {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrChecksum, len(data))
	}
	body := data[:len(data)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], data[len(body):]) {
		return nil, nil, ErrChecksum
	}
	if v := binary.LittleEndian.Uint16(data[8:]); v != FormatVersion {
		return nil, nil, fmt.Errorf("%w %d (this build reads %d)", ErrFormat, v, FormatVersion)
	}
	flags := binary.LittleEndian.Uint16(data[10:])
	if flags&^flagSigned != 0 {
		return nil, nil, fmt.Errorf("%w: unknown flags %#x (written by a newer build?)", ErrFormat, flags)
	}
	if flags&flagSigned == 0 {
		return body, nil, nil
	}
	if len(body) < fixed+sigSize {
		return nil, nil, errors.New("model: bundle marked signed is too short to hold its signature")
	}
	return body[:len(body)-sigSize], body[len(body)-sigSize:], nil
}

// Unmarshal decodes and verifies a bundle. A signed bundle decodes too; its
// signature is not checked (see UnmarshalVerified).
func Unmarshal(data []byte) (*Bundle, error) {
	body, _, err := frame(data)
	if err != nil {
		return nil, err
	}
	return decode(body)
}

// decode decodes a bundle's content (see frame).
func decode(body []byte) (*Bundle, error) {
	hlen := binary.LittleEndian.Uint32(body[12:])
	if hlen > maxHeader || int(hlen) > len(body)-fixed {
		return nil, fmt.Errorf("model: header length %d exceeds the bundle", hlen)
	}
	var h header
	dec := json.NewDecoder(bytes.NewReader(body[fixed : fixed+int(hlen)]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("model: bad header: %w", err)
	}
	if h.Encoder == nil {
		return nil, errors.New("model: header has no encoder")
	}
	if err := h.Encoder.Check(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	dims, err := ae.Shape(h.Fields, h.Hidden, h.Bottleneck)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	// The weights must fill the rest of the body exactly; checking this
	// before allocating keeps a forged header from costing memory.
	want := 0
	for l := range 4 {
		want += 4 + 4*dims[l]*dims[l+1] + 4 + 4*dims[l+1]
	}
	if want != len(body)-fixed-int(hlen) {
		return nil, fmt.Errorf("model: the weights take %d bytes, the architecture needs %d", len(body)-fixed-int(hlen), want)
	}
	m, err := ae.New(h.Fields, h.Hidden, h.Bottleneck)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := checkLayout(h.Encoder, h.Fields); err != nil {
		return nil, err
	}
	if !(h.InputClip > 0) {
		return nil, errors.New("model: input clip must be positive")
	}
	m.InputClip = h.InputClip
	m.Linear = h.Linear
	m.SoftTargets = h.SoftTargets
	if h.SoftFrom < 0 || math.IsNaN(float64(h.SoftFrom)) || math.IsInf(float64(h.SoftFrom), 0) {
		return nil, fmt.Errorf("model: soft targets' start %v is not a finite non-negative number (0: the input clip)", h.SoftFrom)
	}
	m.SoftFrom = h.SoftFrom
	m.Norm = h.Norm
	m.MissSurprisal = h.Miss
	rest := body[fixed+int(hlen):]
	var w, bb [4][]float32
	for l := range 4 {
		for k, want := range []int{dims[l] * dims[l+1], dims[l+1]} {
			if len(rest) < 4 {
				return nil, errors.New("model: weights are truncated")
			}
			n := int(binary.LittleEndian.Uint32(rest))
			rest = rest[4:]
			if n != want {
				return nil, fmt.Errorf("model: layer %d holds %d values, the architecture needs %d", l, n, want)
			}
			if len(rest) < 4*n {
				return nil, errors.New("model: weights are truncated")
			}
			t := make([]float32, n)
			for i := range t {
				t[i] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:]))
			}
			rest = rest[4*n:]
			if k == 0 {
				w[l] = t
			} else {
				bb[l] = t
			}
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("model: %d unexpected bytes after the weights", len(rest))
	}
	if err := m.SetWeights(w, bb); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if len(h.Calibration.Probs) != len(h.Calibration.Values) || !slices.IsSorted(h.Calibration.Probs) {
		return nil, errors.New("model: calibration is malformed")
	}
	if h.Entity != nil {
		if err := h.Entity.check(&h.Encoder.Schema); err != nil {
			return nil, err
		}
	}
	return &Bundle{Encoder: h.Encoder, Model: m, Calibration: h.Calibration, Meta: h.Meta, Entity: h.Entity}, nil
}

// checkLayout ensures the encoder produces the dense form the network expects.
func checkLayout(e *features.Encoder, fields []ae.Field) error {
	want := Layout(e)
	if len(want) != len(fields) {
		return fmt.Errorf("model: encoder has %d learned fields, network %d", len(want), len(fields))
	}
	for i := range want {
		if want[i] != fields[i] {
			return fmt.Errorf("model: field %d differs between encoder (%+v) and network (%+v)", i, want[i], fields[i])
		}
	}
	return nil
}

// Layout converts an encoder's fields into the network's layout.
func Layout(e *features.Encoder) []ae.Field {
	out := make([]ae.Field, len(e.Fields))
	for i, f := range e.Fields {
		if f.Kind == features.Categorical {
			out[i] = ae.Field{Name: f.Name, Levels: len(f.Levels)}
		} else {
			out[i] = ae.Field{Name: f.Name, Numeric: f.NumWidth}
		}
	}
	return out
}

// WriteFile writes the bundle atomically: a reader never sees half a file.
func (b *Bundle) WriteFile(path string) error {
	data, err := b.MarshalBinary()
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}

// writeAtomic writes data to a temporary file in path's directory and
// renames it over path.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".model-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadFile loads and verifies a bundle file.
func ReadFile(path string) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// CodeVersion identifies the build that trains a model.
func CodeVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += "+" + s.Value
		}
	}
	return v
}
