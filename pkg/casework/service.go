package casework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/review"
)

// Model is the model the service describes transactions with.
type Model struct {
	Bundle  *model.Bundle
	Version string
	Digest  string
}

// LabelSink writes labels to the system of record (the labels topic). A
// label is indexed in Redis only once WriteLabels has returned nil.
type LabelSink interface {
	WriteLabels(ctx context.Context, ls []labels.Label) error
}

// Config configures a Service.
type Config struct {
	Redis redis.UniversalClient // required
	// Prefix of every Redis key. Default "fraudstream:review:".
	Prefix string
	Labels LabelSink // required
	// Model returns the current model; nil while there is none (cases are
	// then queued by score alone and described once a model arrives).
	Model func() *Model
	// Recent, when set, is searched for similar transactions and entity
	// history. The service does not fill it: the wiring does.
	Recent *review.Recent
	// Timeout bounds each Redis round trip. Default 5s.
	Timeout time.Duration
	// PropagateWindow: a confirmed fraud raises the pending cases that
	// share one of its entity keys for this long. Default 30 days.
	PropagateWindow time.Duration
	// Neighbours: a confirmed fraud raises its nearest pending cases among
	// this many nearest recent transactions. Default 20.
	Neighbours int
	// MaxClusters bounds the embedding clusters. Default 32.
	MaxClusters int
	Logger      *slog.Logger
	Now         func() time.Time
}

// Service is the review queue. It is safe for concurrent use.
type Service struct {
	cfg Config
	rdb redis.UniversalClient
	p   string
	log *slog.Logger

	mu       sync.Mutex // guards desc
	desc     *review.Describer
	descFor  string
	rrMu     sync.RWMutex
	reranker *Reranker
	recent   atomic.Pointer[review.Recent]
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Redis == nil || cfg.Labels == nil {
		return nil, errors.New("casework: a Redis client and a label sink are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "fraudstream:review:"
	}
	if cfg.Model == nil {
		cfg.Model = func() *Model { return nil }
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.PropagateWindow <= 0 {
		cfg.PropagateWindow = 30 * 24 * time.Hour
	}
	if cfg.Neighbours <= 0 {
		cfg.Neighbours = 20
	}
	if cfg.MaxClusters <= 0 {
		cfg.MaxClusters = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, rdb: cfg.Redis, p: cfg.Prefix, log: cfg.Logger}
	s.recent.Store(cfg.Recent)
	return s, nil
}

// SetRecent sets the recent-transactions store (once the first model has
// said what size its embeddings are).
func (s *Service) SetRecent(r *review.Recent) { s.recent.Store(r) }

// CurrentDigest names the current model ("" without one).
func (s *Service) CurrentDigest() string {
	if m := s.cfg.Model(); m != nil {
		return m.Digest
	}
	return ""
}

// Keys. Every key starts with the prefix, so an ACL can confine the
// service to it.
func (s *Service) kCase(id string) string    { return s.p + "case:" + id }
func (s *Service) kQueue(c int) string       { return s.p + "q:" + strconv.Itoa(c) }
func (s *Service) kQueues() string           { return s.p + "queues" }
func (s *Service) kClusters() string         { return s.p + "clusters" }
func (s *Service) kClusterStat(c int) string { return s.p + "cstat:" + strconv.Itoa(c) }
func (s *Service) kHistory(id string) string { return s.p + "history:" + id }
func (s *Service) kLatest() string           { return s.p + "latest" }
func (s *Service) kLabelled() string         { return s.p + "labelled" }
func (s *Service) kEntity(key string) string { return s.p + "entity:" + key }
func (s *Service) kTally(key string) string  { return s.p + "tally:" + key } // as readTallies reads it
func (s *Service) kReranker() string         { return s.p + "reranker" }
func (s *Service) kLabelCount() string       { return s.p + "labels:count" }
func (s *Service) kRebuild() string          { return s.p + "rebuild" }
func (s *Service) kAudit() string            { return s.p + "audit" }

func (s *Service) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// describe runs raws through model m.
func (s *Service) describe(m *Model, raws [][]byte) []review.Described {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.describerFor(m).Describe(raws)
}

// entityFields names the entity fields of model m's schema.
func (s *Service) entityFields(m *Model) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.describerFor(m).EntityFields()
}

// describerFor returns the Describer of model m, made once per model;
// s.mu must be held.
func (s *Service) describerFor(m *Model) *review.Describer {
	if s.desc == nil || s.descFor != m.Digest {
		s.desc, s.descFor = review.NewDescriber(m.Bundle), m.Digest
	}
	return s.desc
}

// clusterDoc is the stored clustering: the state, the model whose
// embeddings it holds, and the warm-up embeddings while the radius is
// being learned.
type clusterDoc struct {
	Digest string              `json:"digest"`
	State  review.ClusterState `json:"state"`
	Warm   [][]float32         `json:"warm,omitempty"`
}

// warmCases is how many embeddings the radius is learned from.
const warmCases = 64

// addScript queues a case unless the transaction is already known:
// KEYS case, queue, queues; ARGV json, priority, id, queue name.
var addScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[4])
  return 1
