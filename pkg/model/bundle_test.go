package model

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
)

var testSchema = &features.Schema{
	Fields: []features.Field{
		{Name: "tx", Kind: features.ID},
		{Name: "amount", Kind: features.Numeric},
		{Name: "merchant", Kind: features.Categorical},
		{Name: "ts", Kind: features.Timestamp, Layout: "2006-01-02 15:04:05"},
		{Name: "country", Kind: features.Categorical},
	},
	IDField: "tx", TimeField: "ts",
}

// testRows: amounts depend on the merchant, night hours are rare.
func testRows(n int, seed uint64) [][]string {
	rng := rand.New(rand.NewPCG(seed, 3))
	rows := make([][]string, n)
	for i := range rows {
		m := rng.IntN(4)
		amt := math.Exp(float64(m) + 0.3*rng.NormFloat64())
		h := 8 + rng.IntN(12)
		rows[i] = []string{
			fmt.Sprint(i), fmt.Sprintf("%.2f", amt), fmt.Sprintf("m%d", m),
			fmt.Sprintf("2024-03-%02d %02d:%02d:00", 1+rng.IntN(28), h, rng.IntN(60)),
			[]string{"FR", "DE", "FR", "BE"}[rng.IntN(4)],
		}
	}
	return rows
}

func fitTest(t testing.TB) *Bundle {
	t.Helper()
	b, err := Fit(testSchema, testRows(3000, 1), FitOptions{AE: ae.Config{Seed: 5, Epochs: 8, Hidden: 16, Bottleneck: 4},
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBundleRoundTrip(t *testing.T) {
	b := fitTest(t)
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta.Rows != 3000 || got.Meta.TrainedAt != b.Meta.TrainedAt || got.Meta.TimeFrom.IsZero() || got.Meta.Seed != 5 {
		t.Fatalf("metadata lost: %+v", got.Meta)
	}
	if got.Calibration.Quantile(0.995) != b.Calibration.Quantile(0.995) {
		t.Fatal("calibration lost")
	}
	if !got.Model.SoftTargets || got.Model.SoftFrom != ae.SoftFromClips*got.Model.InputClip {
		t.Fatalf("soft targets lost: %v from %v", got.Model.SoftTargets, got.Model.SoftFrom)
	}
	// The decoded model scores exactly as the original, amounts far beyond
	// the input clip (soft targets) included.
	rows := testRows(200, 9)
	rows[3][1], rows[7][1] = "1e9", "250000"
	s1, s2 := b.NewScorer(256), got.NewScorer(256)
	for i, r := range rows {
		s1.SetRow(i, r)
		s2.SetRow(i, r)
	}
	a, c := s1.Score(len(rows)), s2.Score(len(rows))
	for i := range a {
		if a[i] != c[i] {
			t.Fatalf("row %d: score %v before, %v after the round trip", i, a[i], c[i])
		}
	}
	// Encoding is deterministic: the same bundle gives the same bytes.
	again, _ := got.MarshalBinary()
	if !bytes.Equal(data, again) {
		t.Fatal("re-encoding changed the bytes")
	}
	// A model scoring against raw targets stays one.
	b.Model.SoftTargets = false
	raw, _ := b.MarshalBinary()
	if got, err := Unmarshal(raw); err != nil || got.Model.SoftTargets {
		t.Fatalf("raw targets: %v, soft %v", err, got != nil && got.Model.SoftTargets)
	}
	b.Model.SoftTargets = true
	// A bundle whose soft targets begin at the clip (written before
	// soft_from existed) keeps them there, and a bad start is refused.
	from := b.Model.SoftFrom
	b.Model.SoftFrom = 0
	old, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(old, []byte("soft_from")) {
		t.Fatal("a zero start is written out")
	}
	got, err = Unmarshal(old)
	if err != nil {
		t.Fatalf("a bundle without soft_from: %v", err)
	}
	if got.Model.SoftFrom != 0 || got.Model.SoftTargets != true {
		t.Fatalf("a bundle without soft_from: soft %v from %v", got.Model.SoftTargets, got.Model.SoftFrom)
	}
	b.Model.SoftFrom = -1
	bad, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(bad); err == nil {
		t.Fatal("a negative start was accepted")
	}
	b.Model.SoftFrom = from
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := b.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err != nil {
		t.Fatal(err)
	}
}

func TestBundleRejectsDamage(t *testing.T) {
	data, err := fitTest(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x40
	wrongVersion := bytes.Clone(data)
	wrongVersion[8] = 9
	cases := []struct {
		name string
		blob []byte
		want error
	}{
		{"empty", nil, ErrNotBundle},
		{"foreign", []byte("PK\x03\x04 this is a zip file, not a model"), ErrNotBundle},
		{"json", []byte(`{"weights":[1,2,3]}`), ErrNotBundle},
		{"truncated", data[:len(data)-100], ErrChecksum},
		{"header only", data[:20], ErrChecksum},
		{"bit flip", flipped, ErrChecksum},
		{"future format", wrongVersion, ErrChecksum}, // the checksum covers the version too
	}
	for _, tc := range cases {
		_, err := Unmarshal(tc.blob)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// A future format with a valid checksum is refused by version.
	body := bytes.Clone(data[:len(data)-32])
	body[8] = 9
	if _, err := Unmarshal(resum(body)); !errors.Is(err, ErrFormat) {
		t.Errorf("future format: got %v", err)
	}
}

func TestBundleRejectsInconsistentHeader(t *testing.T) {
	b := fitTest(t)
	// A network whose layout disagrees with the encoder.
	other, _ := ae.New([]ae.Field{{Name: "x", Numeric: 1}}, 4, 2)
	bad := &Bundle{Encoder: b.Encoder, Model: other, Calibration: b.Calibration}
	data, err := bad.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(data); err == nil {
		t.Fatal("accepted a bundle whose network does not match its encoder")
	}
}

// tinyBundle is quick to fit even under the fuzzer's instrumentation.
func tinyBundle(t testing.TB) []byte {
	b, err := Fit(testSchema, testRows(100, 1), FitOptions{AE: ae.Config{Seed: 1, Epochs: 1, Hidden: 4, Bottleneck: 2, BatchSize: 32}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func FuzzBundle(f *testing.F) {
	data, err := tinyBundle(f), error(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:64])
	f.Add([]byte("FSDAEMDL"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		b, err := Unmarshal(blob)
		if err != nil {
			return
		}
		// Whatever decodes must score without panicking.
		s := b.NewScorer(2)
		s.SetRow(0, []string{"1", "3.5", "m1", "2024-03-01 10:00:00", "FR"})
		s.Score(1)
	})
}

// FuzzBundleBody fuzzes the decoder behind the checksum: inputs are
// re-summed so that corruption reaches the header and weight parsers.
func FuzzBundleBody(f *testing.F) {
	data, err := tinyBundle(f), error(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data[:len(data)-32])
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := Unmarshal(resum(body))
		if err != nil {
			return
		}
		s := b.NewScorer(2)
		s.SetRow(0, []string{"1", "3.5", "m1", "2024-03-01 10:00:00", "FR"})
		s.Score(1)
	})
}

func resum(body []byte) []byte {
	return append(bytes.Clone(body), sumOf(body)...)
}

func sumOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestBlankingFieldsRaisesTheScore: a record whose always-present fields are
// blanked must score higher, not lower, than the same record intact.
func TestBlankingFieldsRaisesTheScore(t *testing.T) {
	b := fitTest(t)
	sc := b.NewScorer(4)
	sc.SetRow(0, []string{"1", "3.5", "m1", "2024-03-01 10:00:00", "FR"})
	sc.SetRow(1, []string{"1", "", "m1", "2024-03-01 10:00:00", "FR"})
	sc.SetRow(2, []string{"1", "", "m1", "", "FR"})
	s := sc.Score(3)
	if !(s[1] > s[0]+1 && s[2] > s[1]+1) {
		t.Fatalf("scores intact %.2f, amount blank %.2f, amount and time blank %.2f", s[0], s[1], s[2])
	}
	r := sc.Reasons(2, 2, nil)
	if len(r) != 2 || (r[0].Name != "amount" && r[0].Name != "ts") {
		t.Fatalf("blank fields are not the reasons: %+v", r)
	}
	if len(sc.Reasons(2, 0, nil)) != 0 {
		t.Fatal("k = 0 gave reasons")
	}
}
