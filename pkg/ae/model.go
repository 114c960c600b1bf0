package ae

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/viterin/vek/vek32"
)

// MaxParams bounds a model's weight count.
const MaxParams = 64 << 20

// Field describes one learned field of the dense form. A numeric field owns
// Numeric consecutive columns of Data.Num (a timestamp owns four); a
// categorical field owns one slot of Data.Cat holding a level in [0, Levels),
// where level 0 means missing.
type Field struct {
	Name    string `json:"name"`
	Numeric int    `json:"numeric,omitempty"`
	Levels  int    `json:"levels,omitempty"`
}

// Data is a batch of encoded records in row-major order.
type Data struct {
	N    int
	Num  []float32 // N × NumCols
	Cat  []int32   // N × CatFields
	Miss []bool    // N × len(Fields)
}

// NewData allocates a batch of n rows for the model's layout.
func NewData(m *Model, n int) *Data {
	return &Data{N: n, Num: make([]float32, n*m.numCols), Cat: make([]int32, n*m.catFields), Miss: make([]bool, n*len(m.Fields))}
}

// Model is a fitted denoising autoencoder: In → Hidden (ReLU) → Bottleneck
// (linear, the embedding) → Hidden (ReLU) → Out, where Out holds one output
// per numeric column and one logit per categorical level. It is read-only
// once trained and safe for concurrent use through separate Scorers.
type Model struct {
	Fields     []Field `json:"fields"`
	Hidden     int     `json:"hidden"`
	Bottleneck int     `json:"bottleneck"`
	// InputClip bounds scaled numeric inputs (and training targets).
	InputClip float32 `json:"input_clip"`
	// Linear selects contributions e_f/Norm_f; by default they are
	// sqrt(e_f/Norm_f), so that one extreme field cannot drown the others.
	Linear bool `json:"linear,omitempty"`
	// SoftTargets measures a score's numeric errors against a target
	// beyond ±SoftFrom as softTarget(t) (SoftFrom plus the log of the
	// excess) rather than t itself (see targetErrors). Train sets it; models
	// trained before it existed score against t, as they always have.
	SoftTargets bool `json:"soft_targets,omitempty"`
	// SoftFrom is where soft targets begin, in scale units; 0 means
	// InputClip, where the models that first had soft targets began them.
	// Train sets SoftFromClips × InputClip.
	SoftFrom float32 `json:"soft_from,omitempty"`
	// W[l] is dims[l]×dims[l+1], row-major; B[l] has dims[l+1] entries.
	// The input rows of W[0] are the NumCols numeric columns, then for each
	// field in order its sparse rows: a numeric field's missing indicator, or
	// a categorical field's one-hot levels. Sparse inputs are 0/1, so the
	// first layer adds the active rows instead of multiplying by one-hots.
	W [4][]float32 `json:"-"`
	B [4][]float32 `json:"-"`
	// Norm is each field's typical reconstruction error on validation data;
	// a record's score is Σ sqrt(error_f / Norm[f]) (see Score).
	Norm []float32 `json:"norm"`
	// MissSurprisal is −ln of the smoothed share of training rows in which a
	// numeric field was missing. A missing numeric field has no error to
	// measure, so it contributes this surprise instead: blanking a field
	// that is always present must not make a record look normal.
	// (A categorical field's MISSING level is reconstructed like any other.)
	MissSurprisal []float32 `json:"miss_surprisal"`

	numCols, catFields int
	in, out            int
	sOff, outOff       []int // per field: first sparse input row, first output
	sparse             int   // sparse input rows: missing indicators and categorical levels
	numOff, catIdx     []int // per field; -1 where not applicable
	catFieldIdx        []int // per categorical field, its field index
	wt                 [4][]float32
	// pk[l] is W[l] packed for the forward kernel (dense); for layer 0,
	// only its dense (numeric) rows. pkT[l] (l ≥ 1) is W[l]ᵀ packed, for
	// the backward pass's g·Wᵀ. refresh rebuilds both after W changes.
	pk, pkT [4]packed
}

// Dims returns the layer sizes [In, Hidden, Bottleneck, Hidden, Out].
func (m *Model) Dims() [5]int { return [5]int{m.in, m.Hidden, m.Bottleneck, m.Hidden, m.out} }

// NumCols and CatFields give the dense form's sizes.
func (m *Model) NumCols() int   { return m.numCols }
func (m *Model) CatFields() int { return m.catFields }