end
return 0`)

// Ingest queues alerts (alerts-topic records). A transaction already
// queued or reviewed is not queued again (redeliveries, a second decision
// after a model swap). Records that are not alerts are returned with
// their errors, by index, for the caller to route aside; the others are
// queued in one Redis transaction.
func (s *Service) Ingest(ctx context.Context, values [][]byte) (added int, bad map[int]error, err error) {
	bad = map[int]error{}
	var cases []*Case
	for i, v := range values {
		a, err := ParseAlert(v)
		if err != nil {
			bad[i] = err
			continue
		}
		cases = append(cases, &Case{Alert: a, Received: s.cfg.Now().UTC(), Cluster: -1})
	}
	if len(cases) == 0 {
		return 0, bad, nil
	}
	m := s.cfg.Model()
	if m != nil {
		raws := make([][]byte, len(cases))
		for i, c := range cases {
			raws[i] = c.Transaction
		}
		for i, d := range s.describe(m, raws) {
			if d.Err != nil {
				// The alert is kept (an analyst can still read it); it is
				// queued by score, unclustered.
				continue
			}
			c := cases[i]
			c.Digest, c.Features, c.Embedding, c.Keys = m.Digest, d.Features, d.Embedding, d.Keys
		}
	}
	if err := s.prioritise(ctx, cases, m); err != nil {
		return 0, bad, err
	}
	for attempt := 0; ; attempt++ {
		added, err = s.ingestTx(ctx, cases, m)
		if !errors.Is(err, redis.TxFailedErr) || attempt == 8 {
			return added, bad, err
		}
		// Another replica changed the clusters meanwhile: assign again.
		select {
		case <-ctx.Done():
			return 0, bad, ctx.Err()
		case <-time.After(time.Duration(5<<attempt) * time.Millisecond):
		}
	}
}

func (s *Service) ingestTx(ctx context.Context, cases []*Case, m *Model) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var adds []*redis.Cmd
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		doc, err := s.loadClusters(ctx, tx)
		if err != nil {
			return err
		}
		rebuild := false
		if m != nil && doc.Digest != m.Digest {
			// Embeddings of another model: cluster afresh; the leader's
			// rebuild moves the cases queued under the old clusters.
			doc, rebuild = clusterDoc{Digest: m.Digest, State: review.ClusterState{Max: s.cfg.MaxClusters}}, true
		}
		k := review.RestoreClusters(doc.State)
		for _, c := range cases {
			c.Cluster = -1
			if c.Embedding == nil || c.Digest != doc.Digest {
				continue
			}
			if k.Radius == 0 {
				doc.Warm = append(doc.Warm, c.Embedding)
				if len(doc.Warm) >= warmCases {
					k.Radius = review.LearnRadius(doc.Warm)
					doc.Warm, rebuild = nil, true
				}
				continue
			}
			c.Cluster = k.AssignOne(c.Embedding)
		}
		doc.State = k.State()
		blob, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		adds = adds[:0]
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, s.kClusters(), blob, 0)
			if rebuild {
				p.Set(ctx, s.kRebuild(), "1", 0)
			}
			for _, c := range cases {
				js, err := json.Marshal(c)
				if err != nil {
					return err
				}
				q := strconv.Itoa(c.Cluster)
				adds = append(adds, addScript.Eval(ctx, p, []string{s.kCase(c.ID()), s.kQueue(c.Cluster), s.kQueues()}, js, c.Priority, c.ID(), q))
				for _, key := range c.Keys {
					p.SAdd(ctx, s.kEntity(key), c.ID())
					p.Expire(ctx, s.kEntity(key), s.cfg.PropagateWindow)
				}
			}
			return nil
		})
		return err
	}, s.kClusters())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range adds {
		if v, _ := a.Int(); v == 1 {
			n++
		}
	}
	return n, nil
}

// ID is the case's transaction id.
func (c *Case) ID() string { return c.TransactionID }

func (s *Service) loadClusters(ctx context.Context, c redis.Cmdable) (clusterDoc, error) {
	var doc clusterDoc
	b, err := c.Get(ctx, s.kClusters()).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return clusterDoc{State: review.ClusterState{Max: s.cfg.MaxClusters}}, nil
	case err != nil:
		return doc, err
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("casework: stored clusters: %w", err)
	}
	return doc, nil
}

// Get returns a case.
func (s *Service) Get(ctx context.Context, id string) (*Case, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.getFrom(ctx, s.rdb, id)
}

// getFrom reads a case through rc (a client, or a transaction's WATCH).
func (s *Service) getFrom(ctx context.Context, rc redis.Cmdable, id string) (*Case, error) {
	b, err := rc.Get(ctx, s.kCase(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoCase
	}
	if err != nil {
		return nil, err
	}
	var c Case
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("casework: case %s: %w", id, err)
	}
	return &c, nil
}

// ErrNoCase: the transaction has no case.
var ErrNoCase = errors.New("no such case")

func (s *Service) getMany(ctx context.Context, ids []string) ([]*Case, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.kCase(id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]*Case, 0, len(ids))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // gone meanwhile
		}
		var c Case
		if err := json.Unmarshal([]byte(str), &c); err != nil {
			return nil, fmt.Errorf("casework: case %s: %w", ids[i], err)
		}
		out = append(out, &c)
	}
	return out, nil
}

// Queue returns the first n pending cases in review order: each cluster's
// list by priority, interleaved (review.Interleave), so the first cases
// cover the distinct kinds. Cost: one round trip for the lists' heads and
// one for the cases, whatever the queue's length.
func (s *Service) Queue(ctx context.Context, n int) ([]*Case, error) {
	ranked, err := s.order(ctx, n)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ranked))
	for i, r := range ranked {
		ids[i] = r.ID
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.getMany(ctx, ids)
}

func (s *Service) order(ctx context.Context, n int) ([]review.Ranked, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	names, err := s.rdb.SMembers(ctx, s.kQueues()).Result()
	if err != nil {
		return nil, err
	}
	clusters := make([]int, 0, len(names))
	for _, q := range names {
		if c, err := strconv.Atoi(q); err == nil {
			clusters = append(clusters, c)
		}
	}
	slices.Sort(clusters)
	cmds := make([]*redis.ZSliceCmd, len(clusters))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range clusters {
			cmds[i] = p.ZRevRangeWithScores(ctx, s.kQueue(c), 0, int64(n-1))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	lists := make([][]review.Ranked, len(clusters))
	for i, cmd := range cmds {
		for _, z := range cmd.Val() {
			lists[i] = append(lists[i], review.Ranked{ID: z.Member.(string), Priority: z.Score, Cluster: clusters[i]})
		}
	}
	return review.Interleave(lists, 0, n), nil
}

// Pending is the number of cases waiting for review.
func (s *Service) Pending(ctx context.Context) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	names, err := s.rdb.SMembers(ctx, s.kQueues()).Result()
	if err != nil {
		return 0, err
	}
	cmds := make([]*redis.IntCmd, len(names))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range names {
			cmds[i] = p.ZCard(ctx, s.p+"q:"+q)
		}
		return nil
	})
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, err
}

// Neighbours returns a case's position in the first n of the queue and
// the ids before and after it ("" at the ends or when it is not there).
func (s *Service) Neighbours(ctx context.Context, id string, n int) (prev, next string, err error) {
	ranked, err := s.order(ctx, n)
	if err != nil {
		return "", "", err
	}
	for i, r := range ranked {
		if r.ID != id {
			continue
		}
		if i > 0 {
			prev = ranked[i-1].ID
		}
		if i+1 < len(ranked) {
			next = ranked[i+1].ID
		}
		return prev, next, nil
	}
	if len(ranked) > 0 {
		next = ranked[0].ID
	}
	return "", next, nil
}

// leadScript takes or renews the leader lease: KEYS lock; ARGV owner, ms.
var leadScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// Lead takes or renews the lease that makes one replica the one that
// rebuilds the queue and fits the re-ranker; it reports whether owner holds it.
func (s *Service) Lead(ctx context.Context, owner string, ttl time.Duration) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v, err := leadScript.Run(ctx, s.rdb, []string{s.p + "leader"}, owner, ttl.Milliseconds()).Int()
	return v == 1, err
}

// LabelCount is the number of labels indexed so far (relabels included).
func (s *Service) LabelCount(ctx context.Context) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.rdb.Get(ctx, s.kLabelCount()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}
