package casework

import (
	"context"
	"testing"

	"github.com/fraudstream/fraudstream/pkg/labels"
)

// rebuildingSink runs the leader's rebuild while a label is on its way to
// the labels topic, as another replica's lease loop may.
type rebuildingSink struct {
	sink
	s *Service
	t *testing.T
}

func (r *rebuildingSink) WriteLabels(ctx context.Context, ls []labels.Label) error {
	if n, err := r.s.Rebuild(ctx); err != nil || n == 0 {
		r.t.Fatalf("rebuild during the label's write: moved %d, %v", n, err)
	}
	return r.sink.WriteLabels(ctx, ls)
}

// TestLabelDuringRebuildLeavesTheQueue: a rebuild that moves a case to
// another cluster's list between the label's read of the case and its
// indexing. Before index read the case again under WATCH, the case was
// removed from the list it had been in, stayed in the new one (listed and
// counted pending though labelled) and was stored with its old cluster.
func TestLabelDuringRebuildLeavesTheQueue(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	out := &rebuildingSink{t: t}
	s := newService(t, rdb, out, testModel(t))
	out.s = s
	ingestKinds(t, s) // the first 64 wait unclustered; the rebuild clusters them
	if c, err := s.Get(ctx, "big00"); err != nil || c.Cluster != -1 {
		t.Fatalf("big00 before the rebuild: %+v %v", c, err)
	}
	if _, err := s.Label(ctx, labels.Label{TransactionID: "big00", Label: labels.Fraud, Analyst: "ana"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Pending(ctx); n != 79 {
		t.Errorf("pending %d after labelling one of 80, want 79", n)
	}
	q, _ := s.Queue(ctx, 100)
	for _, x := range q {
		if x.ID() == "big00" {
			t.Errorf("the labelled case is still in the queue (cluster %d, label %+v)", x.Cluster, x.Label)
		}
	}
	c, _ := s.Get(ctx, "big00")
	if c.Label == nil || c.Cluster == -1 {
		t.Errorf("big00 after the label: cluster %d (the rebuild moved it), label %+v", c.Cluster, c.Label)
	}
	if st, _ := rdb.HGetAll(ctx, s.kClusterStat(c.Cluster)).Result(); st[labels.Fraud] != "1" {
		t.Errorf("the fraud is not counted in its cluster %d: %v", c.Cluster, st)
	}
}
