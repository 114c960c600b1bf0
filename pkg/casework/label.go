package casework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/review"
)

// Sources of a label.
const (
	SourceCase    = "case"
	SourceCluster = "cluster"
)

// MaxNote bounds a label's note.
const MaxNote = 2000

// checkLabel validates an analyst's decision before anything is written.
func checkLabel(l *labels.Label) error {
	switch {
	case l.TransactionID == "":
		return errors.New("no transaction id")
	case l.Label != labels.Fraud && l.Label != labels.Legitimate && l.Label != labels.Unsure:
		return fmt.Errorf("label %q is not fraud, legitimate or unsure", l.Label)
	case l.Analyst == "":
		return errors.New("a label needs its analyst")
	case len(l.Note) > MaxNote || !utf8.ValidString(l.Note):
		return fmt.Errorf("the note must be UTF-8 text of at most %d bytes", MaxNote)
	}
	return nil
}

// Label records an analyst's decision on a transaction: written first to
// the labels topic (the system of record; nothing is indexed if that
// fails), then indexed here: the case leaves the queue, its history keeps
// every label (the latest wins), its entities' tallies and its cluster's
// counts move, and a fraud raises the pending cases that share its card
// or terminal or lie near it. at and model_version are filled in when
// empty. A transaction with no case can be labelled too (from the
// similar-transactions list): it is indexed and published the same way.
func (s *Service) Label(ctx context.Context, l labels.Label) (labels.Label, error) {
	if l.At.IsZero() {
		l.At = s.cfg.Now().UTC()
	}
	if l.Source == "" {
		l.Source = SourceCase
	}
	if err := checkLabel(&l); err != nil {
		return l, err
	}
	c, err := s.Get(ctx, l.TransactionID)
	if err != nil && !errors.Is(err, ErrNoCase) {
		return l, err
	}
	if l.ModelVersion == "" && c != nil {
		l.ModelVersion = c.ModelVersion
	}
	if err := s.cfg.Labels.WriteLabels(ctx, []labels.Label{l}); err != nil {
		return l, fmt.Errorf("the label was not recorded (labels topic): %w", err)
	}
	return l, s.index(ctx, l)
}

func jsonLabel(l labels.Label) ([]byte, error) { return json.Marshal(l) }

