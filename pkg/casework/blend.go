package casework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

// Blender feeds the review service's re-ranker into the alert decision
// (scorer run --reranker-blend): each score is multiplied by
// exp(Weight × (2p − 1)), p the re-ranker's fraud probability for the
// transaction, so a case the labels say looks like fraud rises and one
// they say looks legitimate falls, and p = 0.5 leaves it as it is. It
// uses only a re-ranker fitted for the model in use: with none (no labels
// yet, or a new model not yet refitted) scores are unchanged. It
// implements pipeline.Reranker.
type Blender struct {
	Redis redis.UniversalClient
	// Prefix is the review service's key prefix. Default "fraudstream:review:".
	Prefix string
	// Weight: at most a factor e^Weight either way. Default 1.
	Weight float64
	// Every is how often the stored re-ranker is read again. Default 10s.
	Every time.Duration
	// Timeout bounds the Redis reads of one batch. Default 100ms.
	Timeout time.Duration
	Now     func() time.Time

	mu     sync.Mutex
	rr     *Reranker
	readAt time.Time
	emb    []float32
}

func (b *Blender) defaults() {
	if b.Prefix == "" {
		b.Prefix = "fraudstream:review:"
	}
	if b.Weight == 0 {
		b.Weight = 1
	}
	if b.Every <= 0 {
		b.Every = 10 * time.Second
	}
	if b.Timeout <= 0 {
		b.Timeout = 100 * time.Millisecond
	}
	if b.Now == nil {
		b.Now = time.Now
	}
}

// reranker returns the stored re-ranker, read again every Every.
func (b *Blender) reranker(ctx context.Context) (*Reranker, error) {
	if !b.readAt.IsZero() && b.Now().Sub(b.readAt) < b.Every {
		return b.rr, nil
	}
	b.readAt = b.Now()
	blob, err := b.Redis.Get(ctx, b.Prefix+"reranker").Bytes()
	if errors.Is(err, redis.Nil) {
		b.rr = nil
		return nil, nil
	}
	if err != nil {
		return b.rr, err // keep the last one through an outage
	}
	var rr Reranker
	if err := json.Unmarshal(blob, &rr); err != nil || rr.Model == nil {
		return b.rr, fmt.Errorf("stored re-ranker: %v", err)
	}
	b.rr = &rr
	return b.rr, nil
}

// Adjust blends scores[:n] with the re-ranker's probabilities.
func (b *Blender) Adjust(ctx context.Context, m *pipeline.Model, sc *model.Scorer, n int, dae, scores []float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.defaults()
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	rr, err := b.reranker(ctx)
	if rr == nil || m == nil || n == 0 {
		return err
	}
	digest := m.Digest
	if digest == "" {
		digest = "v" + m.Version
	}
	if rr.Digest != digest {
		return err
	}
	bn := m.Bundle.Model.Bottleneck
	if cap(b.emb) < n*bn {
		b.emb = make([]float32, n*bn)
	}
	emb := b.emb[:n*bn]
	sc.Embed(n, emb)
	schema := &m.Bundle.Encoder.Schema
	keys := make([][]string, n)
	var all []string
	for i := range n {
		for _, f := range rr.Entities {
			if col := schema.Index(f); col >= 0 {
				if v := sc.Raw(i, col); v != "" {
					keys[i] = append(keys[i], f+"="+v)
				}
			}
		}
		all = append(all, keys[i]...)
	}
	t, err := readTallies(ctx, b.Redis, b.Prefix, all)
	if err != nil {
		return err
	}
	for i := range n {
		feats := append([]float32{float32(math.Log1p(math.Max(float64(dae[i]), 0)))}, sc.Contributions(i)...)
		feats = append(feats, emb[i*bn:(i+1)*bn]...)
		p := rr.Model.Prob(inputs(&Case{Features: feats, Keys: keys[i]}, rr.Entities, t))
		scores[i] *= float32(math.Exp(b.Weight * (2*p - 1)))
	}
	return nil
}
