// Command asmgen writes pkg/ae's AVX2+FMA dense-layer kernel
// (dense_amd64.s and its Go declaration) with avo. It lives in its own
// module so that avo is not a dependency of the main module; run it through
// `go generate ./pkg/ae`.
package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The kernel computes rows of out = act(in · W + bias) a 6×16 tile at a
// time: 12 YMM accumulators, two weight vectors and one broadcast input.
const (
	mr = 6  // rows per tile
	nr = 16 // columns per panel (two YMM vectors)
)

func main() {
	ConstraintExpr("amd64,!purego")
	TEXT("denseAVX2", NOSPLIT, "func(a, w, bias, c *float32, lda, ldc, rows, k, panels int, mask *int32, relu bool)")
	Pragma("noescape")
	Doc(
		"denseAVX2 writes act(a · W + bias) into c for rows rows of a (row",
		"strides lda and ldc in elements) and panels packed panels of w, each",
		"k×16 weights, with 16 biases a panel. When mask is non-nil, the last",
		"panel's biases are loaded and its outputs stored through the 16-lane",
		"mask (0 or -1 per column), so bias needs only the layer's width.",
		"relu applies max(0, x). Requires AVX2 and FMA, rows ≥ 0, k ≥ 1,",
		"panels ≥ 1.",
	)
	rowTiles("", mr, tile)
	dense512()
	clamp()
	sqdiff()
	rootScaled()
	adam()
	reluGrad()
	lse()
	logs()
	addRows()
	gemv512()
	Generate()
}

// clamp emits clampAVX2(dst, src, n, lo, hi): dst[i] = src[i] limited to
// [lo, hi] for n a multiple of 8. VMAXPS and VMINPS return their second
// source operand when either is NaN; that is the element here, so NaN
// stays NaN, as in vek32's vector MaximumNumber/MinimumNumber.
func clamp() {
	TEXT("clampAVX2", NOSPLIT, "func(dst, src *float32, n int, lo, hi float32)")
	Pragma("noescape")
	Doc(
		"clampAVX2 writes src[i] limited to [lo, hi] into dst[i] for i < n, n a",
		"multiple of 8; NaN stays NaN. dst may be src. Requires AVX.",
	)
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	lo, hi := YMM(), YMM()
	VBROADCASTSS(NewParamAddr("lo", 24), lo)
	VBROADCASTSS(NewParamAddr("hi", 28), hi)
	bound := func(x VecVirtual) {
		VMAXPS(x, lo, x)
		VMINPS(x, hi, x)
	}
	elementwise("clamp", dst, n, []Register{src}, func(v VecVirtual, disp int) {
		VMOVUPS(Mem{Base: src, Disp: disp}, v)
	}, bound)
}

// sqdiff emits sqdiffAVX2(dst, a, b, n, lim): dst[i] = (a[i] - b[i])² for
// n a multiple of 8, one pass where vek32's Sub_Into and Mul_Into take three
// (its _Into forms copy first). It also returns nonzero when some |b[i]|
// exceeds lim (never for NaN): b holds a score's targets, and a model with
// soft targets measures those beyond where they begin (SoftFrom) again, in Go, which the
// kernel's one compare a vector spares every batch without them.
func sqdiff() {
	TEXT("sqdiffAVX2", NOSPLIT, "func(dst, a, b *float32, n int, lim float32) uint32")
	Pragma("noescape")
	Doc(
		"sqdiffAVX2 writes (a[i] - b[i])² into dst[i] for i < n, n a multiple",
		"of 8, and returns nonzero when |b[i]| > lim for some i (NaN is not).",
		"dst may be a or b. Requires AVX.",
	)
	dst := Load(Param("dst"), GP64())
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	n := Load(Param("n"), GP64())
	lim, acc := YMM(), YMM()
	VBROADCASTSS(NewParamAddr("lim", 32), lim)
	VXORPS(acc, acc, acc)
	abs := uconst("absMask", 0x7fffffff)
	elementwise("sqdiff", dst, n, []Register{a, b}, func(v VecVirtual, disp int) {
		t := YMM()
		VMOVUPS(Mem{Base: b, Disp: disp}, t)
		VMOVUPS(Mem{Base: a, Disp: disp}, v)
		VSUBPS(t, v, v)
		VANDPS(abs, t, t)
		VCMPPS(U8(0x1e), lim, t, t) // GT_OQ: |b| > lim, false for NaN
		VORPS(t, acc, acc)
	}, func(v VecVirtual) {
		VMULPS(v, v, v)
	}, func() {
		r := GP32()
		VMOVMSKPS(acc, r)
		Store(r, ReturnIndex(0))
	})
}

