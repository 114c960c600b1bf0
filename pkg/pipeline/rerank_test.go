package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/model"
)

// tenfold multiplies every score by 10 (or fails).
type tenfold struct {
	fail error
	dae  []float32
}

func (r *tenfold) Adjust(_ context.Context, _ *Model, _ *model.Scorer, n int, dae, scores []float32) error {
	r.dae = slices.Clone(dae[:n])
	if r.fail != nil {
		return r.fail
	}
	for i := range n {
		scores[i] *= 10
	}
	return nil
}

// TestRerankFeedsTheDecision: the scores the re-ranker adjusts are the
// ones decided on and written; when it fails, the batch is decided on
// the autoencoder's scores.
func TestRerankFeedsTheDecision(t *testing.T) {
	scores := func(r Reranker) []float32 {
		sink := &scriptedSink{}
		p := newTestPipeline(t, sink, &memSource{}, Config{Rerank: r})
		if err := p.Process(context.Background(), batchOf(t, 9, 20)); err != nil {
			t.Fatal(err)
		}
		var out []float32
		for _, m := range sink.on("scores") {
			var d Decision
			if err := json.Unmarshal(m.Value, &d); err != nil {
				t.Fatal(err)
			}
			out = append(out, d.Score)
		}
		return out
	}
	plain := scores(nil)
	r := &tenfold{}
	blended := scores(r)
	if len(plain) != 20 || len(blended) != 20 {
		t.Fatalf("%d and %d decisions", len(plain), len(blended))
	}
	for i := range plain {
		if blended[i] != 10*plain[i] || r.dae[i] != plain[i] {
			t.Fatalf("record %d: %v blended to %v (the re-ranker saw %v)", i, plain[i], blended[i], r.dae[i])
		}
	}
	if failed := scores(&tenfold{fail: errors.New("redis down")}); !slices.Equal(failed, plain) {
		t.Fatalf("a failing re-ranker changed the scores: %v", failed)
	}
}
