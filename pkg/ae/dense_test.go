package ae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// kernels runs f once with each kernel this build and CPU have: AVX-512,
// AVX2, and the portable one.
func kernels(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer func(a, z bool) { useAsm, useAVX512 = a, z }(useAsm, useAVX512)
	if haveAVX512 {
		useAsm, useAVX512 = true, true
		t.Run("avx512", f)
	} else {
		t.Log("no AVX-512 kernel in this build or on this CPU")
	}
	if haveAsm {
		useAsm, useAVX512 = true, false
		t.Run("avx2", f)
	} else {
		t.Log("no assembly kernels in this build or on this CPU")
	}
	useAsm, useAVX512 = false, false
	t.Run("go", f)
}

// TestDenseKernel checks act(in·W + b) against a float64 reference on
// shapes with ragged edges: row counts that are not multiples of the
// 6-row tile, widths that are not multiples of 8 or 16, strided rows, and
// that nothing outside the n×c output block is written.
func TestDenseKernel(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 3))
		var p packed
		for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 100} {
			for _, k := range []int{0, 1, 2, 7, 16, 30, 64, 131, 200} {
				for _, c := range []int{1, 5, 8, 15, 16, 17, 24, 30, 33, 64, 80, 130, 200, 256, 300} {
					if n > 13 && k%2 == 1 {
						continue // keep the run short
					}
					lda, ldc := k+rng.IntN(3), c+rng.IntN(3)
					in := randSlice(rng, max(0, (n-1)*lda+k))
					w, b := randSlice(rng, k*c), randSlice(rng, c)
					p.pack(w, k, c)
					const guard = 1e30
					out := make([]float32, n*ldc+7)
					for i := range out {
						out[i] = guard
					}
					relu := (n+k+c)%2 == 0
					dense(out, in, &p, b, n, lda, ldc, relu)
					for r := range n {
						for j := range ldc {
							got := out[r*ldc+j]
							if j >= c {
								if got != guard {
									t.Fatalf("n=%d k=%d c=%d: wrote padding [%d,%d]", n, k, c, r, j)
								}
								continue
							}
							want, mag := float64(b[j]), math.Abs(float64(b[j]))
							for x := range k {
								v := float64(in[r*lda+x]) * float64(w[x*c+j])
								want += v
								mag += math.Abs(v)
							}
							if relu {
								want = max(want, 0)
							}
							if math.Abs(float64(got)-want) > 1e-6*(1+mag) {
								t.Fatalf("n=%d k=%d c=%d relu=%v: [%d,%d] = %v, want %v", n, k, c, relu, r, j, got, want)
							}
						}
					}
					for _, v := range out[n*ldc:] {
						if v != guard {
							t.Fatalf("n=%d k=%d c=%d: wrote past the last row", n, k, c)
						}
					}
				}
			}
		}
	})
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// referenceForward is the network written out plainly in float64 (dense
// rows times W[0], plus the active sparse rows, ReLU, and so on): what the
// packed kernels must reproduce.
func referenceForward(m *Model, b *buffers, n int) [][]float64 {
	d := m.Dims()
	F := len(m.Fields)
	out := make([][]float64, n)
	for r := range n {
		x := make([]float64, d[0])
		for j := range m.numCols {
			x[j] = float64(b.x[r*m.numCols+j])
		}
		for _, s := range b.sp[r*F : (r+1)*F] {
			if s >= 0 {
				x[m.numCols+int(s)] = 1
			}
		}
		for l := range 4 {
			y := make([]float64, d[l+1])
			for j := range y {
				y[j] = float64(m.B[l][j])
				for i, v := range x {
					y[j] += v * float64(m.W[l][i*d[l+1]+j])
				}
				if l == 0 || l == 2 {
					y[j] = max(y[j], 0)
				}
			}
			x = y
		}
		out[r] = x
	}
	return out
}

