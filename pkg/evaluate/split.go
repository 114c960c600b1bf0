package evaluate

import (
	"math"
	"math/rand/v2"
	"slices"
)

// StratifiedSplit splits the row indexes of labels into a training share
// (train of each class, rounded) and the rest, within each class, shuffled
// by seed: the protocol of cmd/quality and the private suite (70/30, fit
// without labels on the first part, scored on the second). Both parts are
// sorted, so rows keep their file order; the same labels and seed give the
// same split.
func StratifiedSplit(labels []bool, train float64, seed uint64) (fit, test []int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, cls := range []bool{false, true} {
		var idx []int
		for i, l := range labels {
			if l == cls {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		cut := int(math.Round(train * float64(len(idx))))
		fit = append(fit, idx[:cut]...)
		test = append(test, idx[cut:]...)
	}
	slices.Sort(fit)
	slices.Sort(test)
	return fit, test
}
