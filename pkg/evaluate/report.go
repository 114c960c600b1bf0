package evaluate

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// WriteText writes a human-readable report to w: one figure per line, with
// the values aligned in a column. Undefined figures print as NaN.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var err error
	line := func(name, format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
		}
	}
	line("N", "%d", r.N)
	rate := 0.0
	if r.N > 0 {
		rate = float64(r.Positives) / float64(r.N)
	}
	line("Positives", "%d (%s of N)", r.Positives, percent(rate))
	line("ROC AUC", "%.4f", r.ROCAUC)
	line("AUPRC", "%.4f (random: %.4f)", r.AUPRC, rate)
	for _, a := range r.PrecisionAtK {
		line(fmt.Sprintf("Precision@%d", a.K), "%.4f", a.Precision)
	}
	for _, a := range r.RecallAtRate {
		at := fmt.Sprintf("@%s (%d alerts)", percent(a.Rate), a.Alerts)
		line("Recall"+at, "%.4f", a.Recall)
		line("Precision"+at, "%.4f", a.Precision)
	}
	if err != nil {
		return err
	}
	return tw.Flush()
}

// percent formats a fraction as a percentage with up to 4 significant
// digits, e.g. 0.005 as "0.5%".
func percent(f float64) string {
	return strconv.FormatFloat(f*100, 'g', 4, 64) + "%"
}