// TestForwardMatchesReference: the network's outputs (and so the scores)
// match the plain float64 network within float32 rounding, for a mixed
// layout with missing values (the sparse path) and an all-numeric one
// with every field present (ReLU fused into the kernel), with either
// kernel.
func TestForwardMatchesReference(t *testing.T) {
	numeric := make([]Field, 30)
	for i := range numeric {
		numeric[i] = Field{Name: fmt.Sprint("f", i), Numeric: 1}
	}
	for _, tc := range []struct {
		name   string
		fields []Field
		miss   float64
	}{{"mixed", testFields, 0.2}, {"numeric", numeric, 0}, {"numeric-missing", numeric, 0.05}} {
		t.Run(tc.name, func(t *testing.T) {
			kernels(t, func(t *testing.T) {
				m, err := New(tc.fields, 64, 16)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(5, 5))
				m.init(rng)
				for l := range 4 {
					for i := range m.B[l] {
						m.B[l][i] = float32(rng.NormFloat64() * 0.1)
					}
				}
				m.refresh()
				const n = 77
				d := NewData(m, n)
				for i := range d.Num {
					d.Num[i] = float32(rng.NormFloat64())
				}
				for i := range d.Cat {
					d.Cat[i] = int32(rng.IntN(4))
				}
				for i := range d.Miss {
					d.Miss[i] = rng.Float64() < tc.miss
				}
				s := NewScorer(m, n)
				scores := make([]float32, n)
				s.Score(d, 0, n, scores, nil)
				want := referenceForward(m, s.b, n)
				for r := range n {
					for j, w := range want[r] {
						if got := s.Output(r)[j]; math.Abs(float64(got)-w) > 1e-4*(1+math.Abs(w)) {
							t.Fatalf("row %d output %d = %v, want %v", r, j, got, w)
						}
					}
				}
			})
		})
	}
}

// TestScoreAllocates nothing per call, on either kernel.
func TestScoreAllocatesNothing(t *testing.T) {
	kernels(t, func(t *testing.T) {
		m, err := New(testFields, 64, 16)
		if err != nil {
			t.Fatal(err)
		}
		m.init(rand.New(rand.NewPCG(1, 1)))
		d := randomData(m, 100, 4)
		s := NewScorer(m, 100)
		scores := make([]float32, 100)
		contrib := make([]float32, 100*len(testFields))
		if a := testing.AllocsPerRun(20, func() { s.Score(d, 0, 100, scores, contrib) }); a != 0 {
			t.Errorf("Score allocates %v times per call", a)
		}
	})
}

// TestScoreMatchesReference: scores and contributions equal the documented
// sums computed in float64 from the plain network (numeric squared errors
// against unclipped targets, categorical cross-entropy, missing numeric
// fields contributing their surprisal), for the one-column numeric layout
// (Score's whole-batch path) and a mixed one, with and without sqrt, with
// either kernel.
func TestScoreMatchesReference(t *testing.T) {
	numeric := make([]Field, 30)
	for i := range numeric {
		numeric[i] = Field{Name: fmt.Sprint("f", i), Numeric: 1}
	}
	for _, tc := range []struct {
		name   string
		fields []Field
		linear bool
	}{{"numeric", numeric, false}, {"numeric-linear", numeric, true}, {"mixed", testFields, false}, {"mixed-linear", testFields, true}} {
		t.Run(tc.name, func(t *testing.T) {
			kernels(t, func(t *testing.T) {
				m, err := New(tc.fields, 64, 16)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(7, 7))
				m.init(rng)
				m.Linear = tc.linear
				F := len(tc.fields)
				for f := range F {
					m.Norm[f] = float32(0.5 + rng.Float64())
					m.MissSurprisal[f] = float32(rng.Float64() * 3)
				}
				const n = 50
				d := NewData(m, n)
				for i := range d.Num {
					d.Num[i] = float32(rng.NormFloat64() * 4) // some beyond InputClip
				}
				for i := range d.Cat {
					d.Cat[i] = int32(rng.IntN(7) - 1) // some out of range
				}
				for i := range d.Miss {
					d.Miss[i] = rng.Float64() < 0.1
				}
				s := NewScorer(m, n)
				scores := make([]float32, n)
				contrib := make([]float32, n*F)
				s.Score(d, 0, n, scores, contrib)
				scores2 := make([]float32, n)
				s.Score(d, 0, n, scores2, nil)
				y := referenceForward(m, s.b, n)
				for r := range n {
					var want float64
					for f, fd := range tc.fields {
						var e float64
						switch {
						case fd.Levels > 0:
							z := y[r][m.outOff[f] : m.outOff[f]+fd.Levels]
							lvl := int(d.Cat[r*m.catFields+m.catIdx[f]])
							if lvl < 0 || lvl >= fd.Levels {
								lvl = 0
							}
							var se float64
							for _, v := range z {
								se += math.Exp(v)
							}
							e = (math.Log(se) - z[lvl]) / float64(m.Norm[f])
						case d.Miss[r*F+f]:
							e = float64(m.MissSurprisal[f])
						default:
							for j := range fd.Numeric {
								v := y[r][m.outOff[f]+j] - float64(d.Num[r*m.numCols+m.numOff[f]+j])
								e += v * v
							}
							e /= float64(fd.Numeric) * float64(m.Norm[f])
						}
						if !tc.linear {
							e = math.Sqrt(e)
						}
						if got := contrib[r*F+f]; math.Abs(float64(got)-e) > 1e-3*(1+e) {
							t.Fatalf("row %d field %d: contribution %v, want %v", r, f, got, e)
						}
						want += e
					}
					if math.Abs(float64(scores[r])-want) > 1e-3*(1+want) {
						t.Fatalf("row %d: score %v, want %v", r, scores[r], want)
					}
					if scores2[r] != scores[r] {
						t.Fatalf("row %d: score %v without contributions, %v with", r, scores2[r], scores[r])
					}
				}
			})
		})
	}
}

