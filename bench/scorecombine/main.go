// Command scorecombine measures other ways of turning a record's per-field
// contributions into its score, on cmd/quality's protocol (stratified
// 70/30 split, seeds 0, 1, 2, a default fit on the 70% without labels,
// AUPRC on the 30%), against the default sum:
//
//	sum      the score as scorers compute it (the sum of the contributions)
//	max      the largest contribution alone
//	sum+max  both added
//	fisher   each field's contribution as its surprisal against the
//	         training rows' (-log of the share at or above it), summed
//	fisher3  the three largest surprisals, summed
//	rankavg  the ranks of sum and fisher, added
//	knn      the mean distance of the bottleneck embedding to its 10
//	         nearest among (at most 5,000) training rows
//	sum+knn  the ranks of sum and knn, added
//	marg     each field's marginal rarity among the training rows (a
//	         number's two-sided tail share, a category's share) as a
//	         surprisal, summed: HBOS without bins
//	sum+marg the ranks of sum and marg, added; sum+margz: both as z-scores
//	         against the training rows', added; sum+margmax: the ranks of
//	         sum and the largest marginal surprisal, added
//
// With SCORECOMBINE_DUMP=DIR it also writes DIR/SET_SEED.tsv: the split's
// training row numbers and each test row's number, label and score, which
// bench/suite/combine_peers.py reads to rank-combine the score with an
// IsolationForest and a subsampled nearest-neighbour distance fitted on the
// same split.
//
//	go run ./bench/scorecombine --input /tmp/suite/wine.csv
//
// It prints each variant's mean AUPRC over the seeds.
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/evaluate"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

func main() {
	input := flag.String("input", "", "labelled CSV (label column: label)")
	flag.Parse()
	f, err := os.Open(*input)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	t, _, err := features.ReadTable(f, features.FormatFor(*input, nil))
	f.Close()
	if err != nil {
		panic(err)
	}
	li := slices.Index(t.Names, "label")
	labels := make([]bool, len(t.Rows))
	for i, r := range t.Rows {
		labels[i], _ = evaluate.ParseLabel(r[li])
	}
	names := []string{"sum", "max", "sum+max", "fisher", "fisher3", "rankavg", "knn", "sum+knn", "marg", "sum+marg", "sum+margz", "sum+margmax"}
	res := make([][]float64, len(names))
	for seed := uint64(0); seed < 3; seed++ {
		train, test := evaluate.StratifiedSplit(labels, 0.7, seed)
		trainRows := pick(t.Rows, train)
		schema := features.InferSchema(t.Names, trainRows, features.InferOptions{Ignore: []string{"label"}})
		b, err := model.Fit(schema, features.Project(schema, t.Names, trainRows), model.FitOptions{AE: ae.Config{Seed: seed}})
		if err != nil {
			panic(err)
		}
		B := b.Model.Bottleneck
		contrib := func(rows [][]string) ([][]float64, []float64, [][]float32) {
			sc := b.NewScorer(1024)
			var cs [][]float64
			var ss []float64
			var es [][]float32
			emb := make([]float32, 1024*B)
			for from := 0; from < len(rows); from += 1024 {
				n := min(1024, len(rows)-from)
				for i := range n {
					sc.SetRow(i, rows[from+i])
				}
				sc.Embed(n, emb)
				for i := range n {
					es = append(es, slices.Clone(emb[i*B:(i+1)*B]))
				}
				for i, v := range sc.Score(n) {
					c := sc.Contributions(i)
					row := make([]float64, len(c))
					for j, x := range c {
						row[j] = float64(x)
					}
					cs, ss = append(cs, row), append(ss, float64(v))
				}
			}
			return cs, ss, es
		}
		trP := features.Project(schema, t.Names, trainRows)
		teP := features.Project(schema, t.Names, pick(t.Rows, test))
		marg, margMax := marginal(schema, trP, teP)
		trMarg, _ := marginal(schema, trP, trP)
		trC, trS, trE := contrib(trP)
		teC, _, teE := contrib(teP)
		if len(trE) > 5000 {
			rng := rand.New(rand.NewPCG(seed, 11))
			rng.Shuffle(len(trE), func(i, j int) { trE[i], trE[j] = trE[j], trE[i] })
			trE = trE[:5000]
		}
		knn := make([]float64, len(teE))
		for i, e := range teE {
			d := make([]float64, len(trE))
			for j, x := range trE {
				s := 0.0
				for k := range e {
					v := float64(e[k] - x[k])
					s += v * v
				}
				d[j] = math.Sqrt(s)
			}
			sort.Float64s(d)
			for _, v := range d[:10] {
				knn[i] += v / 10
			}
		}
		F := len(teC[0])
		sorted := make([][]float64, F)
		for j := range F {
			for _, r := range trC {
				sorted[j] = append(sorted[j], r[j])
			}
			sort.Float64s(sorted[j])
		}
		surprise := func(j int, x float64) float64 {
			n := len(sorted[j])
			k := sort.SearchFloat64s(sorted[j], x) // first >= x
			above := n - k
			return -math.Log(float64(above+1) / float64(n+1))
		}
		y := make([]bool, len(test))
		for i, r := range test {
			y[i] = labels[r]
		}
		sc := make([][]float64, len(names))
		for i, r := range teC {
			sum, mx := 0.0, 0.0
			var ss []float64
			fs := 0.0
			for j, x := range r {
				sum += x
				mx = max(mx, x)
				s := surprise(j, x)
				fs += s
				ss = append(ss, s)
			}
			sort.Sort(sort.Reverse(sort.Float64Slice(ss)))
			f3 := 0.0
			for _, s := range ss[:min(3, len(ss))] {
				f3 += s
			}
			vals := []float64{sum, mx, sum + mx, fs, f3, 0, knn[i], 0, marg[i], 0, 0, 0}
			for k := range vals {
				sc[k] = append(sc[k], vals[k])
			}
		}
		// rank average of sum and fisher
		rs, rf := ranks(sc[0]), ranks(sc[3])
		rk := ranks(knn)
		for i := range rs {
			sc[5][i] = rs[i] + rf[i]
			sc[7][i] = rs[i] + rk[i]
		}
		rm := ranks(marg)
		rmx := ranks(margMax)
		ms, ss := meanSD(trS)
		mm, sm := meanSD(trMarg)
		for i := range rs {
			sc[9][i] = rs[i] + rm[i]
			sc[10][i] = (sc[0][i]-ms)/ss + (marg[i]-mm)/sm
			sc[11][i] = rs[i] + rmx[i]
		}
		if d := os.Getenv("SCORECOMBINE_DUMP"); d != "" {
			base := strings.TrimSuffix(filepath.Base(*input), ".csv")
			var buf strings.Builder
			for i, r := range test {
				fmt.Fprintf(&buf, "test\t%d\t%v\t%g\n", r, labels[r], sc[0][i])
			}
			for _, r := range train {
				fmt.Fprintf(&buf, "train\t%d\n", r)
			}
			if err := os.WriteFile(fmt.Sprintf("%s/%s_%d.tsv", d, base, seed), []byte(buf.String()), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		for k := range names {
			res[k] = append(res[k], evaluate.AveragePrecision(sc[k], y))
		}
	}
	fmt.Print(*input)
	for k, n := range names {
		fmt.Printf("\t%s %.4f", n, (res[k][0]+res[k][1]+res[k][2])/3)
	}
	fmt.Println()
}

func ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return x[idx[a]] < x[idx[b]] })
	r := make([]float64, len(x))
	for k, i := range idx {
		r[i] = float64(k)
	}
	return r
}

