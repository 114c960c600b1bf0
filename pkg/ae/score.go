package ae

import (
	"unsafe"

	"github.com/viterin/vek/vek32"
)

// Scorer scores batches with one model. It owns scratch space sized for
// batches of up to Cap rows and allocates nothing per call. A Scorer is not
// safe for concurrent use; create one per goroutine.
type Scorer struct {
	m *Model
	b *buffers
	// normRow is the Norm that normRep (Norm repeated Cap times) and
	// scaleRep (1/Norm repeated Cap times) were built from.
	normRow, normRep, scaleRep []float32
	// one and oneRow are ExpectedMasked's own buffers and row, made on
	// its first call, so that it leaves the batch's outputs as they are.
	one    *buffers
	oneRow *Data
}

// NewScorer returns a scorer for batches of up to batchCap rows.
func NewScorer(m *Model, batchCap int) *Scorer {
	batchCap = max(batchCap, 1)
	s := &Scorer{m: m, b: newBuffers(m, batchCap, false)}
	s.norms(0) // built here rather than on the first Score
	return s
}

// Model returns the scorer's model.
func (s *Scorer) Model() *Model { return s.m }

// Cap returns the largest batch Score accepts.
func (s *Scorer) Cap() int { return s.b.cap }

// Score scores rows [from, from+n) of d (n ≤ Cap): scores[i] is the sum of
// the row's field contributions sqrt(e_f / Norm_f) (e_f / Norm_f when
// Model.Linear), a missing numeric field contributing sqrt(MissSurprisal_f)
// instead, and, when contrib is non-nil, contrib[i*F+f] holds field f's
// contribution. Numeric errors are measured against the target beyond the
// input clip too, so values far outside the training range score high:
// against the value itself, or, with Model.SoftTargets (set by Train unless
// Config.RawTargets), beyond ±SoftFrom (the clip for models fitted
// before SoftFrom) against SoftFrom plus the log of the excess (see
// targetErrors). After Score, Output and Expected describe the same rows.
// n = 0 (a batch whose every record was set aside) does nothing.
func (s *Scorer) Score(d *Data, from, n int, scores, contrib []float32) {
	m := s.m
	if n > s.b.cap {
		panic("ae: batch larger than the scorer's capacity")
	}
	if n <= 0 {
		return
	}
	F := len(m.Fields)
	m.fillInput(s.b, d, from, n)
	m.forward(s.b, n)
	fe := m.batchErrors(s.b, d, from, n)
	// Contributions for the whole batch at once: e_f / Norm_f, missing
	// numeric fields replaced by their surprisal; unless Linear, sqrt of
	// at least 0 (rounding can leave -1e-7) of e_f · (1/Norm_f), in one
	// pass.
	c := fe // scratch when the caller wants no contributions
	if contrib != nil {
		c = contrib[:n*F]
	}
	switch {
	case !m.Linear:
		rootScaled(c, fe, s.scales(n))
	case contrib != nil:
		vek32.Div_Into(c, fe, s.norms(n))
	default:
		vek32.Div_Inplace(c, s.norms(n)) // vek forbids dst aliasing an input
	}
	miss := d.Miss[from*F : (from+n)*F]
	for i := nextTrue(miss, 0); i >= 0; i = nextTrue(miss, i+1) {
		if f := i % F; m.catIdx[f] < 0 {
			v := m.MissSurprisal[f]
			if !m.Linear {
				v = rootAtLeast0(v)
			}
			c[i] = v
		}
	}
	for r := range n {
		scores[r] = sum(c[r*F : (r+1)*F])
	}
}

// norms returns the model's normalisers repeated for n rows, rebuilding
// the copy when the model's Norm has changed since the last call.
func (s *Scorer) norms(n int) []float32 {
	s.refresh()
	return s.normRep[:n*len(s.m.Fields)]
}

// scales returns 1/Norm repeated for n rows, as norms does Norm.
func (s *Scorer) scales(n int) []float32 {
	s.refresh()
	return s.scaleRep[:n*len(s.m.Fields)]
}

// refresh rebuilds normRep and scaleRep when the model's Norm has changed
// since they were built (training moves it in place).
func (s *Scorer) refresh() {
	if sameBits(s.normRow, s.m.Norm) {
		return
	}
	s.normRow = append(s.normRow[:0], s.m.Norm...)
	s.normRep, s.scaleRep = s.normRep[:0], s.scaleRep[:0]
	for range s.b.cap {
		s.normRep = append(s.normRep, s.normRow...)
		for _, v := range s.normRow {
			s.scaleRep = append(s.scaleRep, 1/v)
		}
	}
}

// sum adds x with four partial sums, so that short rows do not wait on
// one long chain of additions.
func sum(x []float32) float32 {
	var s0, s1, s2, s3 float32
	for len(x) >= 4 {
		s0 += x[0]
		s1 += x[1]
		s2 += x[2]
		s3 += x[3]
		x = x[4:]
	}
	for _, v := range x {
		s0 += v
	}
	return (s0 + s1) + (s2 + s3)
}

