package casework

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

func TestBlenderFeedsLabelsIntoScores(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	m := testModel(t)
	s := newService(t, rdb, &sink{}, m)
	ingestKinds(t, s)
	// Scores before any label: the blender changes nothing.
	sc := m.Bundle.NewScorer(4)
	for i, raw := range [][]byte{tx("n1", "c1", "t1", 20, "zz"), tx("n2", "c2", "t2", 5000, "m0")} {
		if _, err := sc.SetJSON(i, raw); err != nil {
			t.Fatal(err)
		}
	}
	dae := slices.Clone(sc.Score(2))
	b := &Blender{Redis: rdb, Prefix: prefixOf(rdb)}
	pm := &pipeline.Model{Bundle: m.Bundle, Version: m.Version, Digest: m.Digest}
	scores := slices.Clone(dae)
	if err := b.Adjust(ctx, pm, sc, 2, dae, scores); err != nil || !slices.Equal(scores, dae) {
		t.Fatalf("without a re-ranker: %v -> %v (%v)", dae, scores, err)
	}
	// Labels say the odd merchants are fraud and the big amounts not.
	for i := range 8 {
		s.Label(ctx, labels.Label{TransactionID: fmt.Sprintf("odd%02d", i), Label: labels.Fraud, Analyst: "ana"})
		s.Label(ctx, labels.Label{TransactionID: fmt.Sprintf("big%02d", i), Label: labels.Legitimate, Analyst: "ana"})
	}
	if _, ok, err := s.Retrain(ctx); !ok || err != nil {
		t.Fatalf("retrain: %v %v", ok, err)
	}
	b = &Blender{Redis: rdb, Prefix: prefixOf(rdb)}
	scores = slices.Clone(dae)
	if err := b.Adjust(ctx, pm, sc, 2, dae, scores); err != nil {
		t.Fatal(err)
	}
	if !(scores[0] > dae[0] && scores[1] < dae[1]) {
		t.Fatalf("blended %v from %v: the odd merchant should rise, the big amount fall", scores, dae)
	}
	// A re-ranker fitted for another model is not used.
	other := &pipeline.Model{Bundle: m.Bundle, Version: "2", Digest: "digest-2"}
	b = &Blender{Redis: rdb, Prefix: prefixOf(rdb)}
	scores = slices.Clone(dae)
	if err := b.Adjust(ctx, other, sc, 2, dae, scores); err != nil || !slices.Equal(scores, dae) {
		t.Fatalf("another model's re-ranker was used: %v -> %v", dae, scores)
	}
}