// index applies a published label in Redis. The case is read again
// under WATCH, so a rebuild or a raise that moved or rewrote it since the
// caller read it (during the labels topic's write, say) is not undone and
// the case leaves the list it is in now, not the one it was in; on a
// conflict it is tried again.
func (s *Service) index(ctx context.Context, l labels.Label) error {
	js, err := jsonLabel(l)
	if err != nil {
		return err
	}
	var c *Case
	var prev *labels.Label
	for attempt := 0; ; attempt++ {
		rctx, cancel := s.bound(ctx)
		err = s.rdb.Watch(rctx, func(tx *redis.Tx) error {
			c, prev = nil, nil
			cur, err := s.getFrom(rctx, tx, l.TransactionID)
			switch {
			case errors.Is(err, ErrNoCase):
			case err != nil:
				return err
			default:
				c, prev = cur, cur.Label
				c.Label = &l
			}
			_, err = tx.TxPipelined(rctx, func(p redis.Pipeliner) error {
				p.RPush(rctx, s.kHistory(l.TransactionID), js)
				p.HSet(rctx, s.kLatest(), l.TransactionID, l.Label)
				p.ZAdd(rctx, s.kLabelled(), redis.Z{Score: float64(l.At.UnixMilli()), Member: l.TransactionID})
				p.Incr(rctx, s.kLabelCount())
				p.LPush(rctx, s.kAudit(), fmt.Sprintf(`{"at":%q,"analyst":%q,"action":"label","transaction_id":%q,"label":%q,"source":%q}`,
					l.At.Format(time.RFC3339Nano), l.Analyst, l.TransactionID, l.Label, l.Source))
				p.LTrim(rctx, s.kAudit(), 0, maxAudit-1)
				if c == nil {
					return nil
				}
				cj, err := json.Marshal(c)
				if err != nil {
					return err
				}
				p.Set(rctx, s.kCase(c.ID()), cj, 0)
				p.ZRem(rctx, s.kQueue(c.Cluster), c.ID())
				st := s.kClusterStat(c.Cluster)
				if prev != nil {
					p.HIncrBy(rctx, st, prev.Label, -1)
				}
				p.HIncrBy(rctx, st, l.Label, 1)
				for _, k := range c.Keys {
					p.SRem(rctx, s.kEntity(k), c.ID())
					if prev != nil && prev.Label != labels.Unsure {
						p.HIncrBy(rctx, s.kTally(k), prev.Label, -1)
					}
					if l.Label != labels.Unsure {
						p.HIncrBy(rctx, s.kTally(k), l.Label, 1)
						p.Expire(rctx, s.kTally(k), s.cfg.PropagateWindow)
					}
				}
				return nil
			})
			return err
		}, s.kCase(l.TransactionID))
		cancel()
		if !errors.Is(err, redis.TxFailedErr) || attempt == 8 {
			break
		}
		// The case changed meanwhile (a rebuild moved it): read it again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(5<<attempt) * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("the label is on the labels topic but not yet in the queue's index: %w", err)
	}
	if c != nil && (l.Label == labels.Fraud || prev != nil && prev.Label == labels.Fraud || l.Label == labels.Legitimate) {
		if err := s.propagate(ctx, c, l.Label == labels.Fraud); err != nil {
			s.log.Warn("re-weighing cases like a labelled one failed", "transaction_id", c.ID(), "err", err)
		}
	}
	return nil
}

// maxAudit bounds the audit list kept in Redis (the labels topic keeps
// every label for good).
const maxAudit = 100_000

// propagate re-weighs the pending cases that share an entity with
// labelled case c: with fraud, they are raised (and the ones among its
// nearest recent transactions, within the clusters' radius, too); with
// any label, the raised ones get their lift again from the entities'
// label counts, so a legitimate label at a terminal lowers what one fraud
// there raised.
func (s *Service) propagate(ctx context.Context, c *Case, fraud bool) error {
	why := map[string]string{}
	near := map[string]bool{}
	rctx, cancel := s.bound(ctx)
	defer cancel()
	for _, k := range c.Keys {
		ids, err := s.rdb.SMembers(rctx, s.kEntity(k)).Result()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id != c.ID() && why[id] == "" {
				why[id] = "shares " + k + " with confirmed fraud " + c.ID()
			}
		}
	}
	if r := s.recent.Load(); fraud && r != nil && len(c.Embedding) == r.Dim() {
		radius := math.Inf(1)
		if doc, err := s.loadClusters(rctx, s.rdb); err == nil && doc.State.Radius > 0 && doc.Digest == c.Digest {
			radius = doc.State.Radius
		}
		for _, h := range r.Nearest(c.Embedding, s.cfg.Neighbours, c.ID()) {
			if h.Distance > radius {
				break
			}
			near[h.ID] = true
			if why[h.ID] == "" {
				why[h.ID] = "looks like confirmed fraud " + c.ID()
			}
		}
	}
	if len(why) == 0 {
		return nil
	}
	ids := make([]string, 0, len(why))
	for id := range why {
		ids = append(ids, id)
	}
	cases, err := s.getMany(rctx, ids)
	if err != nil {
		return err
	}
	var raise []*Case
	for _, x := range cases {
		switch {
		case !x.Pending():
		case x.Raised == "" && fraud:
			x.Raised, x.Near = why[x.ID()], near[x.ID()]
			raise = append(raise, x)
		case x.Raised != "":
			x.Near = x.Near || near[x.ID()]
			raise = append(raise, x) // its lift is weighed again
		}
	}
	if len(raise) == 0 {
		return nil
	}
	if err := s.prioritise(ctx, raise, s.cfg.Model()); err != nil {
		return err
	}
	_, err = s.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
		for _, x := range raise {
			js, err := json.Marshal(x)
			if err != nil {
				return err
			}
			moveScript.Eval(rctx, p, []string{s.kCase(x.ID()), s.kQueue(x.Cluster), s.kQueue(x.Cluster), s.kQueues()},
				js, x.Priority, x.ID(), fmt.Sprint(x.Cluster))
		}
		return nil
	})
	return err
}