func pick(rows [][]string, idx []int) [][]string {
	out := make([][]string, len(idx))
	for i, j := range idx {
		out[i] = rows[j]
	}
	return out
}

func meanSD(x []float64) (float64, float64) {
	m := 0.0
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	v := 0.0
	for _, y := range x {
		v += (y - m) * (y - m)
	}
	return m, math.Sqrt(v/float64(len(x))) + 1e-12
}

// marginal scores each row of te by how rare its values are in tr, field
// by field: a number by its two-sided tail share, a category by its share.
// It returns the summed surprisal and the largest.
func marginal(s *features.Schema, tr, te [][]string) ([]float64, []float64) {
	type col struct {
		num    []float64
		counts map[string]int
	}
	cols := make([]col, len(s.Fields))
	for j, f := range s.Fields {
		switch f.Kind {
		case features.Numeric:
			for _, r := range tr {
				if v, err := strconv.ParseFloat(r[j], 64); err == nil {
					cols[j].num = append(cols[j].num, v)
				}
			}
			sort.Float64s(cols[j].num)
		case features.Categorical:
			cols[j].counts = map[string]int{}
			for _, r := range tr {
				cols[j].counts[r[j]]++
			}
		}
	}
	n := float64(len(tr))
	out, outMax := make([]float64, len(te)), make([]float64, len(te))
	for i, r := range te {
		for j, f := range s.Fields {
			var sv float64
			switch f.Kind {
			case features.Numeric:
				v, err := strconv.ParseFloat(r[j], 64)
				if err != nil || len(cols[j].num) == 0 {
					continue
				}
				a := sort.SearchFloat64s(cols[j].num, v)                                                              // < v
				b := len(cols[j].num) - sort.Search(len(cols[j].num), func(k int) bool { return cols[j].num[k] > v }) // > v
				tail := float64(min(a, b))
				sv = -math.Log((2*tail + 1) / (n + 1))
			case features.Categorical:
				sv = -math.Log(float64(cols[j].counts[r[j]]+1) / (n + 1))
			default:
				continue
			}
			out[i] += sv
			outMax[i] = max(outMax[i], sv)
		}
	}
	return out, outMax
}