// TestBiasChangeTakesEffect: B is read as it is on every pass (the
// kernels pack only W), so a change to an exported bias shows in the next
// Score, as it did before the packed kernels; pkg/model's reason tests
// rely on it.
func TestBiasChangeTakesEffect(t *testing.T) {
	kernels(t, func(t *testing.T) {
		m, err := New(testFields, 64, 16)
		if err != nil {
			t.Fatal(err)
		}
		m.init(rand.New(rand.NewPCG(1, 1)))
		d := randomData(m, 3, 1)
		s := NewScorer(m, 3)
		scores := make([]float32, 3)
		s.Score(d, 0, 3, scores, nil)
		last := m.out - 1 // the ragged last panel
		before := s.Output(2)[last]
		m.B[3][last] += 5
		s.Score(d, 0, 3, scores, nil)
		if got := s.Output(2)[last]; math.Abs(float64(got-before-5)) > 1e-4 {
			t.Fatalf("output %v after adding 5 to its bias, was %v", got, before)
		}
	})
}

// TestNormChangeTakesEffect: a Scorer notices Norm changed in place
// (training sets it after the scorer it validates with exists), for one
// row and for a batch: it keeps 1/Norm repeated per row and rebuilds it
// when Norm's bits change. Four times the normaliser halves a
// contribution (its square root).
func TestNormChangeTakesEffect(t *testing.T) {
	kernels(t, func(t *testing.T) {
		m, err := New(testFields, 64, 16)
		if err != nil {
			t.Fatal(err)
		}
		m.init(rand.New(rand.NewPCG(2, 2)))
		d := randomData(m, 3, 2)
		clear(d.Miss)
		F := len(m.Fields)
		s := NewScorer(m, 3)
		for _, n := range []int{1, 3} {
			scores := make([]float32, n)
			before := make([]float32, n*F)
			s.Score(d, 0, n, scores, before)
			for f := range m.Norm {
				m.Norm[f] *= 4
			}
			after := make([]float32, n*F)
			s.Score(d, 0, n, scores, after)
			for i := range after {
				if math.Abs(float64(after[i]-before[i]/2)) > 1e-5*(1+float64(before[i])) {
					t.Fatalf("n=%d: contribution %d is %v after Norm ×4, was %v", n, i, after[i], before[i])
				}
			}
		}
	})
}

// TestClamp: clamp bounds every element, lengths with and without a
// ragged tail, in place and not; NaN stays NaN, as vek32's vector
// MinimumNumber/MaximumNumber (which the input clip and Score's max(0, ·)
// used before) leave it.
func TestClamp(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(9, 9))
		for n := range 70 {
			src := randSlice(rng, n)
			for i := range src {
				src[i] *= 20
				switch rng.IntN(10) {
				case 0:
					src[i] = float32(math.NaN())
				case 1:
					src[i] = float32(math.Inf(rng.IntN(2)*2 - 1))
				}
			}
			for _, b := range [][2]float32{{-10, 10}, {0, float32(math.Inf(1))}} {
				lo, hi := b[0], b[1]
				for _, inPlace := range []bool{true, false} {
					dst := make([]float32, n)
					in := src
					if inPlace {
						copy(dst, src)
						in = dst
					}
					clamp(dst, in, lo, hi)
					for i, v := range src {
						want := min(max(v, lo), hi) // NaN stays NaN
						if got := dst[i]; got != want && !(got != got && v != v) {
							t.Fatalf("[%v, %v] n=%d inPlace=%v: %v became %v, want %v", lo, hi, n, inPlace, v, got, want)
						}
					}
				}
			}
		}
	})
}