// History returns every label a transaction was given, oldest first.
func (s *Service) History(ctx context.Context, id string) ([]labels.Label, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	vals, err := s.rdb.LRange(ctx, s.kHistory(id), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]labels.Label, 0, len(vals))
	for _, v := range vals {
		var l labels.Label
		if json.Unmarshal([]byte(v), &l) == nil {
			out = append(out, l)
		}
	}
	return out, nil
}

// Latest returns the latest label of each id that has one.
func (s *Service) Latest(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	vals, err := s.rdb.HMGet(ctx, s.kLatest(), ids...).Result()
	if err != nil {
		return nil, err
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[ids[i]] = str
		}
	}
	return out, nil
}

// maxClusterLabel bounds the cases one cluster label applies to.
const maxClusterLabel = 10_000

// LabelCluster applies a label to every case still pending in a cluster
// (after an analyst reviewed a sample of it), each recorded with source
// "cluster", not as an individual review. It returns how many were
// labelled.
func (s *Service) LabelCluster(ctx context.Context, cluster int, label, analyst, note string) (int, error) {
	rctx, cancel := s.bound(ctx)
	ids, err := s.rdb.ZRevRange(rctx, s.kQueue(cluster), 0, maxClusterLabel-1).Result()
	var cases []*Case
	if err == nil {
		cases, err = s.getMany(rctx, ids)
	}
	cancel()
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now().UTC()
	var ls []labels.Label
	for _, c := range cases {
		l := labels.Label{TransactionID: c.ID(), Label: label, Analyst: analyst, At: now, ModelVersion: c.ModelVersion,
			Note: note, Source: SourceCluster}
		if err := checkLabel(&l); err != nil {
			return 0, err
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return 0, nil
	}
	if err := s.cfg.Labels.WriteLabels(ctx, ls); err != nil {
		return 0, fmt.Errorf("the labels were not recorded (labels topic): %w", err)
	}
	for i := range cases {
		if err := s.index(ctx, ls[i]); err != nil {
			return i, err
		}
	}
	return len(ls), nil
}

// ClusterInfo describes one cluster for the cluster view.
type ClusterInfo struct {
	ID      int
	Pending int64
	// Labelled counts the cluster's reviewed cases by label.
	Labelled map[string]int64
	// Reasons are the fields most often among the reasons of its first
	// pending cases.
	Reasons []string
	// Sample is its first pending cases, by priority.
	Sample []*Case
}

// LabelledShare is the share of the cluster's cases that were reviewed.
func (ci ClusterInfo) LabelledShare() float64 {
	var n int64
	for _, v := range ci.Labelled {
		n += v
	}
	if n+ci.Pending == 0 {
		return 0
	}
	return float64(n) / float64(n+ci.Pending)
}

// Clusters describes every cluster with pending or reviewed cases, with a
// sample of up to sample cases each.
func (s *Service) Clusters(ctx context.Context, sample int) ([]ClusterInfo, error) {
	rctx, cancel := s.bound(ctx)
	defer cancel()
	names, err := s.rdb.SMembers(rctx, s.kQueues()).Result()
	if err != nil {
		return nil, err
	}
	var out []ClusterInfo
	for _, q := range names {
		var id int
		if _, err := fmt.Sscan(q, &id); err != nil {
			continue
		}
		ci, err := s.Cluster(ctx, id, sample)
		if err != nil {
			return nil, err
		}
		if ci.Pending > 0 || len(ci.Labelled) > 0 {
			out = append(out, ci)
		}
	}
	sortClusters(out)
	return out, nil
}

// Cluster describes one cluster.
func (s *Service) Cluster(ctx context.Context, id, sample int) (ClusterInfo, error) {
	rctx, cancel := s.bound(ctx)
	defer cancel()
	ci := ClusterInfo{ID: id, Labelled: map[string]int64{}}
	var card *redis.IntCmd
	var stat *redis.MapStringStringCmd
	var head *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
		card = p.ZCard(rctx, s.kQueue(id))
		stat = p.HGetAll(rctx, s.kClusterStat(id))
		head = p.ZRevRange(rctx, s.kQueue(id), 0, int64(max(sample, 20))-1)
		return nil
	})
	if err != nil {
		return ci, err
	}
	ci.Pending = card.Val()
	for k, v := range stat.Val() {
		var n int64
		fmt.Sscan(v, &n)
		if n > 0 {
			ci.Labelled[k] = n
		}
	}
	cases, err := s.getMany(rctx, head.Val())
	if err != nil {
		return ci, err
	}
	count := map[string]int{}
	for _, c := range cases {
		for _, r := range c.Reasons {
			count[r.Field]++
		}
	}
	ci.Reasons = topKeys(count, 3)
	ci.Sample = cases[:min(sample, len(cases))]
	return ci, nil
}

