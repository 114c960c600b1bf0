// Command asmgen writes pkg/ae's AVX2+FMA dense-layer kernel
// (dense_amd64.s and its Go declaration) with avo. It lives in its own
// module so that avo is not a dependency of the main module; run it through
// `go generate ./pkg/ae`.
package main

import (
	"fmt"

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
	aBlk := Load(Param("a"), GP64())
	cBlk := Load(Param("c"), GP64())
	lda := Load(Param("lda"), GP64())
	ldc := Load(Param("ldc"), GP64())
	rows := Load(Param("rows"), GP64())
	SHLQ(U8(2), lda) // bytes
	SHLQ(U8(2), ldc)

	// Full tiles of mr rows, then one tail tile of 1..mr-1 rows.
	Label("rowloop")
	CMPQ(rows, U32(mr))
	JL(LabelRef("tail"))
	tile(mr, aBlk, cBlk, lda, ldc)
	// Advance mr rows: a += mr*lda, c += mr*ldc.
	t := GP64()
	IMUL3Q(U32(mr), lda, t)
	ADDQ(t, aBlk)
	IMUL3Q(U32(mr), ldc, t)
	ADDQ(t, cBlk)
	SUBQ(U32(mr), rows)
	JMP(LabelRef("rowloop"))

	Label("tail")
	for m := 1; m < mr; m++ {
		CMPQ(rows, U32(m))
		JE(LabelRef(fmt.Sprintf("tail%d", m)))
	}
	VZEROUPPER()
	RET()
	for m := 1; m < mr; m++ {
		Label(fmt.Sprintf("tail%d", m))
		tile(m, aBlk, cBlk, lda, ldc)
		VZEROUPPER()
		RET()
	}
	dense512()
	clamp()
	sqdiff()
	adam()
	reluGrad()
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
	Label("clamp32")
	CMPQ(n, U8(32))
	JL(LabelRef("clamp8"))
	v := [4]VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for i := range v {
		VMOVUPS(Mem{Base: src, Disp: 32 * i}, v[i])
	}
	for i := range v {
		bound(v[i])
		VMOVUPS(v[i], Mem{Base: dst, Disp: 32 * i})
	}
	ADDQ(U8(128), src)
	ADDQ(U8(128), dst)
	SUBQ(U8(32), n)
	JMP(LabelRef("clamp32"))
	Label("clamp8")
	TESTQ(n, n)
	JZ(LabelRef("clampdone"))
	x := YMM()
	VMOVUPS(Mem{Base: src}, x)
	bound(x)
	VMOVUPS(x, Mem{Base: dst})
	ADDQ(U8(32), src)
	ADDQ(U8(32), dst)
	SUBQ(U8(8), n)
	JMP(LabelRef("clamp8"))
	Label("clampdone")
	VZEROUPPER()
	RET()
}

// sqdiff emits sqdiffAVX2(dst, a, b, n): dst[i] = (a[i] - b[i])² for n a
// multiple of 8, one pass where vek32's Sub_Into and Mul_Into take three
// (its _Into forms copy first).
func sqdiff() {
	TEXT("sqdiffAVX2", NOSPLIT, "func(dst, a, b *float32, n int)")
	Pragma("noescape")
	Doc(
		"sqdiffAVX2 writes (a[i] - b[i])² into dst[i] for i < n, n a multiple",
		"of 8. dst may be a or b. Requires AVX.",
	)
	dst := Load(Param("dst"), GP64())
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	n := Load(Param("n"), GP64())
	Label("sqdiff32")
	CMPQ(n, U8(32))
	JL(LabelRef("sqdiff8"))
	v := [4]VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for i := range v {
		VMOVUPS(Mem{Base: a, Disp: 32 * i}, v[i])
		VSUBPS(Mem{Base: b, Disp: 32 * i}, v[i], v[i])
	}
	for i := range v {
		VMULPS(v[i], v[i], v[i])
		VMOVUPS(v[i], Mem{Base: dst, Disp: 32 * i})
	}
	ADDQ(U8(128), a)
	ADDQ(U8(128), b)
	ADDQ(U8(128), dst)
	SUBQ(U8(32), n)
	JMP(LabelRef("sqdiff32"))
	Label("sqdiff8")
	TESTQ(n, n)
	JZ(LabelRef("sqdiffdone"))
	x := YMM()
	VMOVUPS(Mem{Base: a}, x)
	VSUBPS(Mem{Base: b}, x, x)
	VMULPS(x, x, x)
	VMOVUPS(x, Mem{Base: dst})
	ADDQ(U8(32), a)
	ADDQ(U8(32), b)
	ADDQ(U8(32), dst)
	SUBQ(U8(8), n)
	JMP(LabelRef("sqdiff8"))
	Label("sqdiffdone")
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
	aBlk := Load(Param("a"), GP64())
	cBlk := Load(Param("c"), GP64())
	lda := Load(Param("lda"), GP64())
	ldc := Load(Param("ldc"), GP64())
	rows := Load(Param("rows"), GP64())
	SHLQ(U8(2), lda)
	SHLQ(U8(2), ldc)
	Label("z_rowloop")
	CMPQ(rows, U32(mr512))
	JL(LabelRef("z_tail"))
	tile512(mr512, aBlk, cBlk, lda, ldc)
	t := GP64()
	IMUL3Q(U32(mr512), lda, t)
	ADDQ(t, aBlk)
	IMUL3Q(U32(mr512), ldc, t)
	ADDQ(t, cBlk)
	SUBQ(U32(mr512), rows)
	JMP(LabelRef("z_rowloop"))
	Label("z_tail")
	for m := 1; m < mr512; m++ {
		CMPQ(rows, U32(m))
		JE(LabelRef(fmt.Sprintf("z_tail%d", m)))
	}
	VZEROUPPER()
	RET()
	for m := 1; m < mr512; m++ {
		Label(fmt.Sprintf("z_tail%d", m))
		tile512(m, aBlk, cBlk, lda, ldc)
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
	// Row r at base[r/3] + (r%3)·lda.
	bases := make([]GPVirtual, (m+2)/3)
	for i := range bases {
		bases[i] = GP64()
		if i == 0 {
			MOVQ(aBlk, bases[i])
			continue
		}
		LEAQ(Mem{Base: bases[i-1], Index: lda, Scale: 2}, bases[i])
		ADDQ(lda, bases[i])
	}
	rowMem := func(r int) Mem {
		switch r % 3 {
		case 0:
			return Mem{Base: bases[r/3]}
		case 1:
			return Mem{Base: bases[r/3], Index: lda, Scale: 1}
		default:
			return Mem{Base: bases[r/3], Index: lda, Scale: 2}
		}
	}
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
	cb := make([]GPVirtual, (m+2)/3)
	for i := range cb {
		cb[i] = GP64()
		if i == 0 {
			MOVQ(cp, cb[i])
			continue
		}
		LEAQ(Mem{Base: cb[i-1], Index: ldc, Scale: 2}, cb[i])
		ADDQ(ldc, cb[i])
	}
	for r := range m {
		var dst Mem
		switch r % 3 {
		case 0:
			dst = Mem{Base: cb[r/3]}
		case 1:
			dst = Mem{Base: cb[r/3], Index: ldc, Scale: 1}
		default:
			dst = Mem{Base: cb[r/3], Index: ldc, Scale: 2}
		}
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