// rootScaled emits rootScaledAVX2(dst, e, scale, n): dst[i] =
// sqrt(max(e[i] * scale[i], 0)), each field's contribution to a score
// (scale is 1/Norm), in one pass instead of a division, a clamp and a
// square root over the batch (three calls that took 3% of a message scored
// alone). The product and the root are correctly rounded (the square root
// it replaced, vek32's, was a reciprocal estimate and a Newton step, whose
// bits depend on the CPU), so the portable fallback gives the same bits; a
// product, not a quotient, because the root already keeps the divider
// busy. VMAXPS keeps x, as clampAVX2 does, when x is NaN or either zero.
func rootScaled() {
	TEXT("rootScaledAVX2", NOSPLIT, "func(dst, e, scale *float32, n int)")
	Pragma("noescape")
	Doc(
		"rootScaledAVX2 writes sqrt(max(e[i] * scale[i], 0)) into dst[i] for",
		"i < n, n a multiple of 8; NaN stays NaN. dst may be e. Requires AVX.",
	)
	dst := Load(Param("dst"), GP64())
	e := Load(Param("e"), GP64())
	scale := Load(Param("scale"), GP64())
	n := Load(Param("n"), GP64())
	zero := YMM()
	VXORPS(zero, zero, zero)
	elementwise("rootscaled", dst, n, []Register{e, scale}, func(v VecVirtual, disp int) {
		VMOVUPS(Mem{Base: e, Disp: disp}, v)
		VMULPS(Mem{Base: scale, Disp: disp}, v, v)
	}, func(v VecVirtual) {
		VMAXPS(v, zero, v)
		VSQRTPS(v, v)
	})
}

// elementwise emits the loop the one-pass element kernels share: four
// vectors (32 floats) at a time while n ≥ 32, then one at a time while
// n > 0 (n a multiple of 8). load fills v from the inputs at byte offset
// disp; finish completes it in place before it is stored at dst; epilogue,
// when given, runs after the loop (to store a result). The four
// loads come before the four finishes, so their latencies overlap. Each
// input pointer, then dst, advances; the function returns after.
func elementwise(name string, dst, n Register, ins []Register, load func(v VecVirtual, disp int), finish func(v VecVirtual), epilogue ...func()) {
	advance := func(bytes int) {
		for _, p := range append(ins, dst) {
			ADDQ(U8(bytes), p)
		}
	}
	Label(name + "32")
	CMPQ(n, U8(32))
	JL(LabelRef(name + "8"))
	v := [4]VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for i := range v {
		load(v[i], 32*i)
	}
	for i := range v {
		finish(v[i])
		VMOVUPS(v[i], Mem{Base: dst, Disp: 32 * i})
	}
	advance(128)
	SUBQ(U8(32), n)
	JMP(LabelRef(name + "32"))
	Label(name + "8")
	TESTQ(n, n)
	JZ(LabelRef(name + "done"))
	x := YMM()
	load(x, 0)
	finish(x)
	VMOVUPS(x, Mem{Base: dst})
	advance(32)
	SUBQ(U8(8), n)
	JMP(LabelRef(name + "8"))
	Label(name + "done")
	for _, e := range epilogue {
		e()
	}
	VZEROUPPER()
	RET()
}

// tile emits the code for m rows at aBlk/cBlk across every panel: the full
// panels with plain stores, then, when a mask is given, the last panel with
// masked stores.
func tile(m int, aBlk, cBlk, lda, ldc Register) {
	p := fmt.Sprintf("m%d", m)
	wp := Load(Param("w"), GP64())
	bp := Load(Param("bias"), GP64())
	cp := GP64()
	MOVQ(cBlk, cp)
	full := Load(Param("panels"), GP64())
	mask := Load(Param("mask"), GP64())
	TESTQ(mask, mask)
	JZ(LabelRef(p + "nomask"))
	DECQ(full)
	Label(p + "nomask")
	TESTQ(full, full)
	JZ(LabelRef(p + "last"))

	Label(p + "panel")
	panel(m, p+"full", aBlk, wp, bp, cp, lda, ldc, nil)
	ADDQ(U8(4*nr), cp)
	ADDQ(U8(4*nr), bp)
	DECQ(full)
	JNZ(LabelRef(p + "panel"))

	Label(p + "last")
	mask = Load(Param("mask"), GP64())
	TESTQ(mask, mask)
	JZ(LabelRef(p + "done"))
	panel(m, p+"masked", aBlk, wp, bp, cp, lda, ldc, mask)
	Label(p + "done")
}

