package casework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/review"
)

// Reranker is the stored re-ranker: a logistic model of P(fraud) over a
// case's model-derived features and its entities' label tallies, fitted
// for one model (Digest): another model's features mean something else,
// so a new model means a new fit.
type Reranker struct {
	Digest       string           `json:"digest"`
	ModelVersion string           `json:"model_version"`
	Entities     []string         `json:"entities"`
	Labels       int              `json:"labels"`
	Frauds       int              `json:"frauds"`
	LabelCount   int64            `json:"label_count"` // labels:count when fitted
	TrainedAt    time.Time        `json:"trained_at"`
	Model        *review.Logistic `json:"model"`
}

// tally is an entity's confirmed labels.
type tally struct{ fraud, legit int64 }

// tallies reads the label tallies of keys.
func (s *Service) tallies(ctx context.Context, keys []string) (map[string]tally, error) {
	return readTallies(ctx, s.rdb, s.p, keys)
}

// readTallies reads the label tallies of keys under a review prefix in one
// pipelined round trip (the service and the scorers' Blender alike).
func readTallies(ctx context.Context, rdb redis.UniversalClient, prefix string, keys []string) (map[string]tally, error) {
	out := make(map[string]tally, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HMGet(ctx, prefix+"tally:"+k, "fraud", "legitimate")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, c := range cmds {
		v := c.Val()
		var t tally
		if len(v) == 2 {
			t.fraud, t.legit = toInt(v[0]), toInt(v[1])
		}
		out[keys[i]] = t
	}
	return out, nil
}

func toInt(v any) int64 {
	s, _ := v.(string)
	var n int64
	fmt.Sscan(s, &n)
	return n
}

// inputs are the re-ranker's inputs for a case: its features, then per
// entity field log1p(frauds) and log1p(legitimate) of its value, less the
// case's own label (a label must not predict itself).
func inputs(c *Case, entities []string, t map[string]tally) []float64 {
	x := make([]float64, 0, len(c.Features)+2*len(entities))
	for _, v := range c.Features {
		x = append(x, float64(v))
	}
	for _, e := range entities {
		var tl tally
		for _, k := range c.Keys {
			if len(k) > len(e) && k[:len(e)] == e && k[len(e)] == '=' {
				tl = t[k]
			}
		}
		if c.Label != nil {
			switch c.Label.Label {
			case labels.Fraud:
				tl.fraud--
			case labels.Legitimate:
				tl.legit--
			}
		}
		x = append(x, math.Log1p(float64(max(tl.fraud, 0))), math.Log1p(float64(max(tl.legit, 0))))
	}
	return x
}

// prioritise sets the cases' priorities: the re-ranker's probability when
// one is fitted for the current model, else ScorePriority; raised cases
// add their lift, from their entities' label counts now.
func (s *Service) prioritise(ctx context.Context, cases []*Case, m *Model) error {
	rr := s.currentReranker(m)
	var t map[string]tally
	var keys []string
	for _, c := range cases {
		if rr != nil || c.Raised != "" {
			keys = append(keys, c.Keys...)
		}
	}
	if len(keys) > 0 {
		ctx, cancel := s.bound(ctx)
		defer cancel()
		var err error
		if t, err = s.tallies(ctx, keys); err != nil {
			return err
		}
	}
	for _, c := range cases {
		c.Prob = nil
		c.Priority = ScorePriority(c.Score, c.Threshold)
		if rr != nil && c.Digest == rr.Digest && len(c.Features) > 0 {
			p := rr.Model.Prob(inputs(c, rr.Entities, t))
			c.Prob, c.Priority = &p, p
		}
		c.Priority += lift(c, t)
	}
	return nil
}

func (s *Service) currentReranker(m *Model) *Reranker {
	s.rrMu.RLock()
	defer s.rrMu.RUnlock()
	if m == nil || s.reranker == nil || s.reranker.Digest != m.Digest {
		return nil
	}
	return s.reranker
}

// Reranker returns the re-ranker in use, if any.
func (s *Service) Reranker() *Reranker {
	s.rrMu.RLock()
	defer s.rrMu.RUnlock()
	return s.reranker
}

// Refresh loads the stored re-ranker (fitted by whichever replica leads).
func (s *Service) Refresh(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b, err := s.rdb.Get(ctx, s.kReranker()).Bytes()
	if errors.Is(err, redis.Nil) {
		s.rrMu.Lock()
		s.reranker = nil
		s.rrMu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	var rr Reranker
	if err := json.Unmarshal(b, &rr); err != nil || rr.Model == nil {
		return fmt.Errorf("casework: stored re-ranker: %v", err)
	}
	s.rrMu.Lock()
	s.reranker = &rr
	s.rrMu.Unlock()
	return nil
}

// maxTraining bounds the labelled cases a fit reads (the most recent).
const maxTraining = 50_000

// Retrain fits the re-ranker on the labelled cases (their latest labels;
// unsure ones left out) under the current model, stores it and uses it.
// Cases described under another model are described again. ok is false,
// and the stored re-ranker is left alone, when there are too few labels of
// either class (review.MinPerClass) or no model.
func (s *Service) Retrain(ctx context.Context) (rr *Reranker, ok bool, err error) {
	m := s.cfg.Model()
	if m == nil {
		return nil, false, nil
	}
	rctx, cancel := s.bound(ctx)
	count, _ := s.rdb.Get(rctx, s.kLabelCount()).Int64()
	ids, err := s.rdb.ZRevRange(rctx, s.kLabelled(), 0, maxTraining-1).Result()
	cancel()
	if err != nil {
		return nil, false, err
	}
	var cases []*Case
	for from := 0; from < len(ids); from += 1000 {
		rctx, cancel := s.bound(ctx)
		cs, err := s.getMany(rctx, ids[from:min(from+1000, len(ids))])
		cancel()
		if err != nil {
			return nil, false, err
		}
		cases = append(cases, cs...)
	}
	if err := s.redescribe(m, cases); err != nil {
		return nil, false, err
	}
	entities := s.entityFields(m)
	var keys []string
	for _, c := range cases {
		keys = append(keys, c.Keys...)
	}
	rctx, cancel = s.bound(ctx)
	t, err := s.tallies(rctx, keys)
	cancel()
	if err != nil {
		return nil, false, err
	}
	var X [][]float64
	var y []bool
	frauds := 0
	for _, c := range cases {
		if c.Label == nil || c.Label.Label == labels.Unsure || c.Digest != m.Digest || len(c.Features) == 0 {
			continue
		}
		fraud := c.Label.Label == labels.Fraud
		if fraud {
			frauds++
		}
		X, y = append(X, inputs(c, entities, t)), append(y, fraud)
	}
	l, ok := review.FitLogistic(X, y)
	if !ok {
		return nil, false, nil
	}
	rr = &Reranker{Digest: m.Digest, ModelVersion: m.Version, Entities: entities, Labels: len(y), Frauds: frauds,
		LabelCount: count, TrainedAt: s.cfg.Now().UTC(), Model: l}
	blob, err := json.Marshal(rr)
	if err != nil {
		return nil, false, err
	}
	rctx, cancel = s.bound(ctx)
	defer cancel()
	if err := s.rdb.Set(rctx, s.kReranker(), blob, 0).Err(); err != nil {
		return nil, false, err
	}
	s.rrMu.Lock()
	s.reranker = rr
	s.rrMu.Unlock()
	return rr, true, nil
}

// redescribe recomputes the features of cases described under another
// model (or none).
func (s *Service) redescribe(m *Model, cases []*Case) error {
	var stale []*Case
	var raws [][]byte
	for _, c := range cases {
		if c.Digest != m.Digest {
			stale, raws = append(stale, c), append(raws, c.Transaction)
		}
	}
	for i, d := range s.describe(m, raws) {
		c := stale[i]
		if d.Err != nil {
			c.Digest, c.Features, c.Embedding = "", nil, nil
			continue
		}
		c.Digest, c.Features, c.Embedding, c.Keys = m.Digest, d.Features, d.Embedding, d.Keys
	}
	return nil
}

// moveScript rewrites a pending case and moves it between cluster lists,
// only if it is still pending in its old list (a case labelled meanwhile
// stays reviewed): KEYS case, old queue, new queue, queues; ARGV json,
// priority, id, new queue name.
var moveScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[4], ARGV[4])
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// NeedsRebuild reports whether the queue must be rebuilt: the clusters
// were learned afresh (first radius, a new model) or the re-ranker changed.
func (s *Service) NeedsRebuild(ctx context.Context) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.rdb.Exists(ctx, s.kRebuild()).Result()
	return n > 0, err
}

