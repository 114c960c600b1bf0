package ae

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAdam checks one AdamW step against the update written out in
// float64, on lengths with ragged tails (the kernel takes multiples of 8),
// with every kernel.
func TestAdam(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{1, 7, 8, 9, 30, 64, 1920} {
			v := func(scale float64, pos bool) []float32 {
				s := make([]float32, n)
				for i := range s {
					x := rng.NormFloat64() * scale
					if pos {
						x = math.Abs(x)
					}
					s[i] = float32(x)
				}
				return s
			}
			w, g0, g1, mom, vel := v(1, false), v(0.1, false), v(0.1, false), v(0.01, false), v(0.001, true)
			const alpha, decay = 1e-3, 1 - 1e-8
			want := make([]float64, n)
			wantM := make([]float64, n)
			wantV := make([]float64, n)
			for i := range n {
				g := float64(g0[i]) + float64(g1[i])
				wantM[i] = 0.9*float64(mom[i]) + 0.1*g
				wantV[i] = 0.999*float64(vel[i]) + 0.001*g*g
				want[i] = float64(w[i])*decay - alpha*wantM[i]/(math.Sqrt(wantV[i])+1e-8)
			}
			adam(w, g0, g1, mom, vel, alpha, decay)
			for i := range n {
				for _, c := range []struct {
					name      string
					got, want float64
				}{{"w", float64(w[i]), want[i]}, {"mom", float64(mom[i]), wantM[i]}, {"vel", float64(vel[i]), wantV[i]}} {
					if math.Abs(c.got-c.want) > 1e-5*math.Abs(c.want)+1e-9 {
						t.Fatalf("n=%d: %s[%d] = %v, want %v", n, c.name, i, c.got, c.want)
					}
				}
			}
		}
	})
}

// TestColumnErrors checks the one-pass errors and gradients of one-column
// numeric layouts against the definition: error (y − clip(t))², gradient
// 2·gscale·(y − clip(t)), both 0 where the field is missing, and the total.
func TestColumnErrors(t *testing.T) {
	kernels(t, func(t *testing.T) {
		fields := make([]Field, 11)
		for i := range fields {
			fields[i] = Field{Name: string(rune('a' + i)), Numeric: 1}
		}
		m, err := New(fields, 8, 3)
		if err != nil {
			t.Fatal(err)
		}
		m.init(rand.New(rand.NewPCG(5, 6)))
		m.InputClip = 2
		const n = 13
		d := NewData(m, n)
		rng := rand.New(rand.NewPCG(7, 8))
		for i := range d.Num {
			d.Num[i] = float32(rng.NormFloat64() * 2)
			d.Miss[i] = rng.IntN(7) == 0
		}
		b := newBuffers(m, n, true)
		m.fillInput(b, d, 0, n)
		m.forward(b, n)
		const gscale = 0.25
		for _, clip := range []bool{true, false} {
			grad := b.grad[3][:n*11]
			for i := range grad {
				grad[i] = 99 // every element must be written
			}
			total := m.fieldErrors(b, d, 0, n, grad, gscale, clip)
			sum := 0.0
			for i := range n * 11 {
				tv := float64(d.Num[i])
				if clip {
					tv = math.Min(math.Max(tv, -2), 2)
				}
				diff := float64(b.act[3][i]) - tv
				we, wg := diff*diff, 2*gscale*diff
				if d.Miss[i] {
					we, wg = 0, 0
				}
				sum += we
				if math.Abs(float64(b.ferr[i])-we) > 1e-5*we+1e-6 || math.Abs(float64(grad[i])-wg) > 1e-5*math.Abs(wg)+1e-6 {
					t.Fatalf("clip=%v element %d: error %v gradient %v, want %v and %v", clip, i, b.ferr[i], grad[i], we, wg)
				}
			}
			if math.Abs(total-sum) > 1e-5*sum {
				t.Fatalf("clip=%v: total %v, want %v", clip, total, sum)
			}
		}
	})
}

// TestReluGrad checks that gradients are zeroed exactly where the
// activation is at most 0 (and kept for NaN), on ragged lengths, with
// every kernel.
func TestReluGrad(t *testing.T) {
	kernels(t, func(t *testing.T) {
		nan := float32(math.NaN())
		vals := []float32{0, float32(math.Copysign(0, -1)), -1, 1e-30, 2, nan, float32(math.Inf(1)), float32(math.Inf(-1))}
		for _, n := range []int{0, 1, 7, 8, 9, 31, 64, 130} {
			act := make([]float32, n)
			g := make([]float32, n)
			for i := range n {
				act[i] = vals[(i*5+n)%len(vals)]
				g[i] = float32(i + 1)
			}
			reluGrad(g, act)
			for i := range n {
				want := float32(i + 1)
				if act[i] <= 0 {
					want = 0
				}
				if g[i] != want {
					t.Fatalf("n=%d: act %v: gradient %v, want %v", n, act[i], g[i], want)
				}
			}
		}
	})
}

// TestLogSumExp checks the fused log-sum-exp against float64 on lengths
// around the kernel's 8-lane steps, with large and very negative logits
// (no overflow, underflow to 0 harmless), with every kernel.
func TestLogSumExp(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(9, 10))
		for _, n := range []int{1, 2, 5, 7, 8, 9, 15, 16, 17, 42, 130} {
			for _, scale := range []float64{0.1, 3, 30, 200} {
				z := make([]float32, n)
				for i := range z {
					z[i] = float32(rng.NormFloat64()*scale + 100)
				}
				mx := math.Inf(-1)
				for _, v := range z {
					mx = math.Max(mx, float64(v))
				}
				s := 0.0
				for _, v := range z {
					s += math.Exp(float64(v) - mx)
				}
				want := mx + math.Log(s)
				got := float64(logSumExp(z))
				if math.Abs(got-want) > 2e-6*math.Abs(want) {
					t.Fatalf("n=%d scale %v: %v, want %v", n, scale, got, want)
				}
			}
		}
	})
}

// TestLogAtLeast1 checks the float32 logarithm against math.Log from 1 to
// beyond any sum of softmax terms, including powers of two and values
// either side of the √2 split.
func TestLogAtLeast1(t *testing.T) {
	xs := []float32{1, 1.0000001, 1.4142135, 1.4142137, 2, 3, 7.999999, 8, 130, 1e6, 3e38}
	for x := float32(1); x < 1e5; x *= 1.0137 {
		xs = append(xs, x)
	}
	for _, x := range xs {
		got, want := float64(logAtLeast1(x)), math.Log(float64(x))
		if math.Abs(got-want) > 2e-7*math.Max(want, 1) {
			t.Fatalf("log(%v) = %v, want %v", x, got, want)
		}
	}
}
