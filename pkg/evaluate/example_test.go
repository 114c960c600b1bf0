package evaluate_test

import (
	"fmt"
	"os"

	"github.com/fraudstream/fraudstream/pkg/evaluate"
)

func Example() {
	scores := []float64{0.1, 0.4, 0.35, 0.8, 0.05, 0.2, 0.9, 0.3}
	labels := []bool{false, false, true, true, false, false, true, false}

	r, err := evaluate.Evaluate(scores, labels, []int{1, 3}, []float64{0.25})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := r.WriteText(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// N                         8
	// Positives                 3 (37.5% of N)
	// ROC AUC                   0.9333
	// AUPRC                     0.9167 (random: 0.3750)
	// Precision@1               1.0000
	// Precision@3               0.6667
	// Recall@25% (2 alerts)     0.6667
	// Precision@25% (2 alerts)  1.0000
}