func topKeys(m map[string]int, k int) []string {
	var keys []string
	for key := range m {
		keys = append(keys, key)
	}
	sortByCount(keys, m)
	return keys[:min(k, len(keys))]
}

// Audit returns the latest n audit events (JSON), newest first.
func (s *Service) Audit(ctx context.Context, n int) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.rdb.LRange(ctx, s.kAudit(), 0, int64(n)-1).Result()
}

// Record appends an event (sign-in, sign-out, refusal) to the audit list.
func (s *Service) Record(ctx context.Context, analyst, action, detail string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ev, _ := json.Marshal(map[string]string{"at": s.cfg.Now().UTC().Format(time.RFC3339Nano), "analyst": analyst, "action": action,
		"detail": strings.TrimSpace(detail)})
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, s.kAudit(), ev)
		p.LTrim(ctx, s.kAudit(), 0, maxAudit-1)
		return nil
	})
	return err
}

// Similar is a recent transaction near a case, with its latest label.
type Similar struct {
	review.Hit
	Label string
}

// Similar returns up to k recent transactions nearest the case by
// embedding (exact search over the recent store), with their labels.
func (s *Service) Similar(ctx context.Context, c *Case, k int) ([]Similar, error) {
	r := s.recent.Load()
	if r == nil {
		return nil, nil
	}
	emb := c.Embedding
	if m := s.cfg.Model(); m == nil || c.Digest != m.Digest || len(emb) != r.Dim() {
		// The case was described under another model: its stored
		// embedding is in another space than the store's.
		e, ok := r.Embedding(c.ID())
		if !ok {
			return nil, nil
		}
		emb = e
	}
	hits := r.Nearest(emb, k, c.ID())
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	lab, err := s.Latest(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]Similar, len(hits))
	for i, h := range hits {
		out[i] = Similar{Hit: h, Label: lab[h.ID]}
	}
	return out, nil
}

// EntityHistory returns, per entity key of the case, up to n of that
// entity's other recent transactions, newest first.
func (s *Service) EntityHistory(c *Case, n int) map[string][]review.Entry {
	out := map[string][]review.Entry{}
	r := s.recent.Load()
	if r == nil {
		return out
	}
	for _, k := range c.Keys {
		var es []review.Entry
		for _, e := range r.ByKey(k, n+1) {
			if e.ID != c.ID() && len(es) < n {
				es = append(es, e)
			}
		}
		out[k] = es
	}
	return out
}
