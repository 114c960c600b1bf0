//go:build amd64 && !purego

package ae

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAsm: the kernel in dense_amd64.s needs AVX2 and FMA (and the OS
// saving YMM state, which cpu.X86.HasAVX2 already checks).
var haveAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// denseAsm runs denseAVX2; dense has checked the slices' extents.
func denseAsm(out, in []float32, p *packed, bias []float32, n, lda, ldc int, relu bool) {
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

// sqdiffAsm runs sqdiffAVX2 on len(dst), a multiple of 8.
func sqdiffAsm(dst, a, b []float32) {
	if len(dst) > 0 {
		sqdiffAVX2(unsafe.SliceData(dst), unsafe.SliceData(a), unsafe.SliceData(b), len(dst))
	}
}
