package review

import (
	"math"
	"slices"
	"time"

	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// Described is what the review service keeps of one transaction under a
// model: the re-ranker's inputs, the embedding, and the entity keys.
type Described struct {
	// Err is set when the transaction could not be decoded; nothing else is.
	Err   error
	ID    string
	At    time.Time // event time, zero when the record has none readable
	Score float32
	// Features are the re-ranker's model-derived inputs: log1p(score),
	// each learned field's contribution, then the embedding.
	Features  []float32
	Embedding []float32
	// Keys are "field=value" for each entity field with a value.
	Keys []string
}

// Describer runs transactions through a model for the review service. It
// is not safe for concurrent use.
type Describer struct {
	b        *model.Bundle
	sc       *model.Scorer
	emb      []float32
	idCol    int
	timeCol  int
	keyCols  []int
	keyNames []string
	layout   string
}

const describeBatch = 512

// NewDescriber returns a Describer for bundle b.
func NewDescriber(b *model.Bundle) *Describer {
	s := &b.Encoder.Schema
	d := &Describer{b: b, sc: b.NewScorer(describeBatch), emb: make([]float32, describeBatch*b.Model.Bottleneck),
		idCol: s.Index(s.IDField), timeCol: s.Index(s.TimeField)}
	for j, f := range s.Fields {
		if j >= 0 && f.Name == s.TimeField {
			d.layout = f.Layout
		}
		if f.Kind == features.ID && f.Name != s.IDField && f.Name != s.TimeField {
			d.keyCols, d.keyNames = append(d.keyCols, j), append(d.keyNames, f.Name)
		}
	}
	d.sc.Remember(append([]int{d.idCol, d.timeCol}, d.keyCols...)...)
	return d
}

// EntityFields names the fields whose values are entity keys (the
// schema's ids other than the transaction id): cards, terminals.
func (d *Describer) EntityFields() []string { return d.keyNames }

// Dim is the embedding size.
func (d *Describer) Dim() int { return d.b.Model.Bottleneck }

// Describe runs raws (JSON transactions) through the model.
func (d *Describer) Describe(raws [][]byte) []Described {
	out := make([]Described, len(raws))
	bn := d.b.Model.Bottleneck
	for from := 0; from < len(raws); from += describeBatch {
		n := min(describeBatch, len(raws)-from)
		slot := make([]int, 0, n) // slot k holds raws[from+idx[k]]
		for k := range n {
			if _, err := d.sc.SetJSON(len(slot), raws[from+k]); err != nil {
				out[from+k].Err = err
				continue
			}
			slot = append(slot, k)
		}
		if len(slot) == 0 {
			continue
		}
		scores := d.sc.Score(len(slot))
		d.sc.Embed(len(slot), d.emb)
		for s, k := range slot {
			o := &out[from+k]
			o.Score = scores[s]
			o.Embedding = slices.Clone(d.emb[s*bn : (s+1)*bn])
			o.Features = append(append([]float32{float32(math.Log1p(math.Max(float64(scores[s]), 0)))}, d.sc.Contributions(s)...), o.Embedding...)
			o.ID = d.sc.Raw(s, d.idCol)
			if d.timeCol >= 0 {
				o.At, _ = features.ParseTime(d.sc.Raw(s, d.timeCol), d.layout)
			}
			for j, c := range d.keyCols {
				if v := d.sc.Raw(s, c); v != "" {
					o.Keys = append(o.Keys, d.keyNames[j]+"="+v)
				}
			}
		}
	}
	return out
}
