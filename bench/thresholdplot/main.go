// Command thresholdplot draws how the budget policy follows a drifting
// stream: 1,000,000 log-normal scores whose scale doubles halfway, a 0.5%
// budget; the top panel shows the threshold, the bottom the realised alert
// rate over the last 10,000 scores.
//
//	go run ./bench/thresholdplot --out docs/threshold-drift.png
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/fraudstream/fraudstream/pkg/threshold"
)

func main() {
	out := flag.String("out", "docs/threshold-drift.png", "PNG to write")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "thresholdplot:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	const n, shift, every, span = 1_000_000, 500_000, 2_000, 10_000
	rng := rand.New(rand.NewPCG(1, 1))
	b := threshold.NewBudget(0.005, threshold.WindowConfig{})
	var thr, rate plotter.XYs
	ring := make([]bool, span)
	alerts := 0
	worst := 0.0
	for i := range n {
		x := math.Exp(rng.NormFloat64())
		if i >= shift {
			x *= 2
		}
		t, a := b.Decide(x)
		if ring[i%span] {
			alerts--
		}
		ring[i%span] = a
		if a {
			alerts++
		}
		if i >= span && i%every == 0 {
			r := 100 * float64(alerts) / span
			rate = append(rate, plotter.XY{X: float64(i) / 1000, Y: r})
			if !math.IsInf(t, 0) {
				thr = append(thr, plotter.XY{X: float64(i) / 1000, Y: t})
			}
			if i > shift {
				worst = max(worst, r)
			}
		}
	}
	top := plot.New()
	top.Title.Text = "Budget 0.5%: the threshold follows a ×2 shift in the score scale at 500k"
	top.Y.Label.Text = "threshold"
	lt, _ := plotter.NewLine(thr)
	top.Add(lt, plotter.NewGrid())
	bottom := plot.New()
	bottom.X.Label.Text = "scores seen (thousands)"
	bottom.Y.Label.Text = "alert rate, last 10k (%)"
	lr, _ := plotter.NewLine(rate)
	target := plotter.NewFunction(func(float64) float64 { return 0.5 })
	target.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	bottom.Add(lr, target, plotter.NewGrid())
	bottom.Y.Min = 0
	img := vgimg.New(10*vg.Inch, 6*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(6)}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	fmt.Printf("wrote %s; worst 10k-window alert rate after the shift: %.2f%% (overshoot while the window turns over)\n", out, worst)
	return nil
}
