package ae

import (
	"fmt"
	"math"

	"github.com/viterin/vek/vek32"
)

//go:generate sh -c "cd internal/asmgen && go run . -out ../../dense_amd64.s -stubs ../../dense_amd64_stub.go -pkg ae"

// panelWidth is the number of output columns a packed panel holds: two
// AVX2 vectors, the width of the assembly kernel's tiles.
const panelWidth = 16

// packed holds one layer's weights laid out for dense: the output columns
// are cut into panels of 16, each stored as its k rows of 16 weights
// (zero-padded past the layer's width), so that the kernel streams a panel
// front to back. It is built once per weight change (refresh), never per
// call. Biases are read from Model.B as they are, so that a change to B
// takes effect at once, as it always has.
type packed struct {
	k, c, panels int
	w            []float32 // panels × 16k
	// mask selects the valid columns of the last panel when c is not a
	// multiple of 16 (-1 valid, 0 not); nil otherwise. lastBits is the same
	// as a bit mask (bit j: column j valid), 0 when every panel is full.
	mask     []int32
	lastBits uint16
}

// pack lays out w (k×c, row-major) into p, reusing its memory.
func (p *packed) pack(w []float32, k, c int) {
	p.k, p.c = k, c
	p.panels = (c + panelWidth - 1) / panelWidth
	size := p.panels * panelWidth * k
	if cap(p.w) < size {
		p.w = make([]float32, size)
	}
	p.w = p.w[:size]
	clear(p.w)
	for q := range p.panels {
		j0 := q * panelWidth
		j1 := min(c, j0+panelWidth)
		dst := p.w[q*panelWidth*k:]
		for i := range k {
			copy(dst[i*panelWidth:i*panelWidth+j1-j0], w[i*c+j0:i*c+j1])
		}
	}
	// The mask's memory is reused too: training packs a gradient on every
	// step.
	mask := p.mask[:0]
	p.mask, p.lastBits = nil, 0
	if r := c % panelWidth; r != 0 {
		if cap(mask) < panelWidth {
			mask = make([]int32, panelWidth)
		}
		p.mask = mask[:panelWidth]
		for j := range panelWidth {
			p.mask[j] = 0
			if j < r {
				p.mask[j] = -1
			}
		}
		p.lastBits = 1<<r - 1
	}
}

// clone returns a deep copy.
func (p *packed) clone() packed {
	c := *p
	c.w = append([]float32(nil), p.w...)
	c.mask = append([]int32(nil), p.mask...)
	if p.mask == nil {
		c.mask = nil
	}
	return c
}

// useAsm selects the assembly kernels (AVX2 and FMA), useAVX512 the
// AVX-512 form of the dense one; they are false where the CPU lacks them
// or under the purego build tag, and tests switch them off to check every
// kernel on the same machine.
var (
	useAsm    = haveAsm
	useAVX512 = haveAVX512
)

// dense writes act(in · W + bias) into out for n rows, where in has row
// stride lda and out row stride ldc (both in elements), W is packed in p,
// bias has W's width, and act is ReLU when relu is set, else the identity.
func dense(out, in []float32, p *packed, bias []float32, n, lda, ldc int, relu bool) {
	if n <= 0 {
		return
	}
	bias = bias[:p.c]
	if p.k == 0 {
		for r := range n {
			o := out[r*ldc : r*ldc+p.c]
			for j, v := range bias {
				if relu {
					v = max(v, 0)
				}
				o[j] = v
			}
		}
		return
	}
	// The kernels index in and out without bounds checks: check the
	// extents once here.
	_ = in[(n-1)*lda+p.k-1]
	_ = out[(n-1)*ldc+p.c-1]
	if useAsm {
		denseAsm(out, in, p, bias, n, lda, ldc, relu, useAVX512)
		return
	}
	denseGo(out, in, p, bias, n, lda, ldc, relu)
}

// denseGo is the portable kernel: per row and panel, 16 accumulators
// started at the biases.
func denseGo(out, in []float32, p *packed, bias []float32, n, lda, ldc int, relu bool) {
	k := p.k
	ps := panelWidth * k
	for r := range n {
		a := in[r*lda : r*lda+k]
		o := out[r*ldc : r*ldc+p.c]
		for q := range p.panels {
			pw := p.w[q*ps : (q+1)*ps]
			var acc [panelWidth]float32
			copy(acc[:], bias[q*panelWidth:])
			for i, x := range a {
				// An array pointer: no bounds checks in the inner loop
				// (1.5x faster).
				row := (*[panelWidth]float32)(pw[i*panelWidth:])
				for j := range acc {
					acc[j] += x * row[j]
				}
			}
			if relu {
				for j, v := range acc {
					acc[j] = max(v, 0)
				}
			}
			copy(o[q*panelWidth:], acc[:])
		}
	}
}

// clamp writes src limited to [lo, hi] into dst (which may be src); NaN
// stays NaN.
func clamp(dst, src []float32, lo, hi float32) {
	src = src[:len(dst)]
	n := 0
	if useAsm {
		n = len(dst) &^ 7
		clampAsm(dst[:n], src[:n], lo, hi)
	}
	for i := n; i < len(dst); i++ {
		v := src[i]
		if v < lo {
			v = lo
		} else if v > hi {
			v = hi
		}
		dst[i] = v
	}
}

