package evaluate

import (
	"bytes"
	"image/png"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const tol = 1e-12

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= tol
}

// lab builds labels from 0/1 integers.
func lab(xs ...int) []bool {
	out := make([]bool, len(xs))
	for i, x := range xs {
		out[i] = x == 1
	}
	return out
}

var nan = math.NaN()

func TestAPAndROCAUC(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		scores  []float64
		labels  []bool
		ap, auc float64
	}{
		{
			// sklearn documentation example.
			name:   "sklearn example",
			scores: []float64{0.1, 0.4, 0.35, 0.8},
			labels: lab(0, 0, 1, 1),
			ap:     0.5*1 + 0.5*2.0/3, auc: 0.75,
		},
		{
			name:   "perfect",
			scores: []float64{0.9, 0.8, 0.3, 0.2, 0.1},
			labels: lab(1, 1, 0, 0, 0),
			ap:     1, auc: 1,
		},
		{
			// Positives ranked 4th and 5th of 5: AP = .5*(1/4) + .5*(2/5).
			name:   "inverted",
			scores: []float64{0.1, 0.2, 0.3, 0.4, 0.5},
			labels: lab(1, 1, 0, 0, 0),
			ap:     0.325, auc: 0,
		},
		{
			// Positives at ranks 1, 3, 4, 7 of 7.
			name:   "distinct scores",
			scores: []float64{7, 6, 5, 4, 3, 2, 1},
			labels: lab(1, 0, 1, 1, 0, 0, 1),
			ap:     (1 + 2.0/3 + 3.0/4 + 4.0/7) / 4,
			auc:    (3 + 2 + 2 + 0) / 12.0,
		},
		{
			name:   "all tied",
			scores: []float64{0.5, 0.5, 0.5, 0.5},
			labels: lab(1, 0, 1, 0),
			ap:     0.5, auc: 0.5,
		},
		{
			// Groups {0.9: +,-} {0.5: +,-} {0.1: -}.
			// AP = .5*.5 + .5*.5; AUC pairs: 0.9+ → .5+1+1, 0.5+ → 0+.5+1.
			name:   "tied groups",
			scores: []float64{0.9, 0.9, 0.5, 0.5, 0.1},
			labels: lab(1, 0, 0, 1, 0),
			ap:     0.5, auc: 4.0 / 6,
		},
		{
			// Tie within the positives only does not matter.
			name:   "tie among positives",
			scores: []float64{2, 2, 1, 0},
			labels: lab(1, 1, 0, 0),
			ap:     1, auc: 1,
		},
		{
			// Groups {3: +} {2: +,-,-} {1: -}: AP = .5*1 + .5*(2/4).
			// AUC pairs: 3 → 3; 2 → .5+.5+1.
			name:   "tie straddling classes",
			scores: []float64{3, 2, 2, 2, 1},
			labels: lab(1, 1, 0, 0, 0),
			ap:     0.75, auc: 5.0 / 6,
		},
		{
			name:   "infinite scores",
			scores: []float64{inf, -inf, 0, inf},
			labels: lab(1, 0, 0, 0),
			ap:     0.5, auc: 2.5 / 3,
		},
		{
			name:   "no positives",
			scores: []float64{0.1, 0.2},
			labels: lab(0, 0),
			ap:     nan, auc: nan,
		},
		{
			name:   "no negatives",
			scores: []float64{0.1, 0.2},
			labels: lab(1, 1),
			ap:     1, auc: nan,
		},
		{
			name:   "NaN score",
			scores: []float64{0.1, nan},
			labels: lab(1, 0),
			ap:     nan, auc: nan,
		},
		{
			name: "empty",
			ap:   nan, auc: nan,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AveragePrecision(tt.scores, tt.labels); !near(got, tt.ap) {
				t.Errorf("AveragePrecision = %v, want %v", got, tt.ap)
			}
			if got := ROCAUC(tt.scores, tt.labels); !near(got, tt.auc) {
				t.Errorf("ROCAUC = %v, want %v", got, tt.auc)
			}
		})
	}
}