// panel emits one m×16 tile: accumulators start at the panel's biases
// (bp; through the mask when there is one), the k loop adds
// a[r][kk]·W[kk][0:16] to row r, then relu and the stores. wp ends at the
// next panel.
func panel(m int, p string, aBlk, wp, bp, cp, lda, ldc, mask Register) {
	acc := make([][2]VecVirtual, m)
	b0, b1 := YMM(), YMM()
	if mask == nil {
		VMOVUPS(Mem{Base: bp}, b0)
		VMOVUPS(Mem{Base: bp, Disp: 32}, b1)
	} else {
		m0, m1 := YMM(), YMM()
		VMOVDQU(Mem{Base: mask}, m0)
		VMOVDQU(Mem{Base: mask, Disp: 32}, m1)
		VMASKMOVPS(Mem{Base: bp}, m0, b0)
		VMASKMOVPS(Mem{Base: bp, Disp: 32}, m1, b1)
	}
	for r := range acc {
		acc[r] = [2]VecVirtual{YMM(), YMM()}
		VMOVAPS(b0, acc[r][0])
		VMOVAPS(b1, acc[r][1])
	}
	// Row r of the tile: rows 0-2 off a0, rows 3-5 off a3, each at
	// base + (r%3)·lda.
	a0, a3 := GP64(), GP64()
	MOVQ(aBlk, a0)
	if m > 3 {
		LEAQ(Mem{Base: aBlk, Index: lda, Scale: 2}, a3)
		ADDQ(lda, a3)
	}
	row := func(base, a3 Register, r int) Mem {
		b := base
		if r >= 3 {
			b = a3
		}
		switch r % 3 {
		case 0:
			return Mem{Base: b}
		case 1:
			return Mem{Base: b, Index: lda, Scale: 1}
		default:
			return Mem{Base: b, Index: lda, Scale: 2}
		}
	}
	kc := Load(Param("k"), GP64())
	Label(p + "k")
	w0, w1, x := YMM(), YMM(), YMM()
	VMOVUPS(Mem{Base: wp}, w0)
	VMOVUPS(Mem{Base: wp, Disp: 32}, w1)
	for r := range m {
		VBROADCASTSS(row(a0, a3, r), x)
		VFMADD231PS(w0, x, acc[r][0])
		VFMADD231PS(w1, x, acc[r][1])
	}
	ADDQ(U8(4*nr), wp)
	ADDQ(U8(4), a0)
	if m > 3 {
		ADDQ(U8(4), a3)
	}
	DECQ(kc)
	JNZ(LabelRef(p + "k"))

	relu := Load(Param("relu"), GP8())
	TESTB(relu, relu)
	JZ(LabelRef(p + "store"))
	zero := YMM()
	VXORPS(zero, zero, zero)
	for r := range m {
		VMAXPS(zero, acc[r][0], acc[r][0])
		VMAXPS(zero, acc[r][1], acc[r][1])
	}
	Label(p + "store")
	c3 := GP64()
	if m > 3 {
		LEAQ(Mem{Base: cp, Index: ldc, Scale: 2}, c3)
		ADDQ(ldc, c3)
	}
	crow := func(r int) Mem {
		b := cp
		if r >= 3 {
			b = c3
		}
		switch r % 3 {
		case 0:
			return Mem{Base: b}
		case 1:
			return Mem{Base: b, Index: ldc, Scale: 1}
		default:
			return Mem{Base: b, Index: ldc, Scale: 2}
		}
	}
	if mask == nil {
		for r := range m {
			VMOVUPS(acc[r][0], crow(r))
			VMOVUPS(acc[r][1], crow(r).Offset(32))
		}
		return
	}
	m0, m1 := YMM(), YMM()
	VMOVDQU(Mem{Base: mask}, m0)
	VMOVDQU(Mem{Base: mask, Disp: 32}, m1)
	for r := range m {
		VMASKMOVPS(acc[r][0], m0, crow(r))
		VMASKMOVPS(acc[r][1], m1, crow(r).Offset(32))
	}
}

// The AVX-512 kernel uses the same packed panels, one ZMM vector per panel
// row, in tiles of mr512 rows: 12 accumulators, the panel row, and the
// inputs broadcast straight from memory into the FMAs.
const mr512 = 12

// dense512 emits denseAVX512, the AVX-512 form of denseAVX2: lastMask has
// bit j set for each valid column of the last panel (0: every panel full).
func dense512() {
	TEXT("denseAVX512", NOSPLIT, "func(a, w, bias, c *float32, lda, ldc, rows, k, panels int, lastMask uint16, relu bool)")
	Pragma("noescape")
	Doc(
		"denseAVX512 is denseAVX2 for AVX-512F: 12×16 tiles, and the last",
		"panel's biases and outputs go through lastMask (bit j: column j",
		"valid) when it is non-zero. Requires AVX512F, rows ≥ 0, k ≥ 1,",
		"panels ≥ 1.",
	)
	rowTiles("z_", mr512, tile512)
}

// rowTiles emits the body of a dense kernel over its rows: full tiles of
// mr rows, then one tail tile of 1..mr-1 rows, each emitted by tile
// (labels begin with prefix, unique to the kernel).
func rowTiles(prefix string, mr int, tile func(m int, aBlk, cBlk, lda, ldc Register)) {
	aBlk := Load(Param("a"), GP64())
	cBlk := Load(Param("c"), GP64())
	lda := Load(Param("lda"), GP64())
	ldc := Load(Param("ldc"), GP64())
	rows := Load(Param("rows"), GP64())
	SHLQ(U8(2), lda) // bytes
	SHLQ(U8(2), ldc)
	Label(prefix + "rowloop")
	CMPQ(rows, U32(mr))
	JL(LabelRef(prefix + "tail"))
	tile(mr, aBlk, cBlk, lda, ldc)
	// Advance mr rows: a += mr*lda, c += mr*ldc.
	t := GP64()
	IMUL3Q(U32(mr), lda, t)
	ADDQ(t, aBlk)
	IMUL3Q(U32(mr), ldc, t)
	ADDQ(t, cBlk)
	SUBQ(U32(mr), rows)
	JMP(LabelRef(prefix + "rowloop"))
	Label(prefix + "tail")
	for m := 1; m < mr; m++ {
		CMPQ(rows, U32(m))
		JE(LabelRef(fmt.Sprintf("%stail%d", prefix, m)))
	}
	VZEROUPPER()
	RET()
	for m := 1; m < mr; m++ {
		Label(fmt.Sprintf("%stail%d", prefix, m))
		tile(m, aBlk, cBlk, lda, ldc)
		VZEROUPPER()
		RET()
	}
}

