//go:build amd64 && !purego

package ae

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAsm: the kernels in dense_amd64.s need AVX2 and FMA, denseAVX512
// AVX-512F too (cpu.X86 also checks that the OS saves those registers).
var (
	haveAsm    = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	haveAVX512 = haveAsm && cpu.X86.HasAVX512F
)

// denseAsm runs denseAVX2, or denseAVX512 when avx512; dense has checked
// the slices' extents.
func denseAsm(out, in []float32, p *packed, bias []float32, n, lda, ldc int, relu, avx512 bool) {
	if avx512 && n == 1 {
		// One row (a message scored alone): gemvAVX512 runs up to 16
		// panels' accumulators side by side instead of one at a time.
		ps := panelWidth * p.k
		for q := 0; q < p.panels; q += 16 {
			g := min(16, p.panels-q)
			mask := uint16(0xffff)
			if q+g == p.panels && p.lastBits != 0 {
				mask = p.lastBits
			}
			gemvAVX512(unsafe.SliceData(in), &p.w[q*ps], &bias[q*panelWidth], &out[q*panelWidth], p.k, g, mask, relu)
		}
		return
	}
	if avx512 {
		denseAVX512(unsafe.SliceData(in), unsafe.SliceData(p.w), unsafe.SliceData(bias), unsafe.SliceData(out), lda, ldc, n, p.k, p.panels, p.lastBits, relu)
		return
	}
	var mask *int32
	if p.mask != nil {
		mask = unsafe.SliceData(p.mask)
	}
	denseAVX2(unsafe.SliceData(in), unsafe.SliceData(p.w), unsafe.SliceData(bias), unsafe.SliceData(out), lda, ldc, n, p.k, p.panels, mask, relu)
}

// clampAsm runs clampAVX2 on len(dst), a multiple of 8.
func clampAsm(dst, src []float32, lo, hi float32) {
	if len(dst) > 0 {
		clampAVX2(unsafe.SliceData(dst), unsafe.SliceData(src), len(dst), lo, hi)
	}
}

// rootScaledAsm runs rootScaledAVX2 on len(dst), a multiple of 8.
func rootScaledAsm(dst, e, scale []float32) {
	if len(dst) > 0 {
		rootScaledAVX2(unsafe.SliceData(dst), unsafe.SliceData(e), unsafe.SliceData(scale), len(dst))
	}
}

// sqdiffAsm runs sqdiffAVX2 on len(dst), a multiple of 8.
func sqdiffAsm(dst, a, b []float32, lim float32) bool {
	if len(dst) == 0 {
		return false
	}
	return sqdiffAVX2(unsafe.SliceData(dst), unsafe.SliceData(a), unsafe.SliceData(b), len(dst), lim) != 0
}

// adamAsm runs adamAVX2 on len(w), a multiple of 8; adam has checked the
// lengths.
func adamAsm(w, g0, g1, mom, vel []float32, alpha, decay float32) {
	if len(w) > 0 {
		adamAVX2(unsafe.SliceData(w), unsafe.SliceData(g0), unsafe.SliceData(g1), unsafe.SliceData(mom), unsafe.SliceData(vel), len(w), alpha, decay)
	}
}

// reluGradAsm runs reluGradAVX2 on len(g), a multiple of 8.
func reluGradAsm(g, act []float32) {
	if len(g) > 0 {
		reluGradAVX2(unsafe.SliceData(g), unsafe.SliceData(act), len(g))
	}
}

// lseAsm runs lseAVX2 on z (len(z) ≥ 1).
func lseAsm(z []float32) (mx, sum float32) {
	return lseAVX2(unsafe.SliceData(z), len(z))
}

// logAsm runs logAVX2 on x.
func logAsm(x []float32) {
	if len(x) > 0 {
		logAVX2(unsafe.SliceData(x), len(x))
	}
}

// addRowsAsm runs addRowsAVX2; addRows has checked the extents.
func addRowsAsm(h, w []float32, offs []int) {
	addRowsAVX2(unsafe.SliceData(h), unsafe.SliceData(w), unsafe.SliceData(offs), len(offs), len(h))
}