// MarkRebuild asks the leader to rebuild the queue.
func (s *Service) MarkRebuild(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.rdb.Set(ctx, s.kRebuild(), "1", 0).Err()
}

// Rebuild describes every pending case with the current model, clusters
// them afresh and sets their priorities (re-ranker, raised lifts). One
// replica at a time should run it (the leader); cases queued meanwhile
// are clustered by Ingest against the new clusters, and cases labelled
// meanwhile stay reviewed. It returns the cases moved.
func (s *Service) Rebuild(ctx context.Context) (int, error) {
	m := s.cfg.Model()
	rctx, cancel := s.bound(ctx)
	_ = s.rdb.Del(rctx, s.kRebuild()).Err()
	names, err := s.rdb.SMembers(rctx, s.kQueues()).Result()
	cancel()
	if err != nil {
		return 0, err
	}
	var ids []string
	for _, q := range names {
		rctx, cancel := s.bound(ctx)
		got, err := s.rdb.ZRange(rctx, s.p+"q:"+q, 0, -1).Result()
		cancel()
		if err != nil {
			return 0, err
		}
		ids = append(ids, got...)
	}
	var cases []*Case
	for from := 0; from < len(ids); from += 1000 {
		rctx, cancel := s.bound(ctx)
		cs, err := s.getMany(rctx, ids[from:min(from+1000, len(ids))])
		cancel()
		if err != nil {
			return 0, err
		}
		for _, c := range cs {
			if c.Pending() {
				cases = append(cases, c)
			}
		}
	}
	old := make([]int, len(cases))
	for i, c := range cases {
		old[i] = c.Cluster
	}
	doc := clusterDoc{State: review.ClusterState{Max: s.cfg.MaxClusters}}
	if m != nil {
		if err := s.redescribe(m, cases); err != nil {
			return 0, err
		}
		if err := s.prioritise(ctx, cases, m); err != nil {
			return 0, err
		}
		// Cluster in priority order, so the first clusters are the
		// kinds at the top of the queue.
		order := make([]int, len(cases))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int {
			if cases[a].Priority != cases[b].Priority {
				if cases[a].Priority > cases[b].Priority {
					return -1
				}
				return 1
			}
			return 0
		})
		var warm [][]float32
		for _, i := range order {
			if cases[i].Embedding != nil && len(warm) < warmCases {
				warm = append(warm, cases[i].Embedding)
			}
		}
		doc.Digest = m.Digest
		k := review.RestoreClusters(doc.State)
		if len(warm) >= 2 {
			k.Radius = review.LearnRadius(warm)
			for _, i := range order {
				c := cases[i]
				c.Cluster = -1
				if c.Embedding != nil {
					c.Cluster = k.AssignOne(c.Embedding)
				}
			}
		} else {
			doc.Warm = warm
		}
		doc.State = k.State()
	} else if err := s.prioritise(ctx, cases, nil); err != nil {
		return 0, err
	}
	blob, err := json.Marshal(doc)
	if err != nil {
		return 0, err
	}
	rctx, cancel = s.bound(ctx)
	err = s.rdb.Set(rctx, s.kClusters(), blob, 0).Err()
	cancel()
	if err != nil {
		return 0, err
	}
	moved := 0
	for from := 0; from < len(cases); from += 500 {
		part := cases[from:min(from+500, len(cases))]
		cmds := make([]*redis.Cmd, len(part))
		rctx, cancel := s.bound(ctx)
		_, err := s.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
			for j, c := range part {
				js, err := json.Marshal(c)
				if err != nil {
					return err
				}
				cmds[j] = moveScript.Eval(rctx, p, []string{s.kCase(c.ID()), s.kQueue(old[from+j]), s.kQueue(c.Cluster), s.kQueues()},
					js, c.Priority, c.ID(), fmt.Sprint(c.Cluster))
			}
			return nil
		})
		cancel()
		if err != nil {
			return moved, err
		}
		for _, c := range cmds {
			if v, _ := c.Int(); v == 1 {
				moved++
			}
		}
	}
	return moved, nil
}