// NumParams returns the number of weights and biases.
func (m *Model) NumParams() int {
	n := 0
	for l := range 4 {
		n += len(m.W[l]) + len(m.B[l])
	}
	return n
}

// Shape validates a layout and returns its layer sizes without allocating
// any weights, so that decoders can check a blob's length first.
func Shape(fields []Field, hidden, bottleneck int) ([5]int, error) {
	m := &Model{Fields: fields, Hidden: hidden, Bottleneck: bottleneck}
	if err := m.layout(); err != nil {
		return [5]int{}, err
	}
	return m.Dims(), nil
}

// New returns an untrained model with layout fields; weights are zero
// until Init or a trained copy fills them.
func New(fields []Field, hidden, bottleneck int) (*Model, error) {
	m := &Model{Fields: fields, Hidden: hidden, Bottleneck: bottleneck, InputClip: 10}
	if err := m.layout(); err != nil {
		return nil, err
	}
	d := m.Dims()
	for l := range 4 {
		m.W[l] = make([]float32, d[l]*d[l+1])
		m.B[l] = make([]float32, d[l+1])
	}
	m.Norm = make([]float32, len(fields))
	m.MissSurprisal = make([]float32, len(fields))
	for i := range m.Norm {
		m.Norm[i] = 1
	}
	m.refresh()
	return m, nil
}

func (m *Model) layout() error {
	if len(m.Fields) == 0 {
		return errors.New("ae: no fields")
	}
	if m.Hidden < 1 || m.Bottleneck < 1 || m.Hidden > 1<<14 || m.Bottleneck > 1<<14 {
		return fmt.Errorf("ae: bad layer sizes %d/%d", m.Hidden, m.Bottleneck)
	}
	F := len(m.Fields)
	m.sOff, m.outOff = make([]int, F), make([]int, F)
	m.numOff, m.catIdx = make([]int, F), make([]int, F)
	m.numCols, m.catFields, m.sparse, m.out = 0, 0, 0, 0
	m.catFieldIdx = nil // not reused: a clone shares it
	for i, f := range m.Fields {
		m.sOff[i] = m.sparse
		switch {
		case f.Numeric > 0 && f.Levels == 0 && f.Numeric <= 64:
			m.numOff[i], m.catIdx[i] = m.numCols, -1
			m.numCols += f.Numeric
			m.sparse++ // the missing indicator
			m.out += f.Numeric
		case f.Levels >= 2 && f.Numeric == 0 && f.Levels <= 1<<16:
			m.numOff[i], m.catIdx[i] = -1, m.catFields
			m.catFields++
			m.catFieldIdx = append(m.catFieldIdx, i)
			m.sparse += f.Levels // one-hot levels
			m.out += f.Levels
		default:
			return fmt.Errorf("ae: field %d (%q) must be numeric (1..64 columns) or categorical (2..65536 levels)", i, f.Name)
		}
	}
	m.in = m.numCols + m.sparse
	// Outputs: the numeric columns first, aligned with Data.Num, then each
	// categorical field's logits.
	cat := m.numCols
	for i, f := range m.Fields {
		if m.catIdx[i] < 0 {
			m.outOff[i] = m.numOff[i]
		} else {
			m.outOff[i] = cat
			cat += f.Levels
		}
	}
	if m.in > 1<<20 || m.out > 1<<20 {
		return errors.New("ae: layout too wide")
	}
	// Bound the weights before anything allocates them (decoded bundles).
	if params := (m.in+m.out)*m.Hidden + 2*m.Hidden*m.Bottleneck; params > MaxParams {
		return fmt.Errorf("ae: %d parameters exceed the limit of %d", params, MaxParams)
	}
	return nil
}

// refresh rebuilds the transposed weights used by the backward pass and
// the packed weights of the forward pass; call it after any change to W
// (biases are read from B as they are).
func (m *Model) refresh() {
	d := m.Dims()
	for l := range 4 {
		r, c := d[l], d[l+1]
		if len(m.wt[l]) != r*c {
			m.wt[l] = make([]float32, r*c)
		}
		transpose(m.wt[l], m.W[l], r, c)
		if l > 0 {
			m.pkT[l].pack(m.wt[l], c, r)
		}
		if l == 0 {
			r = m.numCols
		}
		m.pk[l].pack(m.W[l][:r*c], r, c)
	}
}