// tile512 emits m rows across every panel: full panels, then the masked
// last one when lastMask is non-zero.
func tile512(m int, aBlk, cBlk, lda, ldc Register) {
	p := fmt.Sprintf("z_m%d", m)
	wp := Load(Param("w"), GP64())
	bp := Load(Param("bias"), GP64())
	cp := GP64()
	MOVQ(cBlk, cp)
	full := Load(Param("panels"), GP64())
	CMPW(NewParamAddr("lastMask", 72), U16(0))
	JE(LabelRef(p + "nomask"))
	DECQ(full)
	Label(p + "nomask")
	TESTQ(full, full)
	JZ(LabelRef(p + "last"))
	Label(p + "panel")
	panel512(m, p+"full", aBlk, wp, bp, cp, lda, ldc, false)
	ADDQ(U8(4*nr), cp)
	ADDQ(U8(4*nr), bp)
	DECQ(full)
	JNZ(LabelRef(p + "panel"))
	Label(p + "last")
	CMPW(NewParamAddr("lastMask", 72), U16(0))
	JE(LabelRef(p + "done"))
	panel512(m, p+"masked", aBlk, wp, bp, cp, lda, ldc, true)
	Label(p + "done")
}

// panel512 emits one m×16 tile with ZMM accumulators; with masked, the
// biases are loaded and the outputs stored through K1 = lastMask.
func panel512(m int, p string, aBlk, wp, bp, cp, lda, ldc Register, masked bool) {
	b := ZMM()
	if masked {
		KMOVW(NewParamAddr("lastMask", 72), K1)
		VMOVUPS_Z(Mem{Base: bp}, K1, b)
	} else {
		VMOVUPS(Mem{Base: bp}, b)
	}
	acc := make([]VecVirtual, m)
	for r := range acc {
		acc[r] = ZMM()
		VMOVAPS(b, acc[r])
	}
	bases, rowMem := strided(aBlk, lda, m)
	kc := Load(Param("k"), GP64())
	Label(p + "k")
	w := ZMM()
	VMOVUPS(Mem{Base: wp}, w)
	for r := range m {
		VFMADD231PS_BCST(rowMem(r), w, acc[r])
	}
	ADDQ(U8(4*nr), wp)
	for _, b := range bases {
		ADDQ(U8(4), b)
	}
	DECQ(kc)
	JNZ(LabelRef(p + "k"))

	relu := Load(Param("relu"), GP8())
	TESTB(relu, relu)
	JZ(LabelRef(p + "store"))
	zero := ZMM()
	VPXORD(zero, zero, zero)
	for r := range m {
		VMAXPS(zero, acc[r], acc[r])
	}
	Label(p + "store")
	_, dstMem := strided(cp, ldc, m)
	for r := range m {
		dst := dstMem(r)
		if masked {
			VMOVUPS(acc[r], K1, dst)
		} else {
			VMOVUPS(acc[r], dst)
		}
	}
}

// adam emits adamAVX2: one AdamW step on n parameters (n a multiple of 8)
// from the sum of the two shards' gradients, with the products and sums
// in the order of pkg/ae's Go loop (no FMA), so both give the same bits.
func adam() {
	TEXT("adamAVX2", NOSPLIT, "func(w, g0, g1, mom, vel *float32, n int, alpha, decay float32)")
	Pragma("noescape")
	Doc(
		"adamAVX2 takes one AdamW step for i < n, n a multiple of 8: with",
		"g = g0[i] + g1[i], mom[i] = 0.9 mom[i] + 0.1 g, vel[i] = 0.999 vel[i] +",
		"(0.001 g) g, w[i] = w[i] decay - alpha mom[i] / (sqrt(vel[i]) + 1e-8).",
		"Requires AVX.",
	)
	w := Load(Param("w"), GP64())
	g0 := Load(Param("g0"), GP64())
	g1 := Load(Param("g1"), GP64())
	mom := Load(Param("mom"), GP64())
	vel := Load(Param("vel"), GP64())
	n := Load(Param("n"), GP64())
	alpha, decay := YMM(), YMM()
	VBROADCASTSS(NewParamAddr("alpha", 48), alpha)
	VBROADCASTSS(NewParamAddr("decay", 52), decay)
	konst := func(name string, v float32) VecVirtual {
		c := GLOBL(name, RODATA|NOPTR)
		DATA(0, F32(v))
		r := YMM()
		VBROADCASTSS(c, r)
		return r
	}
	b1, c1 := konst("adamB1", 0.9), konst("adamC1", 1-0.9)
	b2, c2 := konst("adamB2", 0.999), konst("adamC2", 1-0.999)
	eps := konst("adamEps", 1e-8)
	Label("adam8")
	TESTQ(n, n)
	JZ(LabelRef("adamdone"))
	g, m, v, t, u := YMM(), YMM(), YMM(), YMM(), YMM()
	VMOVUPS(Mem{Base: g0}, g)
	VADDPS(Mem{Base: g1}, g, g)
	VMULPS(Mem{Base: mom}, b1, m)
	VMULPS(g, c1, t)
	VADDPS(t, m, m)
	VMOVUPS(m, Mem{Base: mom})
	VMULPS(Mem{Base: vel}, b2, v)
	VMULPS(g, c2, t)
	VMULPS(g, t, t)
	VADDPS(t, v, v)
	VMOVUPS(v, Mem{Base: vel})
	VSQRTPS(v, u)
	VADDPS(eps, u, u)
	VMULPS(m, alpha, t)
	VDIVPS(u, t, t)
	VMULPS(Mem{Base: w}, decay, u)
	VSUBPS(t, u, u)
	VMOVUPS(u, Mem{Base: w})
	for _, r := range []Register{w, g0, g1, mom, vel} {
		ADDQ(U8(32), r)
	}
	SUBQ(U8(8), n)
	JMP(LabelRef("adam8"))
	Label("adamdone")
	VZEROUPPER()
	RET()
}