// TestRootScaled: sqrt(max(e·scale, 0)) is the correctly rounded square
// root of the correctly rounded product clamped as clamp does, bit for
// bit, with NaN, ±Inf, ±0, negative products and ragged lengths, in place
// and not, with every kernel. (The square root it replaced, vek32's, is
// not correctly rounded: sqrt of 0x402f5786 gave 0x3fd3dde3 where the
// nearest float32 is 0x3fd3dde4; that case is among the inputs.)
func TestRootScaled(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 13))
		special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)), -1e-7, 1e-38, 3e38}
		for n := range 70 {
			e, scale := randSlice(rng, n), randSlice(rng, n)
			for i := range n {
				e[i] *= 50
				scale[i] = 1 / (float32(math.Abs(float64(scale[i]))) + 0.01)
				if rng.IntN(5) == 0 {
					e[i] = special[rng.IntN(len(special))]
				}
				if rng.IntN(20) == 0 {
					scale[i] = special[rng.IntN(len(special))]
				}
			}
			if n == 9 {
				e[4], scale[4] = math.Float32frombits(0x402f5786), 1 // its root is 0x3fd3dde4
			}
			want := make([]float32, n)
			for i := range n {
				q := e[i] * scale[i]
				if q < 0 { // NaN and -0 stay, as in clamp
					q = 0
				}
				want[i] = float32(math.Sqrt(float64(q)))
			}
			if n == 9 && math.Float32bits(want[4]) != 0x3fd3dde4 {
				t.Fatalf("reference root of 0x402f5786: %#x", math.Float32bits(want[4]))
			}
			for _, inPlace := range []bool{false, true} {
				dst := make([]float32, n)
				x := e
				if inPlace {
					copy(dst, e)
					x = dst
				}
				rootScaled(dst, x, scale)
				for i := range n {
					if math.Float32bits(dst[i]) != math.Float32bits(want[i]) && !(dst[i] != dst[i] && want[i] != want[i]) {
						t.Fatalf("n=%d inPlace=%v: sqrt(max(%v·%v, 0)) = %v (%#x), want %v (%#x)",
							n, inPlace, e[i], scale[i], dst[i], math.Float32bits(dst[i]), want[i], math.Float32bits(want[i]))
					}
				}
			}
		}
	})
}

// TestSqdiff: (a-b)² element by element, ragged lengths, in place, both
// kernels.
func TestSqdiff(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 11))
		nan := float32(math.NaN())
		for n := range 70 {
			a, b := randSlice(rng, n), randSlice(rng, n)
			for _, inPlace := range []bool{false, true} {
				dst := make([]float32, n)
				x := a
				if inPlace {
					copy(dst, a)
					x = dst
				}
				lim := float32(math.Inf(1))
				if n > 0 && inPlace {
					// A limit that only one element (each in turn, in the
					// vector blocks and the tail) passes, or that NaN
					// does not.
					b2 := slices.Clone(b)
					for j := range n {
						for _, v := range []float32{1e3, -1e3, nan} {
							b2[j] = v
							copy(dst, a)
							want := !(v != v)
							if got := sqdiff(dst, dst, b2, 100); got != want {
								t.Fatalf("n=%d: b[%d]=%v: outside %v, want %v", n, j, v, got, want)
							}
							b2[j] = b[j]
						}
					}
					copy(dst, a)
				}
				if sqdiff(dst, x, b, lim) {
					t.Fatalf("n=%d: outside an infinite limit", n)
				}
				for i := range n {
					v := a[i] - b[i]
					if want := v * v; dst[i] != want {
						t.Fatalf("n=%d inPlace=%v: (%v-%v)² = %v, want %v", n, inPlace, a[i], b[i], dst[i], want)
					}
				}
			}
		}
	})
}

// TestOneRowMatchesBatch: a row scored alone (the one-message path: the
// kernels' one-row tail, or gemvAVX512) gets the same bits as in a batch
// (their full tiles), for widths with 1-19 panels (two gemv calls above
// 16), full and ragged, with and without ReLU, with every kernel: a
// message's score does not depend on how it was batched.
func TestOneRowMatchesBatch(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 5))
		var p packed
		const n = 13
		for _, k := range []int{1, 16, 30, 64} {
			for _, c := range []int{16, 33, 64, 80, 130, 200, 256, 272, 300} {
				for _, relu := range []bool{false, true} {
					in := randSlice(rng, n*k)
					w, b := randSlice(rng, k*c), randSlice(rng, c)
					p.pack(w, k, c)
					batch := make([]float32, n*c)
					dense(batch, in, &p, b, n, k, c, relu)
					one := make([]float32, c)
					for r := range n {
						dense(one, in[r*k:], &p, b, 1, k, c, relu)
						for j := range c {
							if math.Float32bits(one[j]) != math.Float32bits(batch[r*c+j]) {
								t.Fatalf("k=%d c=%d relu=%v row %d col %d: alone %v, in a batch %v", k, c, relu, r, j, one[j], batch[r*c+j])
							}
						}
					}
				}
			}
		}
	})
}

