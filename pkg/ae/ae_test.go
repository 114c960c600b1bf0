package ae

import (
	"math"
	"math/rand/v2"
	"testing"
)

var testFields = []Field{
	{Name: "amount", Numeric: 1},
	{Name: "time", Numeric: 4},
	{Name: "merchant", Levels: 5},
	{Name: "flag", Numeric: 1},
	{Name: "country", Levels: 3},
}

// randomData draws rows where fields depend on each other, so there is
// structure to learn: y = 2x, merchant from x's sign, time from x.
func randomData(m *Model, n int, seed uint64) *Data {
	rng := rand.New(rand.NewPCG(seed, 1))
	d := NewData(m, n)
	for r := range n {
		x := float32(rng.NormFloat64())
		num := d.Num[r*m.numCols : (r+1)*m.numCols]
		num[0] = x
		for j := range 4 {
			num[1+j] = float32(math.Sin(float64(x) + float64(j)))
		}
		num[5] = 2*x + 0.1*float32(rng.NormFloat64())
		lvl := int32(2)
		if x > 0 {
			lvl = 3
		}
		if x > 1 {
			lvl = 4
		}
		d.Cat[r*m.catFields] = lvl
		d.Cat[r*m.catFields+1] = int32(1 + rng.IntN(2))
		if rng.Float64() < 0.05 {
			d.Miss[r*len(m.Fields)+3] = true
			num[5] = 0
		}
	}
	return d
}

// TestGradient compares the backward pass with central finite differences
// of the training loss, for every layer's weights and biases, with every
// kernel (the backward products run on them; hidden width 7 and
// bottleneck 3 make every panel ragged).
func TestGradient(t *testing.T) { kernels(t, testGradient) }