// SetWeights installs weights (e.g. decoded from a bundle) after checking
// their shapes and values.
func (m *Model) SetWeights(w, b [4][]float32) error {
	if err := m.layout(); err != nil {
		return err
	}
	d := m.Dims()
	for l := range 4 {
		if len(w[l]) != d[l]*d[l+1] || len(b[l]) != d[l+1] {
			return fmt.Errorf("ae: layer %d has %d×%d weights, want %d×%d", l, len(w[l]), len(b[l]), d[l]*d[l+1], d[l+1])
		}
		for _, v := range w[l] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("ae: layer %d has a non-finite weight", l)
			}
		}
	}
	if len(m.Norm) != len(m.Fields) || len(m.MissSurprisal) != len(m.Fields) {
		return fmt.Errorf("ae: %d normalisers and %d missing-value surprisals for %d fields", len(m.Norm), len(m.MissSurprisal), len(m.Fields))
	}
	for _, v := range m.MissSurprisal {
		if !(v >= 0) || math.IsInf(float64(v), 0) {
			return errors.New("ae: missing-value surprisals must be finite and non-negative")
		}
	}
	for l := range 4 {
		for _, v := range b[l] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("ae: layer %d has a non-finite bias", l)
			}
		}
	}
	for _, v := range m.Norm {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return errors.New("ae: normalisers must be positive and finite")
		}
	}
	m.W, m.B = w, b
	m.refresh()
	return nil
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	c := *m
	for l := range 4 {
		c.W[l] = append([]float32(nil), m.W[l]...)
		c.B[l] = append([]float32(nil), m.B[l]...)
		c.wt[l] = append([]float32(nil), m.wt[l]...)
		c.pk[l] = m.pk[l].clone()
		c.pkT[l] = m.pkT[l].clone()
	}
	c.Fields = append([]Field(nil), m.Fields...)
	c.Norm = append([]float32(nil), m.Norm...)
	c.MissSurprisal = append([]float32(nil), m.MissSurprisal...)
	return &c
}

func transpose(dst, src []float32, rows, cols int) {
	for i := range rows {
		row := src[i*cols : (i+1)*cols]
		for j, v := range row {
			dst[j*rows+i] = v
		}
	}
}

// buffers is the scratch space of one forward/backward pass over up to cap rows.
type buffers struct {
	cap  int
	x    []float32    // cap × NumCols numeric inputs
	sp   []int32      // cap × F active sparse input rows (-1: none)
	ex   []float32    // softmax scratch
	diff []float32    // numeric differences of one row
	act  [4][]float32 // h1, z, h2, y
	grad [4][]float32 // gradients w.r.t. act
	tr   []float32    // transpose scratch
	gp   packed       // a layer's output gradient packed for dense (training)
	zero []float32    // zero biases for dense in the backward pass
	ones []float32    // a row of ones: bias gradients as 1ᵀ·g
	ferr []float32    // per-field errors, cap × F
	// lseSum holds each categorical field's Σ exp(z - max) while scoring,
	// cap × categorical fields.
	lseSum []float32
	offs   []int // one row's active sparse inputs, F
}

// newBuffers sizes scratch for cap rows; only training needs gradients.
func newBuffers(m *Model, cap int, train bool) *buffers {
	d := m.Dims()
	b := &buffers{cap: cap, x: make([]float32, cap*m.numCols), sp: make([]int32, cap*len(m.Fields)), ferr: make([]float32, cap*len(m.Fields))}
	maxL := 0
	for _, f := range m.Fields {
		maxL = max(maxL, f.Levels)
	}
	b.ex = make([]float32, max(maxL, len(m.Fields)))
	b.diff = make([]float32, m.numCols)
	b.lseSum = make([]float32, cap*m.catFields)
	b.offs = make([]int, 0, len(m.Fields))
	maxd := m.numCols
	for l := range 4 {
		b.act[l] = make([]float32, cap*d[l+1])
		if train {
			b.grad[l] = make([]float32, cap*d[l+1])
		}
		if l > 0 {
			maxd = max(maxd, d[l])
		}
	}
	if train {
		b.tr = make([]float32, cap*maxd)
		b.zero = make([]float32, max(maxd, d[1], d[4]))
		b.ones = make([]float32, cap)
		for i := range b.ones {
			b.ones[i] = 1
		}
	}
	return b
}

