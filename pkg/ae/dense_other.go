//go:build !amd64 || purego

package ae

// haveAsm is false: this build has no assembly kernel (another
// architecture, or the purego tag).
const haveAsm, haveAVX512 = false, false

func denseAsm(out, in []float32, p *packed, bias []float32, n, lda, ldc int, relu, avx512 bool) {
	panic("ae: no assembly kernel in this build")
}

func clampAsm(dst, src []float32, lo, hi float32) {
	panic("ae: no assembly kernel in this build")
}

func rootScaledAsm(dst, e, scale []float32) {
	panic("ae: no assembly kernel in this build")
}

func sqdiffAsm(dst, a, b []float32, lim float32) bool {
	panic("ae: no assembly kernel in this build")
}

func adamAsm(w, g0, g1, mom, vel []float32, alpha, decay float32) {
	panic("ae: no assembly kernel in this build")
}

func reluGradAsm(g, act []float32) {
	panic("ae: no assembly kernel in this build")
}

func lseAsm(z []float32) (mx, sum float32) {
	panic("ae: no assembly kernel in this build")
}

func logAsm(x []float32) {
	panic("ae: no assembly kernel in this build")
}

func addRowsAsm(h, w []float32, offs []int) {
	panic("ae: no assembly kernel in this build")
}