// bruteAUC is the Mann–Whitney statistic over all pairs.
func bruteAUC(scores []float64, labels []bool) float64 {
	var sum, pairs float64
	for i := range scores {
		for j := range scores {
			if !labels[i] || labels[j] {
				continue
			}
			pairs++
			switch {
			case scores[i] > scores[j]:
				sum++
			case scores[i] == scores[j]:
				sum += 0.5
			}
		}
	}
	return sum / pairs
}

// bruteAP evaluates sum_i (R_i - R_{i-1}) P_i by scanning every distinct
// threshold from the top.
func bruteAP(scores []float64, labels []bool) float64 {
	thr := slices.Clone(scores)
	slices.Sort(thr)
	thr = slices.Compact(thr)
	slices.Reverse(thr)
	var npos float64
	for _, l := range labels {
		if l {
			npos++
		}
	}
	var ap, r0 float64
	for _, th := range thr {
		var tp, fp float64
		for i, s := range scores {
			if s >= th {
				if labels[i] {
					tp++
				} else {
					fp++
				}
			}
		}
		r := tp / npos
		ap += (r - r0) * tp / (tp + fp)
		r0 = r
	}
	return ap
}

func TestAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		n := 2 + rng.IntN(40)
		levels := 1 + rng.IntN(10) // few levels → many ties
		scores := make([]float64, n)
		labels := make([]bool, n)
		for i := range n {
			scores[i] = float64(rng.IntN(levels))
			labels[i] = rng.Float64() < 0.3
		}
		labels[0], labels[1] = true, false
		if got, want := ROCAUC(scores, labels), bruteAUC(scores, labels); math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: ROCAUC = %v, brute force %v", trial, got, want)
		}
		if got, want := AveragePrecision(scores, labels), bruteAP(scores, labels); math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: AveragePrecision = %v, brute force %v", trial, got, want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	// Scores 10..1; positives at ranks 1, 2 and 5.
	scores := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	labels := lab(1, 1, 0, 0, 1, 0, 0, 0, 0, 0)
	tests := []struct {
		name   string
		scores []float64
		labels []bool
		ks     []int
		rates  []float64
		wantK  []AtK
		wantR  []AtRate
	}{
		{
			name:   "distinct",
			scores: scores,
			labels: labels,
			ks:     []int{1, 3, 5, 100},
			wantK:  []AtK{{1, 1}, {3, 2.0 / 3}, {5, 3.0 / 5}, {10, 3.0 / 10}},
			rates:  []float64{0.001, 0.1, 0.25, 0.3, 0.5, 1},
			wantR: []AtRate{
				{Rate: 0.001, Alerts: 1, Recall: 1.0 / 3, Precision: 1},
				{Rate: 0.1, Alerts: 1, Recall: 1.0 / 3, Precision: 1},
				{Rate: 0.25, Alerts: 3, Recall: 2.0 / 3, Precision: 2.0 / 3},
				// 0.3*10 is 3.0000000000000004 in float64: still 3 alerts.
				{Rate: 0.3, Alerts: 3, Recall: 2.0 / 3, Precision: 2.0 / 3},
				{Rate: 0.5, Alerts: 5, Recall: 1, Precision: 3.0 / 5},
				{Rate: 1, Alerts: 10, Recall: 1, Precision: 3.0 / 10},
			},
		},
		{
			// Groups {3: -} {2: +,-,-} {1: +}. Cutting 2 items takes one
			// of three tied items holding one positive: expected TP 1/3.
			name:   "tie at the cut",
			scores: []float64{2, 3, 2, 1, 2},
			labels: lab(1, 0, 0, 1, 0),
			ks:     []int{1, 2, 3, 4},
			wantK:  []AtK{{1, 0}, {2, 1.0 / 6}, {3, 2.0 / 9}, {4, 1.0 / 4}},
			rates:  []float64{0.4, 0.8},
			wantR: []AtRate{
				{Rate: 0.4, Alerts: 2, Recall: 1.0 / 6, Precision: 1.0 / 6},
				{Rate: 0.8, Alerts: 4, Recall: 0.5, Precision: 0.25},
			},
		},
		{
			name:   "no positives",
			scores: []float64{1, 2, 3},
			labels: lab(0, 0, 0),
			ks:     []int{2},
			wantK:  []AtK{{2, 0}},
			rates:  []float64{0.5},
			wantR:  []AtRate{{Rate: 0.5, Alerts: 2, Recall: nan, Precision: 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Evaluate(tt.scores, tt.labels, tt.ks, tt.rates)
			if err != nil {
				t.Fatal(err)
			}
			if r.N != len(tt.scores) {
				t.Errorf("N = %d, want %d", r.N, len(tt.scores))
			}
			if got, want := r.ROCAUC, ROCAUC(tt.scores, tt.labels); !near(got, want) {
				t.Errorf("ROCAUC = %v, want %v", got, want)
			}
			if got, want := r.AUPRC, AveragePrecision(tt.scores, tt.labels); !near(got, want) {
				t.Errorf("AUPRC = %v, want %v", got, want)
			}
			if len(r.PrecisionAtK) != len(tt.wantK) {
				t.Fatalf("PrecisionAtK = %v, want %v", r.PrecisionAtK, tt.wantK)
			}
			for i, w := range tt.wantK {
				if g := r.PrecisionAtK[i]; g.K != w.K || !near(g.Precision, w.Precision) {
					t.Errorf("PrecisionAtK[%d] = %+v, want %+v", i, g, w)
				}
			}
			if len(r.RecallAtRate) != len(tt.wantR) {
				t.Fatalf("RecallAtRate = %v, want %v", r.RecallAtRate, tt.wantR)
			}
			for i, w := range tt.wantR {
				g := r.RecallAtRate[i]
				if g.Rate != w.Rate || g.Alerts != w.Alerts || !near(g.Recall, w.Recall) || !near(g.Precision, w.Precision) {
					t.Errorf("RecallAtRate[%d] = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		labels []bool
		ks     []int
		rates  []float64
		plot   bool // PlotPNG must fail too
	}{
		{name: "length mismatch", scores: []float64{1, 2, 3}, labels: lab(1, 0), plot: true},
		{name: "NaN score", scores: []float64{1, nan}, labels: lab(1, 0), plot: true},
		{name: "empty", plot: true},
		{name: "k zero", scores: []float64{1, 2}, labels: lab(1, 0), ks: []int{0}},
		{name: "rate zero", scores: []float64{1, 2}, labels: lab(1, 0), rates: []float64{0}},
		{name: "rate above one", scores: []float64{1, 2}, labels: lab(1, 0), rates: []float64{1.5}},
		{name: "rate NaN", scores: []float64{1, 2}, labels: lab(1, 0), rates: []float64{nan}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Evaluate(tt.scores, tt.labels, tt.ks, tt.rates); err == nil {
				t.Error("Evaluate: no error")
			}
			if !tt.plot {
				return
			}
			if err := PlotPNG(new(bytes.Buffer), tt.scores, tt.labels, ""); err == nil {
				t.Error("PlotPNG: no error")
			}
		})
	}
}

func TestLengthMismatchPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"ROCAUC":           func() { ROCAUC([]float64{1}, nil) },
		"AveragePrecision": func() { AveragePrecision([]float64{1}, nil) },
		"PRCurve":          func() { PRCurve([]float64{1}, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

func TestDoesNotMutateOrDependOnOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 1000
	scores := make([]float64, n)
	labels := make([]bool, n)
	for i := range n {
		scores[i] = math.Round(rng.NormFloat64()*10) / 10 // ties
		labels[i] = rng.Float64() < 0.1
	}
	s0, l0 := slices.Clone(scores), slices.Clone(labels)
	ks, rates := []int{10, 50}, []float64{0.01, 0.05}
	r1, err := Evaluate(scores, labels, ks, rates)
	if err != nil {
		t.Fatal(err)
	}
	PRCurve(scores, labels)
	if err := PlotPNG(new(bytes.Buffer), scores, labels, "x"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(scores, s0) || !slices.Equal(labels, l0) {
		t.Fatal("input slices were modified")
	}

	perm := rng.Perm(n)
	ps, pl := make([]float64, n), make([]bool, n)
	for i, j := range perm {
		ps[i], pl[i] = scores[j], labels[j]
	}
	r2, err := Evaluate(ps, pl, ks, rates)
	if err != nil {
		t.Fatal(err)
	}
	// Integer counts drive every figure, so results agree exactly.
	if !equalReports(r1, r2) {
		t.Errorf("report depends on input order:\n%+v\n%+v", r1, r2)
	}
}

func equalReports(a, b Report) bool {
	return a.N == b.N && a.Positives == b.Positives && a.ROCAUC == b.ROCAUC && a.AUPRC == b.AUPRC &&
		slices.Equal(a.PrecisionAtK, b.PrecisionAtK) && slices.Equal(a.RecallAtRate, b.RecallAtRate)
}

func TestPRCurve(t *testing.T) {
	tests := []struct {
		name           string
		scores         []float64
		labels         []bool
		recall, precis []float64
	}{
		{
			// sklearn precision_recall_curve gives precision [.5 .667 .5 1 1],
			// recall [1 1 .5 .5 0]; the threshold 0.1 point is dropped here
			// as there, since full recall is reached at 0.35.
			name:   "sklearn example",
			scores: []float64{0.1, 0.4, 0.35, 0.8},
			labels: lab(0, 0, 1, 1),
			recall: []float64{0, 0.5, 0.5, 1},
			precis: []float64{1, 1, 0.5, 2.0 / 3},
		},
		{
			name:   "all tied",
			scores: []float64{1, 1, 1},
			labels: lab(1, 0, 0),
			recall: []float64{0, 1},
			precis: []float64{1, 1.0 / 3},
		},
		{name: "no positives", scores: []float64{1, 2}, labels: lab(0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, p := PRCurve(tt.scores, tt.labels)
			if !slices.EqualFunc(r, tt.recall, near) || !slices.EqualFunc(p, tt.precis, near) {
				t.Errorf("PRCurve = %v, %v; want %v, %v", r, p, tt.recall, tt.precis)
			}
			// The step area under the curve is the average precision.
			if len(r) > 0 {
				var area float64
				for i := 1; i < len(r); i++ {
					area += (r[i] - r[i-1]) * p[i]
				}
				if ap := AveragePrecision(tt.scores, tt.labels); !near(area, ap) {
					t.Errorf("area %v != AveragePrecision %v", area, ap)
				}
			}
		})
	}
}

func TestAlertCount(t *testing.T) {
	tests := []struct {
		rate float64
		n    int
		want int
	}{
		{0.001, 1_000_000, 1000},
		{0.005, 1_000_000, 5000},
		{0.01, 1_000_000, 10000},
		{0.07, 100, 7},
		{0.001, 999, 1},
		{0.0015, 1000, 2},
		{1, 5, 5},
		{1e-12, 5, 1},
	}
	for _, tt := range tests {
		if got := alertCount(tt.rate, tt.n); got != tt.want {
			t.Errorf("alertCount(%v, %d) = %d, want %d", tt.rate, tt.n, got, tt.want)
		}
	}
}

func TestWriteText(t *testing.T) {
	r, err := Evaluate([]float64{0.1, 0.4, 0.35, 0.8}, lab(0, 0, 1, 1), []int{2}, []float64{0.5})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ROC AUC", "0.7500", "AUPRC", "0.8333", "Precision@2", "Recall@50% (2 alerts)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPlotPNG(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 20000
	logNormal := make([]float64, n) // positive, heavy-tailed: log x axis
	shifted := make([]float64, n)   // has negative values: linear x axis
	labels := make([]bool, n)
	for i := range n {
		labels[i] = rng.Float64() < 0.01
		z := rng.NormFloat64()
		if labels[i] {
			z += 2.5
		}
		logNormal[i] = math.Exp(z)
		shifted[i] = z
	}
	allNeg := make([]bool, n)
	constant := make([]float64, n)
	tests := []struct {
		name   string
		scores []float64
		labels []bool
		title  string
	}{
		{"log axis", logNormal, labels, "Autoencoder, test split"},
		{"linear axis", shifted, labels, ""},
		{"no positives", shifted, allNeg, "no positives"},
		{"constant scores", constant, labels, ""},
		{"tiny", []float64{0.1, 0.4, 0.35, 0.8, math.Inf(1)}, lab(0, 0, 1, 1, 1), "tiny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := PlotPNG(&buf, tt.scores, tt.labels, tt.title); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 500 {
				t.Errorf("image is %dx%d, want 1200x500", b.Dx(), b.Dy())
			}
		})
	}
}

func TestHistRange(t *testing.T) {
	inf := math.Inf(1)
	seq := func(from, step float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = from + step*float64(i)
		}
		return out
	}
	tests := []struct {
		name     string
		scores   []float64
		labels   []bool
		lo, hi   float64
		wantLogX bool
	}{
		{"three decades", []float64{0.01, 1, 10}, lab(0, 0, 1), 0.01, 10, true},
		{"one decade", []float64{1, 5, 10}, lab(0, 1, 0), 1, 10, false},
		{"zero score", []float64{0, 1, 1000}, lab(0, 0, 1), 0, 1000, false},
		{"infinite ignored", []float64{-inf, 1, 2, inf}, lab(0, 0, 1, 1), 1, 2, false},
		{"all infinite", []float64{-inf, inf}, lab(0, 1), -1, 1, false},
		// 2000 negatives 1000..2999: percentiles at index 1 and 1998;
		// the positive at 5000 widens the range.
		{"class percentiles", append(seq(1000, 1, 2000), 5000), append(make([]bool, 2000), true), 1001, 5000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newCurve(tt.scores, tt.labels)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi, logX := histRange(c)
			if lo != tt.lo || hi != tt.hi || logX != tt.wantLogX {
				t.Errorf("histRange = %v, %v, %v; want %v, %v, %v", lo, hi, logX, tt.lo, tt.hi, tt.wantLogX)
			}
		})
	}
}

func benchData(n int) ([]float64, []bool) {
	rng := rand.New(rand.NewPCG(7, 8))
	scores := make([]float64, n)
	labels := make([]bool, n)
	for i := range n {
		labels[i] = rng.Float64() < 0.002
		z := rng.NormFloat64()
		if labels[i] {
			z += 3
		}
		scores[i] = math.Exp(z)
	}
	return scores, labels
}

func BenchmarkEvaluate1e6(b *testing.B) {
	scores, labels := benchData(1_000_000)
	for b.Loop() {
		if _, err := Evaluate(scores, labels, []int{100, 1000}, []float64{0.001, 0.005, 0.01}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlotPNG1e6(b *testing.B) {
	scores, labels := benchData(1_000_000)
	for b.Loop() {
		if err := PlotPNG(new(bytes.Buffer), scores, labels, "benchmark"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseLabel(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    bool
		wantErr bool
	}{
		{"1", true, false}, {"0", false, false}, {"1.00", true, false}, {"0.0", false, false}, {"+1", true, false},
		{"2", true, false}, {"true", true, false}, {"False", false, false}, {" yes ", true, false}, {"fraud", true, false},
		{"-1", false, true}, {"", false, true}, {"maybe", false, true}, {"NaN", false, true},
	} {
		got, err := ParseLabel(c.in)
		if (err != nil) != c.wantErr || (err == nil && got != c.want) {
			t.Errorf("ParseLabel(%q) = %v, %v", c.in, got, err)
		}
	}
}

// TestStratifiedSplit: each class is split 70/30 (rounded), the parts are
// disjoint, cover every row and are sorted, and a seed gives one split.
func TestStratifiedSplit(t *testing.T) {
	// 101 positives and 904 negatives: 70.7 and 632.8 round up, so
	// truncating would give other counts.
	labels := make([]bool, 1005)
	for i := range labels {
		labels[i] = i%10 == 3
	}
	fit, test := StratifiedSplit(labels, 0.7, 1)
	pos := func(idx []int) (n int) {
		for _, i := range idx {
			if labels[i] {
				n++
			}
		}
		return n
	}
	if len(fit) != 704 || pos(fit) != 71 || len(test) != 301 || pos(test) != 30 {
		t.Fatalf("fit %d rows (%d positive), test %d (%d): want 704 (71) and 301 (30)", len(fit), pos(fit), len(test), pos(test))
	}
	all := append(slices.Clone(fit), test...)
	slices.Sort(all)
	for i, v := range all {
		if v != i {
			t.Fatalf("the parts do not cover each row once: %d at %d", v, i)
		}
	}
	if !slices.IsSorted(fit) || !slices.IsSorted(test) {
		t.Fatal("parts not in file order")
	}
	again, _ := StratifiedSplit(labels, 0.7, 1)
	other, _ := StratifiedSplit(labels, 0.7, 2)
	if !slices.Equal(again, fit) || slices.Equal(other, fit) {
		t.Fatal("a seed does not give one split")
	}
}