// fillInput writes the network input for rows [from, from+n) of data into
// b.x and b.sp, unperturbed. It works on the whole batch at once: clip the
// numeric columns, mark every sparse slot inactive, then visit only the
// missing flags that are set and the categorical fields.
func (m *Model) fillInput(b *buffers, d *Data, from, n int) {
	F := len(m.Fields)
	nc := m.numCols
	if nc > 0 {
		x := b.x[:n*nc]
		clamp(x, d.Num[from*nc:(from+n)*nc], -m.InputClip, m.InputClip)
	}
	sp := b.sp[:n*F]
	fill(sp, -1)
	miss := d.Miss[from*F : (from+n)*F]
	for i := nextTrue(miss, 0); i >= 0; i = nextTrue(miss, i+1) {
		r, f := i/F, i%F
		if m.catIdx[f] >= 0 {
			continue // a categorical field's level says it is missing
		}
		clear(b.x[r*nc+m.numOff[f] : r*nc+m.numOff[f]+m.Fields[f].Numeric])
		sp[i] = int32(m.sOff[f])
	}
	if m.catFields == 0 {
		return
	}
	for f := range F {
		c := m.catIdx[f]
		if c < 0 {
			continue
		}
		L, off := int32(m.Fields[f].Levels), int32(m.sOff[f])
		for r := range n {
			l := d.Cat[(from+r)*m.catFields+c]
			if l < 0 || l >= L {
				l = 0
			}
			sp[r*F+f] = off + l
		}
	}
}

// fill sets every element of s to v, doubling copies.
func fill(s []int32, v int32) {
	if len(s) == 0 {
		return
	}
	s[0] = v
	for i := 1; i < len(s); i *= 2 {
		copy(s[i:], s[:i])
	}
}

// nextTrue returns the index of the first true element of s at or after
// from, or -1. Most batches have few missing values, so it searches with
// bytes.IndexByte rather than testing each flag.
func nextTrue(s []bool, from int) int {
	if from >= len(s) {
		return -1
	}
	rest := s[from:]
	i := bytes.IndexByte(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(rest))), len(rest)), 1)
	if i < 0 {
		return -1
	}
	return from + i
}

// fieldInput sets field f of input row r from row `row` of d.
func (m *Model) fieldInput(b *buffers, r, f int, d *Data, row int, clip float32) {
	F := len(m.Fields)
	if c := m.catIdx[f]; c >= 0 {
		l := d.Cat[row*m.catFields+c]
		if l < 0 || int(l) >= m.Fields[f].Levels {
			l = 0
		}
		b.sp[r*F+f] = int32(m.sOff[f]) + l
		return
	}
	w := m.Fields[f].Numeric
	x := b.x[r*m.numCols+m.numOff[f] : r*m.numCols+m.numOff[f]+w]
	if d.Miss[row*F+f] {
		clear(x)
		b.sp[r*F+f] = int32(m.sOff[f])
		return
	}
	b.sp[r*F+f] = -1
	src := d.Num[row*m.numCols+m.numOff[f] : row*m.numCols+m.numOff[f]+w]
	for j, v := range src {
		x[j] = min(max(v, -clip), clip)
	}
}

// setMissing marks field f of input row r as missing.
func (m *Model) setMissing(b *buffers, r, f int) {
	F := len(m.Fields)
	b.sp[r*F+f] = int32(m.sOff[f]) // level 0 for categoricals, the indicator for numerics
	if m.catIdx[f] < 0 {
		clear(b.x[r*m.numCols+m.numOff[f] : r*m.numCols+m.numOff[f]+m.Fields[f].Numeric])
	}
}

// forward runs the network on the first n input rows into b.act.
func (m *Model) forward(b *buffers, n int) {
	if n <= 0 {
		return
	}
	d := m.Dims()
	F := len(m.Fields)
	H := d[1]
	// Layer 0: dense numeric product plus the active sparse rows (missing
	// indicators, categorical levels). ReLU is fused into the kernel when
	// no row has an active sparse input (all-present numeric batches);
	// otherwise it follows the sparse sums.
	h1 := b.act[0][:n*H]
	sparse := anyActive(b.sp[:n*F])
	dense(h1, b.x, &m.pk[0], m.B[0], n, m.numCols, H, !sparse)
	if sparse {
		ws := m.W[0][m.numCols*H:]
		for r := range n {
			offs := b.offs[:0]
			for _, s := range b.sp[r*F : (r+1)*F] {
				if s >= 0 {
					offs = append(offs, int(s)*H)
				}
			}
			addRows(h1[r*H:(r+1)*H], ws, offs)
		}
		clamp(h1, h1, 0, float32(math.Inf(1))) // ReLU
	}
	in := h1
	for l := 1; l < 4; l++ {
		out := b.act[l][:n*d[l+1]]
		dense(out, in, &m.pk[l], m.B[l], n, d[l], d[l+1], l == 2)
		in = out
	}
}

