package model

import (
	"math"
	"strconv"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/features"
)

// UnseenValue is what Expected says when the model's most likely category
// is one it did not see in training (the encoder's OTHER level): a real
// value would be a guess, and "<OTHER>" means nothing to an analyst.
const UnseenValue = "a value not seen in training"

// reason describes learned field f of slot i with contribution v. ok is
// false for a categorical field whose observed category is the model's
// most likely one: that is no reason.
func (s *Scorer) reason(i, f int, v float32) (r Reason, ok bool) {
	ef := &s.b.Encoder.Fields[f]
	r = Reason{Field: f, Name: ef.Name, Contribution: v, Probability: -1}
	if !s.fieldCat[f] {
		return r, true
	}
	obs := int(s.d.Cat[i*s.cf+ef.CatIdx])
	z := s.logits(i, f)
	if obs < 0 || obs >= len(z) {
		return r, true
	}
	best, mx := 0, z[0]
	for j, x := range z {
		if x > mx {
			best, mx = j, x
		}
	}
	if best == obs {
		return r, false
	}
	var sum float64
	for _, x := range z {
		sum += math.Exp(float64(x - mx))
	}
	r.Probability = float32(math.Exp(float64(z[obs]-mx)) / sum)
	r.Unseen = obs == features.LevelOther
	return r, true
}

// logits returns the network's output logits for categorical field f of
// slot i.
func (s *Scorer) logits(i, f int) []float32 {
	off := int(s.logitOff[f])
	return s.s.Output(i)[off : off+len(s.b.Encoder.Fields[f].Levels)]
}

// Note is a short text for an analyst about a reason's observed value in
// slot i, beyond observed and expected: "not seen in training" for an
// unseen category, "missing", "above the training range (max 5000)" or
// "below the training range (min 0)" for a numeric value outside what the
// model saw; empty otherwise.
func (s *Scorer) Note(i int, r Reason) string {
	ef := &s.b.Encoder.Fields[r.Field]
	switch {
	case r.Unseen:
		return "not seen in training"
	case s.Missing(i, r.Field):
		return "missing"
	case ef.Kind == features.Numeric && ef.HasRange:
		x, err := strconv.ParseFloat(strings.TrimSpace(s.Observed(i, r.Field)), 64)
		switch {
		case err != nil:
		case x > ef.Max:
			return "above the training range (max " + strconv.FormatFloat(ef.Max, 'g', 6, 64) + ")"
		case x < ef.Min:
			return "below the training range (min " + strconv.FormatFloat(ef.Min, 'g', 6, 64) + ")"
		}
	}
	return ""
}
