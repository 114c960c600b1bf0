package evaluate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Report holds detection-quality figures for scores (higher = more
// anomalous) against labels. See the package documentation for the exact
// definitions and for the handling of ties and of single-class input.
type Report struct {
	N, Positives int
	ROCAUC       float64  // area under ROC, ties handled by averaging (Mann–Whitney)
	AUPRC        float64  // average precision, as sklearn.metrics.average_precision_score (step-wise, ties grouped)
	PrecisionAtK []AtK    // for requested k values (k capped at N)
	RecallAtRate []AtRate // for requested alert rates: alert the top ceil(rate*N) scores
}

// AtK is the precision among the K highest scores.
type AtK struct {
	K         int
	Precision float64
}

// AtRate is the quality of alerting on the top Alerts = ceil(Rate*N) scores.
type AtRate struct {
	Rate              float64
	Alerts            int
	Recall, Precision float64
}

var (
	errNaN   = errors.New("evaluate: NaN score")
	errEmpty = errors.New("evaluate: no scores")
)

func errLength(ns, nl int) error {
	return fmt.Errorf("evaluate: %d scores but %d labels", ns, nl)
}

// Evaluate computes the report for scores against labels, with precision
// at each k in ks and recall and precision at each alert rate in rates.
//
// It returns an error if the slices differ in length, are empty, or
// contain a NaN score, if some k < 1, or if some rate is not in (0, 1].
// Single-class labels are not an error: with no positives ROCAUC, AUPRC
// and every recall are NaN; with no negatives ROCAUC is NaN and AUPRC is 1.
func Evaluate(scores []float64, labels []bool, ks []int, rates []float64) (Report, error) {
	for _, k := range ks {
		if k < 1 {
			return Report{}, fmt.Errorf("evaluate: k = %d, want k >= 1", k)
		}
	}
	for _, r := range rates {
		if !(r > 0 && r <= 1) {
			return Report{}, fmt.Errorf("evaluate: alert rate %g not in (0, 1]", r)
		}
	}
	c, err := newCurve(scores, labels)
	if err != nil {
		return Report{}, err
	}
	n := c.n()
	rep := Report{
		N:         n,
		Positives: c.pos,
		ROCAUC:    c.rocAUC(),
		AUPRC:     c.averagePrecision(),
	}
	if len(ks) > 0 {
		rep.PrecisionAtK = make([]AtK, len(ks))
		for i, k := range ks {
			k = min(k, n)
			rep.PrecisionAtK[i] = AtK{K: k, Precision: c.truePositivesAt(k) / float64(k)}
		}
	}
	if len(rates) > 0 {
		rep.RecallAtRate = make([]AtRate, len(rates))
		for i, r := range rates {
			a := alertCount(r, n)
			tp := c.truePositivesAt(a)
			rep.RecallAtRate[i] = AtRate{
				Rate:      r,
				Alerts:    a,
				Recall:    tp / float64(c.pos), // NaN if no positives
				Precision: tp / float64(a),
			}
		}
	}
	return rep, nil
}

// AveragePrecision returns the average precision (AUPRC) of scores against
// labels, as sklearn.metrics.average_precision_score. It returns NaN for
// empty input, a NaN score or no positives, and panics if the lengths differ.
func AveragePrecision(scores []float64, labels []bool) float64 {
	c, ok := mustCurve(scores, labels)
	if !ok {
		return math.NaN()
	}
	return c.averagePrecision()
}

// ROCAUC returns the area under the ROC curve of scores against labels,
// with ties counted as 1/2 (Mann–Whitney), as sklearn.metrics.roc_auc_score.
// It returns NaN for empty input, a NaN score or single-class labels, and
// panics if the lengths differ.
func ROCAUC(scores []float64, labels []bool) float64 {
	c, ok := mustCurve(scores, labels)
	if !ok {
		return math.NaN()
	}
	return c.rocAUC()
}

// PRCurve returns the points of the precision–recall curve, for plotting.
//
// The first point is (recall 0, precision 1). Then comes one point per
// distinct score, from the highest score down, so recall never decreases;
// the curve stops at the first threshold that reaches recall 1. These are
// the points of sklearn.metrics.precision_recall_curve in reverse order.
// Drawn as a step function (precision of point i held over the recall
// interval from point i−1 to point i), the area under it is
// [AveragePrecision].
//
// PRCurve returns nil slices if there are no positives, the input is empty
// or it holds a NaN score, and panics if the lengths differ.
func PRCurve(scores []float64, labels []bool) (recall, precision []float64) {
	c, ok := mustCurve(scores, labels)
	if !ok || c.pos == 0 {
		return nil, nil
	}
	return c.prCurve()
}

func mustCurve(scores []float64, labels []bool) (*curve, bool) {
	if len(scores) != len(labels) {
		panic(errLength(len(scores), len(labels)))
	}
	c, err := newCurve(scores, labels)
	return c, err == nil
}

// alertCount returns ceil(rate*n), treating values within a relative 1e-9
// of an integer as that integer, and never less than 1 or more than n.
func alertCount(rate float64, n int) int {
	x := rate * float64(n)
	a := math.Ceil(x)
	if r := math.Round(x); math.Abs(x-r) <= 1e-9*math.Max(1, x) {
		a = r
	}
	return min(max(int(a), 1), n)
}

// curve is the cumulative confusion counts at every distinct score.
// thr[i] is the i-th largest distinct score; tp[i] and fp[i] count the
// positives and negatives with score >= thr[i].
type curve struct {
	thr      []float64
	tp, fp   []int
	pos, neg int

	// The scores of each class in ascending order, kept for plotting.
	posSorted, negSorted []float64
}

func (c *curve) n() int { return c.pos + c.neg }

// newCurve validates the input and builds the curve. Positive and negative
// scores are copied and sorted separately (slices.Sort on float64 is a
// fast pdqsort) and then merged from the top.
func newCurve(scores []float64, labels []bool) (*curve, error) {
	if len(scores) != len(labels) {
		return nil, errLength(len(scores), len(labels))
	}
	if len(scores) == 0 {
		return nil, errEmpty
	}
	var np int
	for i, s := range scores {
		if math.IsNaN(s) {
			return nil, errNaN
		}
		if labels[i] {
			np++
		}
	}
	pos := make([]float64, 0, np)
	neg := make([]float64, 0, len(scores)-np)
	for i, s := range scores {
		if labels[i] {
			pos = append(pos, s)
		} else {
			neg = append(neg, s)
		}
	}
	slices.Sort(pos)
	slices.Sort(neg)

	c := &curve{
		pos: len(pos), neg: len(neg),
		posSorted: pos, negSorted: neg,
		thr: make([]float64, 0, len(scores)),
		tp:  make([]int, 0, len(scores)),
		fp:  make([]int, 0, len(scores)),
	}
	i, j := len(pos)-1, len(neg)-1 // walk both from the largest score down
	var tp, fp int
	for i >= 0 || j >= 0 {
		var t float64
		switch {
		case i < 0:
			t = neg[j]
		case j < 0:
			t = pos[i]
		default:
			t = max(pos[i], neg[j])
		}
		for i >= 0 && pos[i] == t {
			tp++
			i--
		}
		for j >= 0 && neg[j] == t {
			fp++
			j--
		}
		c.thr = append(c.thr, t)
		c.tp = append(c.tp, tp)
		c.fp = append(c.fp, fp)
	}
	return c, nil
}

// rocAUC sums the trapezoids of the ROC curve. Each trapezoid has area
// dFP*(TP_prev+TP)/2 in count units; the doubled sum is an exact integer.
func (c *curve) rocAUC() float64 {
	if c.pos == 0 || c.neg == 0 {
		return math.NaN()
	}
	var area2 int64 // twice the area in count units
	var tp0, fp0 int
	for i := range c.thr {
		area2 += int64(c.fp[i]-fp0) * int64(c.tp[i]+tp0)
		tp0, fp0 = c.tp[i], c.fp[i]
	}
	return float64(area2) / (2 * float64(c.pos) * float64(c.neg))
}

func (c *curve) averagePrecision() float64 {
	if c.pos == 0 {
		return math.NaN()
	}
	var sum float64
	tp0 := 0
	for i := range c.thr {
		if d := c.tp[i] - tp0; d > 0 {
			sum += float64(d) * float64(c.tp[i]) / float64(c.tp[i]+c.fp[i])
			tp0 = c.tp[i]
		}
	}
	return sum / float64(c.pos)
}

func (c *curve) prCurve() (recall, precision []float64) {
	last := sort.SearchInts(c.tp, c.pos) // first threshold with full recall
	recall = make([]float64, last+2)
	precision = make([]float64, last+2)
	recall[0], precision[0] = 0, 1
	for i := 0; i <= last; i++ {
		recall[i+1] = float64(c.tp[i]) / float64(c.pos)
		precision[i+1] = float64(c.tp[i]) / float64(c.tp[i]+c.fp[i])
	}
	return recall, precision
}

// truePositivesAt returns the expected number of positives among the k
// highest scores, 0 <= k <= n, with ties at the cut broken at random.
func (c *curve) truePositivesAt(k int) float64 {
	if k <= 0 {
		return 0
	}
	// First group whose cumulative size reaches k.
	g := sort.Search(len(c.thr), func(i int) bool { return c.tp[i]+c.fp[i] >= k })
	var tp0, size0 int
	if g > 0 {
		tp0, size0 = c.tp[g-1], c.tp[g-1]+c.fp[g-1]
	}
	size := c.tp[g] + c.fp[g] - size0
	gpos := c.tp[g] - tp0
	if k-size0 == size {
		return float64(c.tp[g])
	}
	return float64(tp0) + float64(gpos)*float64(k-size0)/float64(size)
}

// ParseLabel reads a ground-truth label: a number above 0, or true/yes/
// fraud, is positive; 0, or false/no/normal, is negative. Negative numbers
// are refused rather than guessed at, because conventions differ (−1 means
// an outlier in some tools and a normal record in others).
func ParseLabel(v string) (bool, error) {
	t := strings.ToLower(strings.TrimSpace(v))
	switch t {
	case "true", "yes", "y", "t", "fraud", "anomaly", "outlier":
		return true, nil
	case "false", "no", "n", "f", "normal", "":
		if t == "" {
			break
		}
		return false, nil
	}
	x, err := strconv.ParseFloat(t, 64)
	switch {
	case err != nil || math.IsNaN(x):
		return false, fmt.Errorf("label %q is not 0/1, true/false or a number", v)
	case x < 0:
		return false, fmt.Errorf("label %q is negative: use 1 for fraud and 0 for normal", v)
	}
	return x > 0, nil
}
