package evaluate

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of the image written by PlotPNG, in pixels at plotDPI.
const (
	plotWidthPx  = 1200
	plotHeightPx = 500
	plotDPI      = 96
	histBins     = 60
)

var (
	colNeg = color.NRGBA{R: 31, G: 119, B: 180, A: 255}
	colPos = color.NRGBA{R: 214, G: 39, B: 40, A: 255}
)

// PlotPNG writes a 1200×500 PNG with two panels.
//
// The left panel is the precision–recall curve (drawn as a step function,
// thinned to screen resolution) with AUPRC in its title and a dashed
// horizontal line at the positive rate, the precision of a random ranking.
//
// The right panel shows the score distribution of each class as a density
// histogram (normalised by class size, on shared bins), so that a class
// with a million members and one with a thousand are both visible. The x
// range is the union of the 0.1th–99.9th percentile ranges of the two
// classes, so each class loses only about 0.2% of its scores (and any
// infinite ones) to clipping; clipped scores are not drawn. (Clipping
// at the 99.9th percentile of all scores would cut off much of the
// positive class when positives are rarer than 0.1% or well separated.)
// If that range is positive and spans at least two decades, the axis is
// logarithmic: bins are equal in log10(score) and density is per decade.
//
// A non-empty title is drawn above both panels. PlotPNG returns an error
// for empty input, slices of different lengths or NaN scores, and copes
// with single-class labels (the PR panel is then empty if there are no
// positives).
func PlotPNG(w io.Writer, scores []float64, labels []bool, title string) error {
	c, err := newCurve(scores, labels)
	if err != nil {
		return err
	}
	pr, err := prPlot(c)
	if err != nil {
		return err
	}
	hist, err := histPlot(c, scores, labels)
	if err != nil {
		return err
	}

	img := vgimg.NewWith(
		vgimg.UseWH(vg.Length(plotWidthPx)*vg.Inch/plotDPI, vg.Length(plotHeightPx)*vg.Inch/plotDPI),
		vgimg.UseDPI(plotDPI),
		vgimg.UseBackgroundColor(color.White),
	)
	dc := draw.New(img)
	if title != "" {
		sty := plot.New().Title.TextStyle
		sty.Font = font.From(plot.DefaultFont, 15)
		pad := vg.Points(6)
		dc.FillText(sty, vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - pad}, title)
		dc = draw.Crop(dc, 0, 0, 0, -(sty.Height(title) + pad))
	}
	tiles := draw.Tiles{
		Rows: 1, Cols: 2,
		PadX:   vg.Points(24),
		PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(12),
	}
	plots := [][]*plot.Plot{{pr, hist}}
	canvases := plot.Align(plots, tiles, dc)
	for i, p := range plots[0] {
		p.Draw(canvases[0][i])
	}
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

func prPlot(c *curve) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "Recall"
	p.Y.Label.Text = "Precision"
	p.Add(plotter.NewGrid())
	if c.pos == 0 {
		p.Title.Text = "Precision–recall (undefined: no positives)"
	} else {
		p.Title.Text = fmt.Sprintf("Precision–recall (AUPRC = %.4f)", c.averagePrecision())
		rec, prec := c.prCurve()
		curve, err := plotter.NewLine(thin(rec, prec, 1e-3))
		if err != nil {
			return nil, err
		}
		curve.StepStyle = plotter.PreStep
		curve.Color = colPos
		curve.Width = vg.Points(1.5)

		rate := float64(c.pos) / float64(c.n())
		base, err := plotter.NewLine(plotter.XYs{{X: 0, Y: rate}, {X: 1, Y: rate}})
		if err != nil {
			return nil, err
		}
		base.Color = color.Gray{Y: 100}
		base.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}

		p.Add(base, curve)
		p.Legend.Add("PR curve", curve)
		p.Legend.Add(fmt.Sprintf("random (positive rate %.3g)", rate), base)
		p.Legend.Left = true
		p.Legend.YOffs = vg.Points(12)
	}
	p.X.Min, p.X.Max = 0, 1
	p.Y.Min, p.Y.Max = 0, 1.02
	return p, nil
}

// thin drops curve points closer than tol (in both coordinates) to the
// last kept point, keeping the first and last points.
func thin(x, y []float64, tol float64) plotter.XYs {
	xys := make(plotter.XYs, 0, min(len(x), 4096))
	for i := range x {
		if i > 0 && i < len(x)-1 {
			last := xys[len(xys)-1]
			if math.Abs(x[i]-last.X) < tol && math.Abs(y[i]-last.Y) < tol {
				continue
			}
		}
		xys = append(xys, plotter.XY{X: x[i], Y: y[i]})
	}
	return xys
}