// reluGrad emits reluGradAVX2(grad, act, n): grad[i] = 0 where act[i] <= 0, for
// n a multiple of 8, branch-free (the Go loop's branch on the sign of
// ReLU outputs mispredicts half the time). The compare, !(0 >= act[i]), is true
// for NaN, so a NaN activation keeps its gradient as the Go loop does.
func reluGrad() {
	TEXT("reluGradAVX2", NOSPLIT, "func(grad, act *float32, n int)")
	Pragma("noescape")
	Doc(
		"reluGradAVX2 sets grad[i] to 0 where act[i] <= 0, for i < n, n a",
		"multiple of 8. Requires AVX.",
	)
	// Not "g": that names a register in Go assembly.
	g := Load(Param("grad"), GP64())
	act := Load(Param("act"), GP64())
	n := Load(Param("n"), GP64())
	zero := YMM()
	VXORPS(zero, zero, zero)
	Label("relug8")
	TESTQ(n, n)
	JZ(LabelRef("relugdone"))
	m := YMM()
	VCMPPS(U8(9), Mem{Base: act}, zero, m) // NGE_US: !(0 >= act[i])
	VANDPS(Mem{Base: g}, m, m)
	VMOVUPS(m, Mem{Base: g})
	ADDQ(U8(32), g)
	ADDQ(U8(32), act)
	SUBQ(U8(8), n)
	JMP(LabelRef("relug8"))
	Label("relugdone")
	VZEROUPPER()
	RET()
}

// vconst returns v repeated in 8 lanes as a new read-only global called
// name, for use as a 256-bit memory operand (registers are scarce: AVX2
// has 16).
func vconst(name string, v float32) Mem {
	return uconst(name, math.Float32bits(v)) // as bits: the assembler reads $(1) as the integer 1
}

// uconst is vconst for 32-bit integers (and bit patterns).
func uconst(name string, v uint32) Mem {
	c := GLOBL(name, RODATA|NOPTR)
	for i := range 8 {
		DATA(4*i, U32(v))
	}
	return c
}

// laneMasks is the table tailMask reads, declared by its first use: 8
// lanes of ones, then 8 of zeros.
var laneMasks *Mem

// tailMask loads the mask of lanes [0, n%8) (the ragged tail of n
// elements) into a new register, and n/8 (the full vectors) into another.
func tailMask(n Register) (VecVirtual, GPVirtual) {
	if laneMasks == nil {
		m := GLOBL("laneMasks", RODATA|NOPTR)
		for i := range 16 {
			v := uint32(0)
			if i < 8 {
				v = 0xffffffff
			}
			DATA(4*i, U32(v))
		}
		laneMasks = &m
	}
	// From laneMasks[8-n%8].
	tm := YMM()
	r := GP64()
	MOVQ(n, r)
	ANDQ(U8(7), r)
	NEGQ(r)
	mb := GP64()
	LEAQ(*laneMasks, mb)
	VMOVDQU(Mem{Base: mb, Index: r, Scale: 4, Disp: 32}, tm)
	full := GP64()
	MOVQ(n, full)
	SHRQ(U8(3), full)
	return tm, full
}

// strided gives the memory operands of n rows stride bytes apart (stride
// in a register) from first: row r at bases[r/3] + (r%3)·stride, so n
// rows take (n+2)/3 registers. The caller advances the bases.
func strided(first, stride Register, n int) ([]GPVirtual, func(r int) Mem) {
	bases := make([]GPVirtual, (n+2)/3)
	for i := range bases {
		bases[i] = GP64()
		if i == 0 {
			MOVQ(first, bases[i])
			continue
		}
		LEAQ(Mem{Base: bases[i-1], Index: stride, Scale: 2}, bases[i])
		ADDQ(stride, bases[i])
	}
	return bases, func(r int) Mem {
		switch r % 3 {
		case 0:
			return Mem{Base: bases[r/3]}
		case 1:
			return Mem{Base: bases[r/3], Index: stride, Scale: 1}
		default:
			return Mem{Base: bases[r/3], Index: stride, Scale: 2}
		}
	}
}