// anyActive reports whether any sparse input row is active (≥ 0).
func anyActive(sp []int32) bool {
	// -1 has every bit set; ANDing keeps the sign bit only while all are
	// negative. Eight at a time to keep the loop short.
	and := int32(-1)
	for len(sp) >= 8 {
		and &= sp[0] & sp[1] & sp[2] & sp[3] & sp[4] & sp[5] & sp[6] & sp[7]
		sp = sp[8:]
	}
	for _, s := range sp {
		and &= s
	}
	return and >= 0
}

// targetErrors writes the squared errors of outputs y against numeric
// targets t into dst (neither y nor t), as scores, the normalisers and
// contamination trimming measure them: against t itself, so that a value
// far outside the training range scores high although the network's inputs
// are clipped; with SoftTargets, a target beyond ±softFrom() counts as
// softTarget(t), which still grows with t but only logarithmically. One
// pass when no target lies that far out (sqdiff says so), the usual case;
// the few that do are measured again here.
func (m *Model) targetErrors(dst, y, t []float32) {
	if !m.SoftTargets {
		sqdiff(dst, y, t, m.InputClip)
		return
	}
	from := m.softFrom()
	if !sqdiff(dst, y, t, from) {
		return
	}
	for i, v := range t {
		if abs32(v) > from {
			e := y[i] - softTarget(v, from)
			dst[i] = e * e
		}
	}
}

// softFrom is where soft targets begin: SoftFrom, or InputClip for the
// models fitted before SoftFrom existed.
func (m *Model) softFrom() float32 {
	if m.SoftFrom > 0 {
		return m.SoftFrom
	}
	return m.InputClip
}

// softTarget is t within ±from and, beyond it, ±(from + ln(1 + |t| − from))
// with t's sign: continuous, increasing, and ln-slow past from, so a value
// a thousand units out scores above one sixty units out but does not drown
// every other field (or every other record) as its square would.
func softTarget(t, from float32) float32 {
	a := abs32(t)
	if !(a > from) {
		return t
	}
	return float32(math.Copysign(float64(from)+math.Log1p(float64(a-from)), float64(t)))
}

// batchErrors writes each field's reconstruction error for rows
// [from, from+n) into b.ferr (n × F) as fieldErrors does for scoring
// (targets as targetErrors takes them) and returns it. When every field is
// one numeric column, errors, outputs and targets line up element for
// element, so it works on the whole batch in one vector pass.
func (m *Model) batchErrors(b *buffers, d *Data, from, n int) []float32 {
	F := len(m.Fields)
	fe := b.ferr[:n*F]
	if m.catFields != 0 || m.numCols != F {
		m.fieldErrors(b, d, from, n, nil, 0, false)
		return fe
	}
	m.targetErrors(fe, b.act[3][:n*F], d.Num[from*F:(from+n)*F])
	miss := d.Miss[from*F : (from+n)*F]
	for i := nextTrue(miss, 0); i >= 0; i = nextTrue(miss, i+1) {
		fe[i] = 0
	}
	return fe
}