func histPlot(c *curve, scores []float64, labels []bool) (*plot.Plot, error) {
	lo, hi, logX := histRange(c)
	// Bins are equal-width in x, where x is log10(score) on a log axis.
	tr := func(s float64) float64 { return s }
	if logX {
		lo, hi = math.Log10(lo), math.Log10(hi)
		tr = func(s float64) float64 {
			if s <= 0 {
				return math.Inf(-1)
			}
			return math.Log10(s)
		}
	}
	width := (hi - lo) / histBins

	var counts [2][histBins]float64 // [0] negatives, [1] positives
	for i, s := range scores {
		x := (tr(s) - lo) / width
		if !(x >= 0 && x <= histBins) { // outside the range: not drawn
			continue
		}
		cls := 0
		if labels[i] {
			cls = 1
		}
		counts[cls][min(int(x), histBins-1)]++
	}

	p := plot.New()
	p.Title.Text = "Score distribution by class"
	p.Y.Label.Text = "density"
	p.X.Label.Text = "score (range: 0.1th–99.9th percentile of each class)"
	if logX {
		p.X.Tick.Marker = plot.TickerFunc(log10Ticks)
		p.Y.Label.Text = "density (per decade)"
		p.X.Label.Text = "score, log scale (range: 0.1th–99.9th percentile of each class)"
	}
	p.Add(plotter.NewGrid())
	ymax := 0.0
	for cls, total := range [2]int{c.neg, c.pos} {
		if total == 0 {
			continue
		}
		h := &plotter.Histogram{Bins: make([]plotter.HistogramBin, histBins), Width: width}
		for i := range h.Bins {
			d := counts[cls][i] / (float64(total) * width)
			h.Bins[i] = plotter.HistogramBin{Min: lo + float64(i)*width, Max: lo + float64(i+1)*width, Weight: d}
			ymax = math.Max(ymax, d)
		}
		col, name := colNeg, "negative"
		if cls == 1 {
			col, name = colPos, "positive"
		}
		h.LineStyle = draw.LineStyle{Color: col, Width: vg.Points(0.5)}
		fill := col
		fill.A = 100
		h.FillColor = fill
		p.Add(h)
		p.Legend.Add(fmt.Sprintf("%s (n = %d)", name, total), h)
	}
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(4)
	p.X.Min, p.X.Max = lo, hi
	// Headroom above the tallest bar for the legend.
	p.Y.Min, p.Y.Max = 0, math.Max(ymax, 1e-300)*1.2
	return p, nil
}

// log10Ticks marks an axis in log10 units with labels 10^k at the
// integers and unlabelled minor ticks at log10(m·10^k), m = 2…9.
func log10Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for k := math.Floor(min); k <= math.Ceil(max); k++ {
		if k >= min && k <= max {
			ticks = append(ticks, plot.Tick{Value: k, Label: strconv.FormatFloat(math.Pow(10, k), 'g', -1, 64)})
		}
		for m := 2.0; m <= 9; m++ {
			if v := k + math.Log10(m); v >= min && v <= max {
				ticks = append(ticks, plot.Tick{Value: v})
			}
		}
	}
	return ticks
}

// histRange chooses the x range of the score histogram: the union of the
// 0.1th–99.9th percentile ranges of the two classes, using only finite
// scores. It is logarithmic if lo > 0 and hi/lo >= 100.
func histRange(c *curve) (lo, hi float64, logX bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range [][]float64{c.negSorted, c.posSorted} {
		l, h, ok := classRange(s)
		if ok {
			lo, hi = math.Min(lo, l), math.Max(hi, h)
		}
	}
	switch {
	case lo > hi: // no finite score at all
		return -1, 1, false
	case lo > 0 && hi/lo >= 100:
		return lo, hi, true
	case lo == hi: // one value: centre it in a bin
		d := math.Max(0.5, 0.05*math.Abs(lo))
		lo, hi = lo-d-d/histBins, hi+d-d/histBins
	}
	if w := (hi - lo) / histBins; math.IsInf(w, 0) || w == 0 {
		return -1, 1, false
	}
	return lo, hi, false
}

// classRange returns the 0.1th and 99.9th percentiles of the ascending
// scores s, replaced by the extreme finite scores if they are infinite.
// ok is false if s has no finite score.
func classRange(s []float64) (lo, hi float64, ok bool) {
	first := sort.Search(len(s), func(i int) bool { return !math.IsInf(s[i], -1) })
	last := sort.Search(len(s), func(i int) bool { return math.IsInf(s[i], 1) }) - 1
	if first > last {
		return 0, 0, false
	}
	n := float64(len(s) - 1)
	i := max(int(math.Floor(0.001*n)), first)
	j := min(int(math.Ceil(0.999*n)), last)
	return s[i], s[j], true
}