// ScoreAll scores every row of d in batches.
func (s *Scorer) ScoreAll(d *Data, scores []float32) {
	for from := 0; from < d.N; from += s.b.cap {
		n := min(s.b.cap, d.N-from)
		s.Score(d, from, n, scores[from:from+n], nil)
	}
}

// Output returns the raw network output of row i of the last batch:
// predicted scaled values for numeric columns and logits for categorical
// levels, in field order.
func (s *Scorer) Output(i int) []float32 {
	return s.b.act[3][i*s.m.out : (i+1)*s.m.out]
}

// Expected returns field f's reconstruction for row i of the last batch:
// its predicted numeric columns (scaled units), or, for a categorical
// field, nil and the most likely level.
func (s *Scorer) Expected(i, f int) (num []float32, level int) {
	return s.m.expected(s.Output(i), f)
}

// ExpectedMasked returns field f's reconstruction for row i of d with f
// itself masked (marked missing, as mask noise trains the network to fill
// in; a categorical field at its MISSING level): what the rest of the
// record leads the model to expect, whatever f's own value. Expected gives
// the reconstruction a score measured, which for a value far from
// anything in training is the network's extrapolation (an amount of 700
// reconstructed as 0), and so no answer to "what was expected here". It
// runs one row through the network on its own buffers, so Output and
// Expected still describe the last batch; num is valid until the next
// call.
func (s *Scorer) ExpectedMasked(d *Data, i, f int) (num []float32, level int) {
	m := s.m
	if s.one == nil {
		s.one, s.oneRow = newBuffers(m, 1, false), NewData(m, 1)
	}
	r, F, nc := s.oneRow, len(m.Fields), m.numCols
	copy(r.Num, d.Num[i*nc:(i+1)*nc])
	copy(r.Cat, d.Cat[i*m.catFields:(i+1)*m.catFields])
	copy(r.Miss, d.Miss[i*F:(i+1)*F])
	if c := m.catIdx[f]; c >= 0 {
		r.Cat[c] = 0
	} else {
		r.Miss[f] = true
	}
	m.fillInput(s.one, r, 0, 1)
	m.forward(s.one, 1)
	return m.expected(s.one.act[3][:m.out], f)
}

// expected reads field f's reconstruction from one row's outputs y.
func (m *Model) expected(y []float32, f int) (num []float32, level int) {
	off := m.outOff[f]
	if m.catIdx[f] < 0 {
		return y[off : off+m.Fields[f].Numeric], -1
	}
	z := y[off : off+m.Fields[f].Levels]
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	return nil, best
}

// Embed writes the bottleneck vectors of rows [from, from+n) into dst
// (n × Bottleneck).
func (s *Scorer) Embed(d *Data, from, n int, dst []float32) {
	m := s.m
	if n > s.b.cap {
		panic("ae: batch larger than the scorer's capacity")
	}
	m.fillInput(s.b, d, from, n)
	m.forward(s.b, n)
	copy(dst[:n*m.Bottleneck], s.b.act[1][:n*m.Bottleneck])
}

// Impute fills the missing fields of rows [from, from+n) of d in place from
// the reconstruction, feeding each estimate back as input for iters rounds
// (default 3 when iters ≤ 0). Missing categorical fields get their most
// likely level other than MISSING. d.Miss is left unchanged, so it still
// flags which fields were filled.
func (s *Scorer) Impute(d *Data, from, n, iters int) {
	m := s.m
	if n > s.b.cap {
		panic("ae: batch larger than the scorer's capacity")
	}
	if iters <= 0 {
		iters = 3
	}
	F := len(m.Fields)
	b := s.b
	m.fillInput(b, d, from, n)
	for it := range iters {
		m.forward(b, n)
		for r := range n {
			row := from + r
			y := b.act[3][r*m.out : (r+1)*m.out]
			for f := range F {
				missing := d.Miss[row*F+f]
				if c := m.catIdx[f]; c >= 0 {
					missing = missing || d.Cat[row*m.catFields+c] == 0
				}
				if !missing {
					continue
				}
				out := m.outOff[f]
				if c := m.catIdx[f]; c >= 0 {
					L := m.Fields[f].Levels
					z := y[out : out+L]
					// A real level: OTHER is a bucket, not a value to write.
					best := 1
					if L > 2 {
						best = 2
					}
					for j := best + 1; j < L; j++ {
						if z[j] > z[best] {
							best = j
						}
					}
					b.sp[r*F+f] = int32(m.sOff[f] + best)
					if it == iters-1 {
						d.Cat[row*m.catFields+c] = int32(best)
					}
					continue
				}
				w := m.Fields[f].Numeric
				x := b.x[r*m.numCols+m.numOff[f] : r*m.numCols+m.numOff[f]+w]
				for j := range w {
					v := y[out+j]
					x[j] = min(max(v, -m.InputClip), m.InputClip)
					if it == iters-1 {
						d.Num[row*m.numCols+m.numOff[f]+j] = v
					}
				}
				b.sp[r*F+f] = -1
			}
		}
	}
}

// sameBits reports whether a and b hold the same float32 bits: one
// memequal over the bytes, several times faster than comparing floats one
// by one, which a message scored alone paid on every call.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), 4*len(a))) == string(unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 4*len(b)))
}