// fieldErrors computes each field's reconstruction error for rows
// [from, from+n) from b.act[3]; when grad is non-nil it also writes
// d(loss)/d(output) scaled by gscale, with targets clipped as in training.
// It returns the summed error (training loss) over the rows.
func (m *Model) fieldErrors(b *buffers, d *Data, from, n int, grad []float32, gscale float32, clipTargets bool) float64 {
	F := len(m.Fields)
	if m.catFields == 0 && m.numCols == F {
		return m.columnErrors(b, d, from, n, grad, gscale, clipTargets)
	}
	y := b.act[3]
	clip := m.InputClip
	nc := m.numCols
	total := 0.0
	for r := range n {
		row := from + r
		yr := y[r*m.out : (r+1)*m.out]
		var gr []float32
		if grad != nil {
			gr = grad[r*m.out : (r+1)*m.out]
		}
		fe := b.ferr[r*F : (r+1)*F]
		miss := d.Miss[row*F : (row+1)*F]
		// Numeric columns at once: diff = y − t, its square per column.
		if nc > 0 {
			diff := b.diff[:nc]
			t := d.Num[row*nc : (row+1)*nc]
			if clipTargets || gr != nil {
				if clipTargets {
					vek32.MinimumNumber_Into(diff, t, clip)
					vek32.MaximumNumber_Inplace(diff, -clip)
					vek32.MulNumber_Inplace(diff, -1) // vek forbids dst aliasing an input
					vek32.Add_Inplace(diff, yr[:nc])
				} else {
					vek32.Sub_Into(diff, yr[:nc], t)
				}
				if gr != nil {
					vek32.MulNumber_Into(gr[:nc], diff, 2*gscale)
				}
				for i, v := range diff {
					diff[i] = v * v
				}
			} else {
				m.targetErrors(diff, yr[:nc], t) // scoring: one pass
			}
		}
		for f := range F {
			off := m.outOff[f]
			if c := m.catIdx[f]; c >= 0 {
				L := m.Fields[f].Levels
				z := yr[off : off+L]
				t := int(d.Cat[row*m.catFields+c])
				if t < 0 || t >= L {
					t = 0
				}
				if gr == nil {
					// Scoring needs only the log-sum-exp, not the
					// probabilities: one fused pass here, and the
					// logarithms of the sums after the rows, in a loop of
					// independent steps (one at a time here, each waited
					// on the exp sum before it).
					mx, sum := expSum(z)
					fe[f] = mx - z[t]
					b.lseSum[r*m.catFields+c] = sum
					continue
				}
				mx := vek32.Max(z)
				ex := b.ex[:L]
				vek32.AddNumber_Into(ex, z, -mx)
				vek32.Exp_Inplace(ex)
				s := vek32.Sum(ex)
				lse := mx + float32(math.Log(float64(s)))
				e := lse - z[t]
				fe[f] = e
				total += float64(e)
				if gr != nil {
					g := gr[off : off+L]
					vek32.MulNumber_Into(g, ex, gscale/s)
					g[t] -= gscale
				}
				continue
			}
			w := m.Fields[f].Numeric
			if miss[f] {
				fe[f] = 0
				if gr != nil {
					clear(gr[off : off+w])
				}
				continue
			}
			var e float32
			if w == 1 {
				e = b.diff[off]
			} else {
				for _, v := range b.diff[off : off+w] {
					e += v
				}
				e /= float32(w)
				if gr != nil {
					vek32.MulNumber_Inplace(gr[off:off+w], 1/float32(w))
				}
			}
			fe[f] = e
			total += float64(e)
		}
	}
	if grad == nil && m.catFields > 0 {
		sums := b.lseSum[:n*m.catFields]
		logsAtLeast1(sums)
		for r := range n {
			fe := b.ferr[r*F : (r+1)*F]
			s := sums[r*m.catFields : (r+1)*m.catFields]
			for c, f := range m.catFieldIdx {
				e := fe[f] + s[c]
				fe[f] = e
				total += float64(e)
			}
		}
	}
	return total
}

// columnErrors is fieldErrors for layouts where every field is one numeric
// column: errors, outputs, targets and gradients line up element for
// element, so the batch goes through in one pass instead of per-row vector
// calls (which took a tenth of training). The sums and products are the
// ones fieldErrors computes, in the same order.
func (m *Model) columnErrors(b *buffers, d *Data, from, n int, grad []float32, gscale float32, clipTargets bool) float64 {
	F := len(m.Fields)
	fe := b.ferr[:n*F]
	y := b.act[3][:n*F]
	t := d.Num[from*F : (from+n)*F]
	switch {
	case grad == nil && !clipTargets:
		m.targetErrors(fe, y, t)
	case grad != nil:
		if clipTargets {
			clamp(fe, t, -m.InputClip, m.InputClip)
		} else {
			copy(fe, t)
		}
		grad = grad[:n*F]
		k := 2 * gscale
		for i, v := range fe {
			dv := y[i] - v
			grad[i] = k * dv
			fe[i] = dv * dv
		}
	default:
		clamp(fe, t, -m.InputClip, m.InputClip)
		for i, v := range fe {
			dv := y[i] - v
			fe[i] = dv * dv
		}
	}
	miss := d.Miss[from*F : (from+n)*F]
	for i := nextTrue(miss, 0); i >= 0; i = nextTrue(miss, i+1) {
		fe[i] = 0
		if grad != nil {
			grad[i] = 0
		}
	}
	total := 0.0
	for _, e := range fe {
		total += float64(e)
	}
	return total
}