// lse emits lseAVX2(z, n) (mx, sum): the largest of z[0:n] and
// Σ exp(z[i] - mx), the parts of a log-sum-exp (the caller takes the one
// logarithm). exp is Cephes' expf: 2^k · p(r) with k = round(x·log2 e),
// r = x - k·ln 2 in two parts and a degree-5 polynomial, about 1 ulp; x
// is at most 0 here and limited below at -87.3 (exp is then 1e-38). The
// ragged tail is loaded through a mask: -inf for the max, and its lanes
// left out of the sum.
func lse() {
	TEXT("lseAVX2", NOSPLIT, "func(z *float32, n int) (mx, sum float32)")
	Pragma("noescape")
	Doc(
		"lseAVX2 returns the largest of z[0:n] and the sum of exp(z[i] - mx)",
		"(Cephes' expf, about 1 ulp). Requires AVX2, FMA and n ≥ 1.",
	)
	z := Load(Param("z"), GP64())
	n := Load(Param("n"), GP64())
	ninf := YMM()
	negInf := GLOBL("lseNegInf", RODATA|NOPTR)
	for i := range 8 {
		DATA(4*i, U32(math.Float32bits(float32(math.Inf(-1))))) // the assembler takes no $(-Inf)
	}
	VMOVUPS(negInf, ninf)
	tm, full := tailMask(n)

	// Pass 1: the max.
	mx := YMM()
	VMOVAPS(ninf, mx)
	p, k := GP64(), GP64()
	MOVQ(z, p)
	MOVQ(full, k)
	Label("lsemax")
	TESTQ(k, k)
	JZ(LabelRef("lsemaxtail"))
	VMAXPS(Mem{Base: p}, mx, mx)
	ADDQ(U8(32), p)
	DECQ(k)
	JMP(LabelRef("lsemax"))
	Label("lsemaxtail")
	x := YMM()
	VMASKMOVPS(Mem{Base: p}, tm, x)
	VBLENDVPS(tm, x, ninf, x) // x where the mask is set, else -inf
	VMAXPS(x, mx, mx)
	hmax := func(v VecVirtual) {
		t := YMM()
		VPERM2F128(U8(1), v, v, t)
		VMAXPS(t, v, v)
		VPERMILPS(U8(0x4e), v, t)
		VMAXPS(t, v, v)
		VPERMILPS(U8(0xb1), v, t)
		VMAXPS(t, v, v)
	}
	hmax(mx)

	// Pass 2: Σ exp(z - mx).
	log2e := vconst("lseLog2e", 1.44269504088896341)
	c1 := vconst("lseC1", 0.693359375)
	c2 := vconst("lseC2", -2.12194440e-4)
	lo := vconst("lseLo", -87.3365478515625)
	one := vconst("lseOne", 1)
	poly := []Mem{
		vconst("lseP0", 1.9875691500e-4),
		vconst("lseP1", 1.3981999507e-3),
		vconst("lseP2", 8.3334519073e-3),
		vconst("lseP3", 4.1665795894e-2),
		vconst("lseP4", 1.6666665459e-1),
		vconst("lseP5", 5.0000001201e-1),
	}
	bias := GLOBL("lseBias", RODATA|NOPTR)
	for i := range 8 {
		DATA(4*i, U32(127))
	}
	acc := YMM()
	VXORPS(acc, acc, acc)
	// expAdd adds exp(x - mx) to acc, ANDed with m when m is given.
	expAdd := func(x VecVirtual, m Op) {
		f, y, e := YMM(), YMM(), YMM()
		VSUBPS(mx, x, x)
		VMAXPS(lo, x, x)
		VMULPS(log2e, x, f)
		VROUNDPS(U8(0), f, f)  // nearest
		VFNMADD231PS(c1, f, x) // x -= f·c1
		VFNMADD231PS(c2, f, x) // x -= f·c2
		VMOVUPS(poly[0], y)
		for _, c := range poly[1:] {
			VFMADD213PS(c, x, y) // y = y·x + c
		}
		t := YMM()
		VMULPS(x, x, t)
		VFMADD213PS(x, t, y) // y = y·x² + x
		VADDPS(one, y, y)
		VCVTPS2DQ(f, e)
		VPADDD(bias, e, e)
		VPSLLD(U8(23), e, e)
		VMULPS(e, y, y)
		if m != nil {
			VANDPS(m, y, y)
		}
		VADDPS(y, acc, acc)
	}
	MOVQ(z, p)
	MOVQ(full, k)
	Label("lsesum")
	TESTQ(k, k)
	JZ(LabelRef("lsesumtail"))
	x2 := YMM()
	VMOVUPS(Mem{Base: p}, x2)
	expAdd(x2, nil)
	ADDQ(U8(32), p)
	DECQ(k)
	JMP(LabelRef("lsesum"))
	Label("lsesumtail")
	TESTQ(U32(7), n)
	JZ(LabelRef("lsedone"))
	x3 := YMM()
	VMASKMOVPS(Mem{Base: p}, tm, x3)
	expAdd(x3, tm)
	Label("lsedone")
	t := YMM()
	VPERM2F128(U8(1), acc, acc, t)
	VADDPS(t, acc, acc)
	VPERMILPS(U8(0x4e), acc, t)
	VADDPS(t, acc, acc)
	VPERMILPS(U8(0xb1), acc, t)
	VADDPS(t, acc, acc)
	Store(mx.AsX(), ReturnIndex(0))
	Store(acc.AsX(), ReturnIndex(1))
	VZEROUPPER()
	RET()
}