// rootScaled writes sqrt(max(e[i] * scale[i], 0)) into dst[i]; dst may
// be e. NaN stays NaN, and -0 stays -0, as clamp then a square root leave
// them.
func rootScaled(dst, e, scale []float32) {
	e, scale = e[:len(dst)], scale[:len(dst)]
	n := 0
	if useAsm {
		n = len(dst) &^ 7
		rootScaledAsm(dst[:n], e[:n], scale[:n])
	}
	for i := n; i < len(dst); i++ {
		dst[i] = rootAtLeast0(e[i] * scale[i])
	}
}

// rootAtLeast0 is sqrt(max(v, 0)) with clamp's NaN and zeros: a float32
// square root through float64 is correctly rounded.
func rootAtLeast0(v float32) float32 {
	if v < 0 {
		v = 0
	}
	return float32(math.Sqrt(float64(v)))
}

// sqdiff writes (a[i] - b[i])² into dst[i] (dst may be a or b) and
// reports whether some |b[i]| exceeds lim (NaN does not).
func sqdiff(dst, a, b []float32, lim float32) bool {
	a, b = a[:len(dst)], b[:len(dst)]
	n := 0
	outside := false
	if useAsm {
		n = len(dst) &^ 7
		outside = sqdiffAsm(dst[:n], a[:n], b[:n], lim)
	}
	for i := n; i < len(dst); i++ {
		outside = outside || abs32(b[i]) > lim // before dst, which may be b
		v := a[i] - b[i]
		dst[i] = v * v
	}
	return outside
}

func abs32(x float32) float32 {
	return math.Float32frombits(math.Float32bits(x) &^ (1 << 31))
}

// reluGrad sets g[i] to 0 where act[i] <= 0: the gradient through the
// ReLU that produced act (a NaN activation keeps its gradient).
func reluGrad(g, act []float32) {
	act = act[:len(g)]
	n := 0
	if useAsm {
		n = len(g) &^ 7
		reluGradAsm(g[:n], act[:n])
	}
	for i := n; i < len(g); i++ {
		if act[i] <= 0 {
			g[i] = 0
		}
	}
}

// logSumExp returns log Σ exp(z[i]) for len(z) ≥ 1, computed as
// max + log Σ exp(z[i] - max) so that large logits cannot overflow.
func logSumExp(z []float32) float32 {
	mx, s := expSum(z)
	return mx + logAtLeast1(s)
}

// expSum returns the largest of z (len(z) ≥ 1) and Σ exp(z[i] - max),
// which is at least 1: the parts of a log-sum-exp, so that a caller can
// take the logarithms of many sums in one loop. The assembly kernel's exp
// is a polynomial within about 1 ulp of the true value; the portable path
// uses math.Exp.
func expSum(z []float32) (mx, s float32) {
	if useAsm {
		return lseAsm(z)
	}
	mx = z[0]
	for _, v := range z[1:] {
		mx = max(mx, v)
	}
	for _, v := range z {
		s += float32(math.Exp(float64(v - mx)))
	}
	return mx, s
}

// addRows adds to h the rows of w that start at offs (in elements), each
// len(h) long, in order: the first layer's active sparse inputs of one
// record. The kernel takes them all in one call (vek32.Add_Inplace one
// call a row spent a sixth of the forward pass on its call overhead).
func addRows(h, w []float32, offs []int) {
	for _, o := range offs {
		if o < 0 || o > len(w)-len(h) {
			panic(fmt.Sprintf("ae: sparse row at %d outside %d weights", o, len(w)))
		}
	}
	if useAsm && len(h)%8 == 0 && len(offs) > 0 {
		addRowsAsm(h, w, offs)
		return
	}
	for _, o := range offs {
		vek32.Add_Inplace(h, w[o:o+len(h)])
	}
}

// logsAtLeast1 replaces each x[i] (finite, ≥ 1) by its natural logarithm:
// logAVX2 eight at a time, or logAtLeast1 one at a time.
func logsAtLeast1(x []float32) {
	if useAsm {
		logAsm(x)
		return
	}
	for i, v := range x {
		x[i] = logAtLeast1(v)
	}
}

// logAtLeast1 is the natural logarithm of a finite x ≥ 1 (a sum of
// exponentials whose largest term is 1) in float32: Cephes' logf, within
// about 1 ulp, without math.Log's float64 round trip (which took a third
// of the log-sum-exp).
func logAtLeast1(x float32) float32 {
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23) - 126) // x = m·2^e, m in [0.5, 1)
	m := math.Float32frombits(bits&0x807fffff | 0x3f000000)
	if m < 0.70710678118654752 {
		e--
		m = m + m - 1
	} else {
		m = m - 1
	}
	z := m * m
	y := ((((((((7.0376836292e-2*m-1.1514610310e-1)*m+1.1676998740e-1)*m-1.2420140846e-1)*m+1.4249322787e-1)*m-1.6668057665e-1)*m+2.0000714765e-1)*m-2.4999993993e-1)*m + 3.3333331174e-1) * m * z
	y += -2.12194440e-4 * e
	y += -0.5 * z
	return m + y + 0.693359375*e
}