func testGradient(t *testing.T) {
	m, err := New(testFields, 7, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m.init(rng)
	// Non-zero biases so that ReLU kinks are not all at one place.
	for l := range 4 {
		for i := range m.B[l] {
			m.B[l][i] = float32(rng.NormFloat64() * 0.1)
		}
	}
	m.refresh()
	d := randomData(m, 6, 3)
	cfg := Config{BatchSize: 12}.withDefaults()
	tr := newTrainer(m, cfg, d)
	rows := []int{0, 1, 2, 3, 4, 5}
	b := tr.buf[0]
	loss := func() float64 {
		m.fillInput(b, d, 0, 6)
		m.forward(b, 6)
		return m.fieldErrors(b, d, 0, 6, nil, 0, true) / 6
	}
	// Analytic gradient, clean input (no noise) via the same path as training.
	m.fillInput(b, d, 0, 6)
	m.forward(b, 6)
	m.fieldErrors(b, d, 0, 6, b.grad[3], 1.0/6, true)
	tr.backward(0, b, len(rows))

	const eps = 2e-3
	checked := 0
	for l := range 4 {
		for _, p := range []struct {
			name string
			w, g []float32
		}{{"W", m.W[l], tr.gw[0][l]}, {"B", m.B[l], tr.gb[0][l]}} {
			for i := 0; i < len(p.w); i += 1 + len(p.w)/17 {
				orig := p.w[i]
				p.w[i] = orig + eps
				m.refresh()
				up := loss()
				p.w[i] = orig - eps
				m.refresh()
				down := loss()
				p.w[i] = orig
				m.refresh()
				num := (up - down) / (2 * eps)
				ana := float64(p.g[i])
				if diff := math.Abs(num - ana); diff > 2e-3+0.03*math.Abs(num) {
					t.Errorf("layer %d %s[%d]: analytic %.6f, numeric %.6f", l, p.name, i, ana, num)
				}
				checked++
			}
		}
	}
	if checked < 40 {
		t.Fatalf("checked only %d parameters", checked)
	}
}

func TestTrainLearnsStructure(t *testing.T) {
	m0, _ := New(testFields, 32, 8)
	d := randomData(m0, 4000, 7)
	var epochs int
	m, res, err := Train(testFields, d, Config{Seed: 1, Epochs: 15, Hidden: 32, Bottleneck: 8, Progress: func(EpochStats) { epochs++ }})
	if err != nil {
		t.Fatal(err)
	}
	if epochs != res.Epochs || len(res.History) != epochs {
		t.Fatalf("progress called %d times for %d epochs", epochs, res.Epochs)
	}
	first := res.History[0].ValLoss
	if !(res.ValLoss < first*0.7) {
		t.Fatalf("validation loss went from %.3f to %.3f: nothing learned", first, res.ValLoss)
	}
	// An anomaly (y = -2x instead of 2x, wrong merchant) scores above
	// nearly all normal rows.
	test := randomData(m, 1000, 99)
	anom := randomData(m, 1, 100)
	anom.Num[5] = -2 * anom.Num[0]
	anom.Num[0] = 2.5
	anom.Cat[0] = 2
	s := NewScorer(m, 256)
	scores := make([]float32, test.N)
	s.ScoreAll(test, scores)
	var as [1]float32
	contrib := make([]float32, len(testFields))
	s.Score(anom, 0, 1, as[:], contrib)
	above := 0
	for _, v := range scores {
		if v >= as[0] {
			above++
		}
	}
	if above > 10 {
		t.Fatalf("anomaly score %.2f is beaten by %d of 1000 normal rows", as[0], above)
	}
	var sum float32
	for _, c := range contrib {
		sum += c
	}
	if math.Abs(float64(sum-as[0])) > 1e-3*float64(as[0]) {
		t.Fatalf("contributions sum to %v, score is %v", sum, as[0])
	}
}

func TestTrainDeterministic(t *testing.T) {
	m0, _ := New(testFields, 16, 4)
	d := randomData(m0, 1500, 5)
	cfg := Config{Seed: 42, Epochs: 3, Hidden: 16, Bottleneck: 4}
	a, _, err := Train(testFields, d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := Train(testFields, d, cfg)
	for l := range 4 {
		for i := range a.W[l] {
			if a.W[l][i] != b.W[l][i] {
				t.Fatalf("layer %d weight %d differs between runs with the same seed", l, i)
			}
		}
	}
	cfg.Seed = 43
	c, _, _ := Train(testFields, d, cfg)
	if c.W[0][0] == a.W[0][0] && c.W[3][5] == a.W[3][5] {
		t.Fatal("different seeds gave identical weights")
	}
}

func TestImputeBeatsColumnMeans(t *testing.T) {
	m0, _ := New(testFields, 32, 8)
	d := randomData(m0, 6000, 11)
	m, _, err := Train(testFields, d, Config{Seed: 3, Epochs: 25, Hidden: 32, Bottleneck: 8, MaskNoise: 0.15})
	if err != nil {
		t.Fatal(err)
	}
	test := randomData(m, 500, 12)
	truthY := make([]float32, test.N)
	truthMerchant := make([]int32, test.N)
	F := len(m.Fields)
	var meanY float64
	for r := range test.N {
		truthY[r] = test.Num[r*m.numCols+5]
		truthMerchant[r] = test.Cat[r*m.catFields]
		meanY += float64(truthY[r]) / float64(test.N)
		// Hide the flag column and the merchant.
		test.Miss[r*F+3] = true
		test.Num[r*m.numCols+5] = 0
		test.Cat[r*m.catFields] = 0
		test.Miss[r*F+2] = true
	}
	s := NewScorer(m, 512)
	s.Impute(test, 0, test.N, 3)
	var seDAE, seMean float64
	hits := 0
	for r := range test.N {
		got := float64(test.Num[r*m.numCols+5])
		seDAE += (got - float64(truthY[r])) * (got - float64(truthY[r]))
		seMean += (meanY - float64(truthY[r])) * (meanY - float64(truthY[r]))
		if test.Cat[r*m.catFields] == truthMerchant[r] {
			hits++
		}
		if !test.Miss[r*F+3] {
			t.Fatal("imputation cleared the filled flag")
		}
	}
	if !(seDAE < 0.25*seMean) {
		t.Fatalf("imputed squared error %.1f, column mean %.1f", seDAE, seMean)
	}
	// The most frequent merchant level is right for about half the rows.
	if hits < test.N*8/10 {
		t.Fatalf("merchant imputed correctly for %d of %d rows", hits, test.N)
	}
}

func TestBadLayout(t *testing.T) {
	for _, f := range [][]Field{
		nil,
		{{Name: "a"}},
		{{Name: "a", Numeric: 1, Levels: 3}},
		{{Name: "a", Levels: 1}},
	} {
		if _, err := New(f, 4, 2); err == nil {
			t.Errorf("New(%v) accepted a bad layout", f)
		}
	}
	if _, err := New(testFields, 0, 2); err == nil {
		t.Error("New accepted zero hidden units")
	}
}

func TestScoreNothing(t *testing.T) {
	for _, hidden := range []int{32, 48} { // 48: padded weights
		m, err := New(testFields, hidden, 8)
		if err != nil {
			t.Fatal(err)
		}
		s := NewScorer(m, 16)
		d := randomData(m, 4, 1)
		scores := []float32{-1}
		s.Score(d, 0, 0, scores[:0], nil)
		if scores[0] != -1 {
			t.Fatalf("hidden %d: Score(0 rows) wrote %v", hidden, scores)
		}
	}
}

// TestConstantFieldIsNotNoise: a field that never varies in training (a
// timestamp whose cycles the data did not cover encodes as zeros) gets a
// normaliser no smaller than the fields' mean, so the network's small
// output noise on it is never a top reason; a value it never took still
// stands out.
func TestConstantFieldIsNotNoise(t *testing.T) {
	m0, _ := New(testFields, 32, 8)
	d := randomData(m0, 4000, 7)
	for r := range d.N { // "time" (columns 1..4) constant
		clear(d.Num[r*m0.numCols+1 : r*m0.numCols+5])
	}
	m, _, err := Train(testFields, d, Config{Seed: 1, Epochs: 10, Hidden: 32, Bottleneck: 8})
	if err != nil {
		t.Fatal(err)
	}
	mean := meanNorm(m)
	// fitNorm's mean includes the constant field's own (tiny) error.
	if m.Norm[1] < 0.5*mean {
		t.Fatalf("constant field's normaliser %g, fields' mean %g", m.Norm[1], mean)
	}
	test := randomData(m, 1000, 99)
	for r := range test.N {
		clear(test.Num[r*m.numCols+1 : r*m.numCols+5])
	}
	s := NewScorer(m, 1000)
	scores := make([]float32, test.N)
	contrib := make([]float32, test.N*len(m.Fields))
	s.Score(test, 0, test.N, scores, contrib)
	top := 0
	for r := range test.N {
		c := contrib[r*len(m.Fields) : (r+1)*len(m.Fields)]
		best := 0
		for f := range c {
			if c[f] > c[best] {
				best = f
			}
		}
		if best == 1 {
			top++
		}
	}
	if top > 10 {
		t.Fatalf("the constant field is the top reason of %d of 1000 rows", top)
	}
	// A value the field never took stands out above every normal row.
	var most float32
	for r := range test.N {
		most = max(most, contrib[r*len(m.Fields)+1])
	}
	odd := randomData(m, 1, 5)
	odd.Num[1], odd.Num[2] = 1, -1
	var sc [1]float32
	c := make([]float32, len(m.Fields))
	s.Score(odd, 0, 1, sc[:], c)
	if !(c[1] > 1.5*most) {
		t.Fatalf("a new value of the constant field contributes %v; normal rows at most %v", c[1], most)
	}
}

// TestSoftTargets: with SoftTargets a numeric value beyond ±softFrom() is
// measured against that start plus the log of its excess, so it still
// scores above a nearer one but not as its square would; a value within
// it, and every other field, score exactly as against the raw target.
// Both starts (the clip, where bundles without SoftFrom begin, and
// SoftFrom), both layouts (all-numeric: one vector pass over the batch
// with a Go tail; mixed: row by row), every kernel, and a row scored alone.
func TestSoftTargets(t *testing.T) {
	kernels(t, func(t *testing.T) {
		numeric := []Field{{Name: "a", Numeric: 1}, {Name: "b", Numeric: 1}, {Name: "c", Numeric: 1}}
		for _, fields := range [][]Field{numeric, testFields} {
			for _, start := range []float32{0, 50} {
				m, err := New(fields, 32, 8)
				if err != nil {
					t.Fatal(err)
				}
				m.init(rand.New(rand.NewPCG(3, 3)))
				m.SoftFrom = start
				for f := range m.Norm {
					m.Norm[f] = 0.5
				}
				from := m.softFrom()
				if start == 0 && from != m.InputClip || start > 0 && from != start {
					t.Fatalf("SoftFrom %v: soft targets begin at %v", start, from)
				}
				F := len(fields)
				// Field 0's values: within the clip, then ever further out,
				// in the rows the vector pass covers and in its tail.
				vals := []float32{5, 30, 200, -5000, 1e6}
				d := NewData(m, len(vals))
				rng := rand.New(rand.NewPCG(4, 4))
				for i := range d.Num {
					d.Num[i] = float32(rng.NormFloat64())
				}
				for r, v := range vals {
					d.Num[r*m.numCols+m.numOff[0]] = v
				}
				score := func(soft bool, from, n int) ([]float32, []float32) {
					m.SoftTargets = soft
					s := NewScorer(m, len(vals))
					sc, c := make([]float32, n), make([]float32, n*F)
					s.Score(d, from, n, sc, c)
					return sc, c
				}
				_, raw := score(false, 0, len(vals))
				_, soft := score(true, 0, len(vals))
				s := NewScorer(m, len(vals))
				s.Score(d, 0, len(vals), make([]float32, len(vals)), nil)
				for r, v := range vals {
					y := s.Output(r)[m.outOff[0]]
					e := y - softTarget(v, from)
					if want := rootAtLeast0(e * e * (1 / m.Norm[0])); soft[r*F] != want {
						t.Fatalf("%d fields, from %v, value %v: contribution %v, want %v", F, from, v, soft[r*F], want)
					}
					if abs32(v) <= from && soft[r*F] != raw[r*F] {
						t.Fatalf("%d fields, from %v: a value %v within it contributes %v, %v against the raw target", F, from, v, soft[r*F], raw[r*F])
					}
					if abs32(v) > from && !(soft[r*F] < raw[r*F]) {
						t.Fatalf("%d fields, from %v: a value %v beyond it contributes %v, %v against the raw target", F, from, v, soft[r*F], raw[r*F])
					}
					for f := 1; f < F; f++ {
						if soft[r*F+f] != raw[r*F+f] {
							t.Fatalf("%d fields, value %v: field %d contributes %v, %v against the raw target", F, v, f, soft[r*F+f], raw[r*F+f])
						}
					}
					// A row scored alone gets the batch's bits.
					_, one := score(true, r, 1)
					if one[0] != soft[r*F] {
						t.Fatalf("%d fields, value %v: alone %v, in the batch %v", F, v, one[0], soft[r*F])
					}
				}
				for r := 1; r < len(vals); r++ {
					if !(soft[r*F] > soft[(r-1)*F]) {
						t.Fatalf("%d fields, from %v: contributions %v (raw %v) for values %v", F, from, soft, raw, vals)
					}
				}
			}
		}
		if got, want := softTarget(-5000, 10), float32(-(10 + math.Log1p(4990))); got != want {
			t.Fatalf("softTarget(-5000, 10) = %v, want %v", got, want)
		}
		if got, want := softTarget(-5000, 50), float32(-(50 + math.Log1p(4950))); got != want {
			t.Fatalf("softTarget(-5000, 50) = %v, want %v", got, want)
		}
	})
}

// TestTrainSetsSoftTargets: new models measure errors against soft
// targets unless RawTargets asks for the old way.
func TestTrainSetsSoftTargets(t *testing.T) {
	m0, _ := New(testFields, 16, 4)
	d := randomData(m0, 200, 1)
	for _, raw := range []bool{false, true} {
		m, _, err := Train(testFields, d, Config{Seed: 1, Epochs: 1, Hidden: 16, Bottleneck: 4, RawTargets: raw})
		if err != nil {
			t.Fatal(err)
		}
		if m.SoftTargets == raw {
			t.Fatalf("RawTargets %v: SoftTargets %v", raw, m.SoftTargets)
		}
		if want := map[bool]float32{false: SoftFromClips * m.InputClip, true: 0}[raw]; m.SoftFrom != want {
			t.Fatalf("RawTargets %v: soft targets begin at %v, want %v", raw, m.SoftFrom, want)
		}
	}
}

// TestNormFloor: a field the network reconstructs almost exactly (here a
// copy of another) gets a normaliser of at least normFloor times the
// fields' mean, not its own tiny error, which would make its smallest
// deviation the largest contribution of all.
func TestNormFloor(t *testing.T) {
	fields := []Field{{Name: "x", Numeric: 1}, {Name: "copy", Numeric: 1}, {Name: "n1", Numeric: 1}, {Name: "n2", Numeric: 1}}
	m0, _ := New(fields, 32, 8)
	d := NewData(m0, 3000)
	rng := rand.New(rand.NewPCG(8, 8))
	for r := range d.N {
		x := float32(rng.NormFloat64())
		d.Num[r*4], d.Num[r*4+1] = x, x
		d.Num[r*4+2], d.Num[r*4+3] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	m, _, err := Train(fields, d, Config{Seed: 1, Epochs: 10, Hidden: 32, Bottleneck: 8})
	if err != nil {
		t.Fatal(err)
	}
	mean := meanNorm(m)
	// Floored at half the mean before flooring: 0.48 of the mean after,
	// here; its own error (the old floor of a thousandth) was 0.29.
	if !(m.Norm[1] >= 0.4*mean) || !(m.Norm[1] <= mean) {
		t.Fatalf("normalisers %v: the copied field's is not floored at %v of the mean", m.Norm, normFloor)
	}
}

// meanNorm is the mean of m's normalisers, the scale fitNorm floors by.
func meanNorm(m *Model) float32 {
	var mean float32
	for _, v := range m.Norm {
		mean += v / float32(len(m.Norm))
	}
	return mean
}