// logs emits logAVX2(x, n): x[i] = ln x[i] in place for finite x[i] ≥ 1
// (sums of exponentials whose largest term is 1), eight at a time, the
// ragged tail through a mask so that every element takes the same path
// wherever it sits in the batch. It is logAtLeast1 (Cephes' logf) with the
// branch as a blend and the polynomial in FMA steps: within an ulp or two
// of it.
func logs() {
	TEXT("logAVX2", NOSPLIT, "func(x *float32, n int)")
	Pragma("noescape")
	Doc(
		"logAVX2 replaces x[0:n] by their natural logarithms, for finite",
		"x[i] ≥ 1 (Cephes' logf, about 1 ulp). Requires AVX2 and FMA, n ≥ 0.",
	)
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	tm, full := tailMask(n)
	mantMask := uconst("logMant", 0x807fffff)
	half := uconst("logHalf", 0x3f000000)
	e126 := uconst("log126", 126)
	sqrthf := vconst("logSqrtHf", 0.70710678118654752)
	one := vconst("logOne", 1)
	c2 := vconst("logC2", -2.12194440e-4)
	c1 := vconst("logC1", 0.693359375)
	mhalf := vconst("logMinusHalf", -0.5)
	poly := []Mem{
		vconst("logP0", 7.0376836292e-2),
		vconst("logP1", -1.1514610310e-1),
		vconst("logP2", 1.1676998740e-1),
		vconst("logP3", -1.2420140846e-1),
		vconst("logP4", 1.4249322787e-1),
		vconst("logP5", -1.6668057665e-1),
		vconst("logP6", 2.0000714765e-1),
		vconst("logP7", -2.4999993993e-1),
		vconst("logP8", 3.3333331174e-1),
	}
	// ln replaces v by its logarithm.
	ln := func(v VecVirtual) {
		e, m, lt, t, z, y := YMM(), YMM(), YMM(), YMM(), YMM(), YMM()
		VPSRLD(U8(23), v, e)
		VPSUBD(e126, e, e)
		VCVTDQ2PS(e, e) // x = m·2^e, m in [0.5, 1)
		VANDPS(mantMask, v, m)
		VORPS(half, m, m)
		VCMPPS(U8(1), sqrthf, m, lt) // m < √½
		VANDPS(one, lt, t)
		VSUBPS(t, e, e) // e-- there
		VANDPS(m, lt, t)
		VADDPS(t, m, m)
		VSUBPS(one, m, m) // m+m-1 there, m-1 elsewhere
		VMULPS(m, m, z)
		VMOVUPS(poly[0], y)
		for _, c := range poly[1:] {
			VFMADD213PS(c, m, y) // y = y·m + c
		}
		VMULPS(m, y, y)
		VMULPS(z, y, y)
		VFMADD231PS(c2, e, y)    // y += c2·e
		VFMADD231PS(mhalf, z, y) // y += -½·z
		VADDPS(m, y, y)
		VFMADD231PS(c1, e, y) // y += c1·e
		VMOVAPS(y, v)
	}
	p, k := GP64(), GP64()
	MOVQ(x, p)
	MOVQ(full, k)
	Label("logloop")
	TESTQ(k, k)
	JZ(LabelRef("logtail"))
	v := YMM()
	VMOVUPS(Mem{Base: p}, v)
	ln(v)
	VMOVUPS(v, Mem{Base: p})
	ADDQ(U8(32), p)
	DECQ(k)
	JMP(LabelRef("logloop"))
	Label("logtail")
	TESTQ(U32(7), n)
	JZ(LabelRef("logdone"))
	w := YMM()
	VMASKMOVPS(Mem{Base: p}, tm, w)
	o := YMM()
	VMOVUPS(one, o)
	VBLENDVPS(tm, w, o, w) // masked-off lanes: 1 (computed, not stored)
	ln(w)
	VMASKMOVPS(w, tm, Mem{Base: p})
	Label("logdone")
	VZEROUPPER()
	RET()
}

