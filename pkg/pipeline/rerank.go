package pipeline

import (
	"context"

	"github.com/fraudstream/fraudstream/pkg/model"
)

// Reranker adjusts a batch's scores with what analysts' labels taught (the
// review service's re-ranker, pkg/casework.Blender). dae holds the
// autoencoder's scores of slots [0, n), scores the scores to decide on
// (the entity score joined); Adjust changes scores[:n] in place; slots it cannot judge keep theirs, and an error
// leaves them all as they were (the batch is decided on its scores).
type Reranker interface {
	Adjust(ctx context.Context, m *Model, sc *model.Scorer, n int, dae, scores []float32) error
}