// TestLogsAtLeast1 checks the batch logarithm against math.Log for every
// length up to 70 (full vectors and ragged tails), that an element's
// result does not depend on where it sits (the masked tail computes as the
// full vectors do), and that nothing past the slice is written.
func TestLogsAtLeast1(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(12, 12))
		xs := []float32{1, 1.0000001, 1.4142135, 1.4142137, 2, 3, 7.999999, 8, 130, 1e6, 3e38}
		for range 200 {
			xs = append(xs, float32(math.Exp(rng.Float64()*12)))
		}
		alone := make([]float32, len(xs))
		for i, x := range xs {
			one := []float32{x}
			logsAtLeast1(one)
			alone[i] = one[0]
			if want := math.Log(float64(x)); math.Abs(float64(one[0])-want) > 2e-7*math.Max(want, 1) {
				t.Fatalf("log(%v) = %v, want %v", x, one[0], want)
			}
		}
		for n := range 70 {
			off := rng.IntN(len(xs) - n)
			buf := make([]float32, n+1)
			copy(buf, xs[off:off+n])
			buf[n] = 42
			logsAtLeast1(buf[:n])
			for i := range n {
				if buf[i] != alone[off+i] {
					t.Fatalf("n=%d: log(%v) = %v at position %d, %v alone", n, xs[off+i], buf[i], i, alone[off+i])
				}
			}
			if buf[n] != 42 {
				t.Fatalf("n=%d: wrote past the slice", n)
			}
		}
	})
}

// TestAddRows checks the sparse-row sum against adding the rows one after
// another (bit for bit: the same order of additions) for widths of 8 to
// 136 (blocks of 32 columns and their 8-column tails) and 1 to 7 rows, and
// that nothing past h is written.
func TestAddRows(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 13))
		for width := 8; width <= 136; width += 8 {
			w := randSlice(rng, 40*width)
			for k := 1; k <= 7; k++ {
				offs := make([]int, k)
				for j := range offs {
					offs[j] = rng.IntN(40) * width
				}
				h := append(randSlice(rng, width), 42)
				want := append([]float32(nil), h[:width]...)
				for _, o := range offs {
					for i := range want {
						want[i] += w[o+i]
					}
				}
				addRows(h[:width], w, offs)
				for i := range width {
					if h[i] != want[i] {
						t.Fatalf("width %d, %d rows: column %d = %v, want %v", width, k, i, h[i], want[i])
					}
				}
				if h[width] != 42 {
					t.Fatalf("width %d, %d rows: wrote past h", width, k)
				}
			}
		}
	})
}

// TestExpSum checks the heads' log-sum-exp parts against float64 for
// lengths 1 to 70 (full vectors and every ragged tail), with the
// largest logit at the start, the end and in the tail, -Inf-like and huge
// gaps (the polynomial's lower limit), and that elements past the slice,
// however large, are not read into the max or the sum.
func TestExpSum(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 13))
		for n := 1; n <= 70; n++ {
			for trial := range 6 {
				buf := make([]float32, n+16)
				for i := range buf {
					buf[i] = float32(rng.NormFloat64() * 4)
				}
				switch trial {
				case 1:
					buf[0] = 30
				case 2:
					buf[n-1] = 30
				case 3:
					buf[n-1-rng.IntN(min(n, 15))] = -200 // exp underflows to 0
				case 4:
					for i := range n {
						buf[i] = -3e4 * float32(i) // gaps past the lower limit
					}
				}
				for i := n; i < len(buf); i++ {
					buf[i] = 1e30 // past the slice: must not count
				}
				mx, s := expSum(buf[:n])
				wantMx := float64(buf[0])
				for _, v := range buf[:n] {
					wantMx = math.Max(wantMx, float64(v))
				}
				wantS := 0.0
				for _, v := range buf[:n] {
					wantS += math.Exp(float64(v) - wantMx)
				}
				if float64(mx) != wantMx || !(math.Abs(float64(s)-wantS) <= 4e-7*wantS*math.Sqrt(float64(n))) { // NaN fails
					t.Fatalf("n=%d trial %d: (%v, %v), want (%v, %v)", n, trial, mx, s, wantMx, wantS)
				}
			}
		}
	})
}