// addRows emits addRowsAVX2(h, w, offs, k, width): h[0:width] += the k
// rows w[offs[j] : offs[j]+width], added in the order given (as one
// vector add after another would), for width a multiple of 8. It sums the
// first layer's active sparse inputs (categorical levels, missing
// indicators) of one record: 32 columns at a time over all k rows, so the
// four accumulators stay in registers, then 8 at a time.
func addRows() {
	TEXT("addRowsAVX2", NOSPLIT, "func(h, w *float32, offs *int, k, width int)")
	Pragma("noescape")
	Doc(
		"addRowsAVX2 adds the k rows of w starting at offs[j] (in elements)",
		"to h[0:width], in order. Requires AVX2, k ≥ 1 and width a multiple of 8.",
	)
	h := Load(Param("h"), GP64())
	w := Load(Param("w"), GP64())
	offs := Load(Param("offs"), GP64())
	k := Load(Param("k"), GP64())
	width := Load(Param("width"), GP64())
	SHLQ(U8(2), width) // bytes
	col := GP64()      // byte offset of the current block
	XORQ(col, col)
	j, o := GP64(), GP64()

	Label("addblk32")
	rest := GP64()
	MOVQ(width, rest)
	SUBQ(col, rest)
	CMPQ(rest, U32(128))
	JL(LabelRef("addblk8"))
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for i, a := range acc {
		VMOVUPS(Mem{Base: h, Index: col, Scale: 1, Disp: 32 * i}, a)
	}
	XORQ(j, j)
	Label("addrow32")
	MOVQ(Mem{Base: offs, Index: j, Scale: 8}, o)
	LEAQ(Mem{Base: w, Index: o, Scale: 4}, o)
	ADDQ(col, o)
	for i, a := range acc {
		VADDPS(Mem{Base: o, Disp: 32 * i}, a, a)
	}
	INCQ(j)
	CMPQ(j, k)
	JL(LabelRef("addrow32"))
	for i, a := range acc {
		VMOVUPS(a, Mem{Base: h, Index: col, Scale: 1, Disp: 32 * i})
	}
	ADDQ(U32(128), col)
	JMP(LabelRef("addblk32"))

	Label("addblk8")
	CMPQ(col, width)
	JGE(LabelRef("adddone"))
	a := YMM()
	VMOVUPS(Mem{Base: h, Index: col, Scale: 1}, a)
	XORQ(j, j)
	Label("addrow8")
	MOVQ(Mem{Base: offs, Index: j, Scale: 8}, o)
	LEAQ(Mem{Base: w, Index: o, Scale: 4}, o)
	VADDPS(Mem{Base: o, Index: col, Scale: 1}, a, a)
	INCQ(j)
	CMPQ(j, k)
	JL(LabelRef("addrow8"))
	VMOVUPS(a, Mem{Base: h, Index: col, Scale: 1})
	ADDQ(U32(32), col)
	JMP(LabelRef("addblk8"))
	Label("adddone")
	VZEROUPPER()
	RET()
}

// gemvMax is the most panels gemvAVX512 takes in one call: an accumulator
// each, plus the broadcast input, within AVX-512's 32 registers.
const gemvMax = 16

// gemv512 emits gemvAVX512, denseAVX512 for one row. The tiles' one-row
// tail keeps a single accumulator, each FMA waiting on the one before
// (four cycles a step); here every panel of the call has its own, so up to
// 16 chains run side by side. Each output is still the bias plus the
// products in the order of k, fused as the tiles do: the same bits.
func gemv512() {
	TEXT("gemvAVX512", NOSPLIT, "func(a, w, bias, c *float32, k, panels int, lastMask uint16, relu bool)")
	Pragma("noescape")
	Doc(
		"gemvAVX512 writes act(a · W + bias) for one row a into c, for panels",
		"packed panels of w (k×16 each, 1 ≤ panels ≤ 16); the last panel's",
		"biases and outputs go through lastMask (0xffff: all 16 columns).",
		"Requires AVX512F and k ≥ 1.",
	)
	a := Load(Param("a"), GP64())
	panels := Load(Param("panels"), GP64())
	for g := 1; g <= gemvMax; g++ {
		CMPQ(panels, U32(g))
		JE(LabelRef(fmt.Sprintf("gemv%d", g)))
	}
	RET()
	for g := 1; g <= gemvMax; g++ {
		Label(fmt.Sprintf("gemv%d", g))
		gemvPanels(g, a)
		VZEROUPPER()
		RET()
	}
}

// gemvPanels emits the one-row product for g panels.
func gemvPanels(g int, a Register) {
	p := fmt.Sprintf("gemv%d_", g)
	w := Load(Param("w"), GP64())
	bias := Load(Param("bias"), GP64())
	kc := Load(Param("k"), GP64())
	stride := GP64()
	MOVQ(kc, stride)
	SHLQ(U8(6), stride) // a panel: 16k floats
	KMOVW(NewParamAddr("lastMask", 48), K1)
	acc := make([]VecVirtual, g)
	for i := range acc {
		acc[i] = ZMM()
		if i == g-1 {
			VMOVUPS_Z(Mem{Base: bias, Disp: 64 * i}, K1, acc[i])
		} else {
			VMOVUPS(Mem{Base: bias, Disp: 64 * i}, acc[i])
		}
	}
	bases, panelMem := strided(w, stride, g)
	x := ZMM()
	Label(p + "k")
	VBROADCASTSS(Mem{Base: a}, x)
	for i := range acc {
		m := panelMem(i)
		VFMADD231PS(m, x, acc[i])
	}
	ADDQ(U8(4), a)
	for _, b := range bases {
		ADDQ(U8(64), b)
	}
	DECQ(kc)
	JNZ(LabelRef(p + "k"))

	relu := Load(Param("relu"), GP8())
	TESTB(relu, relu)
	JZ(LabelRef(p + "store"))
	zero := ZMM()
	VPXORD(zero, zero, zero)
	for i := range acc {
		VMAXPS(zero, acc[i], acc[i])
	}
	Label(p + "store")
	c := Load(Param("c"), GP64())
	for i := range acc {
		if i == g-1 {
			VMOVUPS(acc[i], K1, Mem{Base: c, Disp: 64 * i})
		} else {
			VMOVUPS(acc[i], Mem{Base: c, Disp: 64 * i})
		}
	}
}
