package ae

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkTrain100k: 100,000 rows × 30 numeric fields, 20 full epochs
// (no early stopping), default architecture and batch size, both cores.
func BenchmarkTrain100k(b *testing.B) {
	fields := make([]Field, 30)
	for i := range fields {
		fields[i] = Field{Name: string(rune('a' + i%26)), Numeric: 1}
	}
	m, _ := New(fields, 64, 16)
	const n = 100_000
	d := NewData(m, n)
	rng := rand.New(rand.NewPCG(1, 1))
	for r := range n {
		base := rng.NormFloat64()
		for j := range 30 {
			d.Num[r*30+j] = float32(base*float64(j%3) + rng.NormFloat64())
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Train(fields, d, Config{Seed: 1, Epochs: 20, Patience: 1000}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/fit")
}

// BenchmarkScoreBatch30: scoring already-encoded records (30 numeric
// fields, default architecture) in batches of 1024, on one goroutine; the
// same work as a PyTorch forward pass plus per-field errors.
func BenchmarkScoreBatch30(b *testing.B) {
	fields := make([]Field, 30)
	for i := range fields {
		fields[i] = Field{Name: string(rune('a' + i%26)), Numeric: 1}
	}
	m, _ := New(fields, 64, 16)
	m.init(rand.New(rand.NewPCG(1, 1)))
	const n = 1024
	d := NewData(m, n)
	rng := rand.New(rand.NewPCG(2, 2))
	for i := range d.Num {
		d.Num[i] = float32(rng.NormFloat64())
	}
	s := NewScorer(m, n)
	scores := make([]float32, n)
	b.ReportAllocs()
	for b.Loop() {
		s.Score(d, 0, n, scores, nil)
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}
