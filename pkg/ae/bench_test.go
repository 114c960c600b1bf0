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
