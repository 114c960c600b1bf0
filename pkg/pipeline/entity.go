package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// EntityStore keeps the entities' states (entity.State, EncodedSize bytes
// each, 1 + CategoryEncodedSize more per categorical field counted) where
// every scorer worker sees them: a card's transactions reach one worker
// when the topic is keyed by card, but a terminal's come from every
// partition, so no worker can keep them alone.
type EntityStore interface {
	// Load returns the encoded states of keys (nil where none).
	Load(ctx context.Context, keys []string) ([][]byte, error)
	// Swap sets keys[i] to next[i] where it still holds prev[i] (nil:
	// absent), each key on its own. Where another worker changed a key
	// meanwhile, nothing is written to it and conflicts holds its index
	// and current holds what it now is.
	Swap(ctx context.Context, keys []string, prev, next [][]byte) (conflicts []int, current [][]byte, err error)
}

// RedisEntityStore is an EntityStore in Redis: one string per entity,
// expiring after TTL without transactions. Per batch it makes two round
// trips, a pipelined MGET and one script that compares and sets each key
// (a plain write would lose a concurrent worker's update).
type RedisEntityStore struct {
	Client redis.Cmdable
	// Prefix of the keys ("fraudstream:entity:"); the field name and the
	// entity's value follow.
	Prefix string
	// TTL of an idle entity's state. Default 90 days: three times the
	// month whose habit it holds, by when its weight is e^-3.
	TTL time.Duration
	// Timeout bounds each round trip. Default 2s.
	Timeout time.Duration
}

// DefaultEntityTTL is RedisEntityStore's default TTL.
const DefaultEntityTTL = 90 * 24 * time.Hour

// swapScript sets each KEYS[i] to ARGV[2i+1] where it holds ARGV[2i]
// ("" for absent; a state is never empty), with the TTL in ARGV[1] (ms),
// and returns, for each key that held something else, its index (1-based)
// and current value ("" for absent).
var swapScript = redis.NewScript(`
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur == false then cur = '' end
  if cur == ARGV[2*i] then
    redis.call('SET', KEYS[i], ARGV[2*i+1], 'PX', ttl)
  else
    out[#out+1] = i
    out[#out+1] = cur
  end
end
return out
`)

func (r *RedisEntityStore) defaults() (time.Duration, time.Duration) {
	ttl, to := r.TTL, r.Timeout
	if ttl <= 0 {
		ttl = DefaultEntityTTL
	}
	if to <= 0 {
		to = 2 * time.Second
	}
	return ttl, to
}

// Load implements EntityStore.
func (r *RedisEntityStore) Load(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	_, to := r.defaults()
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	vals, err := r.Client.MGet(ctx, r.full(keys)...).Result()
	if err != nil {
		return nil, fmt.Errorf("entity states: load %d keys: %w", len(keys), err)
	}
	out := make([][]byte, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = []byte(s)
		}
	}
	return out, nil
}

// Swap implements EntityStore.
func (r *RedisEntityStore) Swap(ctx context.Context, keys []string, prev, next [][]byte) ([]int, [][]byte, error) {
	if len(keys) == 0 {
		return nil, nil, nil
	}
	ttl, to := r.defaults()
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	args := make([]any, 0, 1+2*len(keys))
	args = append(args, ttl.Milliseconds())
	for i := range keys {
		args = append(args, prev[i], next[i])
	}
	res, err := swapScript.Run(ctx, r.Client, r.full(keys), args...).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("entity states: store %d keys: %w", len(keys), err)
	}
	var conflicts []int
	var current [][]byte
	for k := 0; k+1 < len(res); k += 2 {
		i, ok := res[k].(int64)
		if !ok || i < 1 || int(i) > len(keys) {
			return nil, nil, fmt.Errorf("entity states: the store script answered %v", res[k])
		}
		s, _ := res[k+1].(string)
		conflicts = append(conflicts, int(i-1))
		if s == "" {
			current = append(current, nil)
		} else {
			current = append(current, []byte(s))
		}
	}
	return conflicts, current, nil
}

func (r *RedisEntityStore) full(keys []string) []string {
	prefix := r.Prefix
	if prefix == "" {
		prefix = "fraudstream:entity:"
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = prefix + k
	}
	return out
}

// maxSwapRounds bounds the compare-and-set rounds of one batch: each round
// settles every key no other worker wrote meanwhile.
const maxSwapRounds = 8

// StepEntities computes the entity values of a batch's transactions
// (vals[i*E+e] for transaction i and entity field e of v; NaN ratios for
// an entity a transaction lacks) from the states in store, stepping them
// in event-time order (model.ReplayOrder), and stores the states back.
// Where another worker changed an entity meanwhile, its transactions are
// stepped again from the state that worker left: the values are what one
// worker replaying every transaction in the order they were stored would
// compute, which is the offline replay's when batches arrive in time order.
func StepEntities(ctx context.Context, store EntityStore, v *model.EntityView, txs []model.Tx, vals []model.EntityValue) error {
	E := len(v.Part.Fields)
	// The batch's distinct entities, and each transaction's.
	index := map[string]int{}
	var keys []string
	ref := make([]int, len(txs)*E) // key index, -1: none
	for i := range txs {
		for e := range E {
			ref[i*E+e] = -1
			vals[i*E+e] = model.NoEntityValue()
			if !txs[i].Usable(e) {
				continue
			}
			k := v.Part.Fields[e] + ":" + txs[i].Keys[e]
			j, ok := index[k]
			if !ok {
				j = len(keys)
				index[k] = j
				keys = append(keys, k)
			}
			ref[i*E+e] = j
		}
	}
	if len(keys) == 0 {
		return nil
	}
	prev, err := store.Load(ctx, keys)
	if err != nil {
		return err
	}
	order := model.ReplayOrder(txs)
	pending := make([]bool, len(keys))
	for j := range pending {
		pending[j] = true
	}
	states := make([]entity.State, len(keys))
	next := make([][]byte, len(keys))
	for round := 0; ; round++ {
		for j, ok := range pending {
			if !ok {
				continue
			}
			states[j] = entity.State{}
			if prev[j] != nil {
				if err := states[j].UnmarshalBinary(prev[j]); err != nil {
					return fmt.Errorf("entity state %q: %w", keys[j], err)
				}
			}
		}
		for _, i := range order {
			for e := range E {
				if j := ref[i*E+e]; j >= 0 && pending[j] {
					vals[i*E+e] = v.Step(e, &states[j], &txs[i])
				}
			}
		}
		var ks []string
		var ps, ns [][]byte
		var at []int
		for j, ok := range pending {
			if ok {
				next[j] = states[j].AppendBinary(next[j][:0])
				ks, ps, ns, at = append(ks, keys[j]), append(ps, prev[j]), append(ns, next[j]), append(at, j)
			}
		}
		conflicts, current, err := store.Swap(ctx, ks, ps, ns)
		if err != nil {
			return err
		}
		for _, j := range at {
			pending[j] = false
		}
		if len(conflicts) == 0 {
			return nil
		}
		if round+1 == maxSwapRounds {
			return fmt.Errorf("entity states: %d entities (%s, …) kept changing under %d rounds of compare-and-set", len(conflicts), keys[at[conflicts[0]]], maxSwapRounds)
		}
		for k, c := range conflicts {
			j := at[c]
			pending[j], prev[j] = true, current[k]
		}
	}
}

// joinEntities joins the batch's n scores to the entity score when the
// model has one and the pipeline has a store, retrying a failing store
// with backoff (until the drain ends: the batch then stays uncommitted).
// p.ent[s] tells, for slot s, which entity set its score (-1: none).
func (p *Pipeline) joinEntities(ctx context.Context, n int, scores []float32) error {
	p.ent = p.ent[:0]
	if p.ev == nil || p.cfg.Entities == nil || n == 0 {
		return nil
	}
	v := p.ev
	E := len(v.Part.Fields)
	if cap(p.txs) < n {
		p.txs = make([]model.Tx, n)
		p.vals = make([]model.EntityValue, n*E)
	}
	p.txs, p.vals = p.txs[:n], p.vals[:n*E]
	for s := range n {
		v.ReadRaw(func(c int) string { return p.sc.Raw(s, c) }, &p.txs[s])
	}
	pctx, cancel := p.drainContext(ctx)
	defer cancel()
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := StepEntities(pctx, p.cfg.Entities, v, p.txs, p.vals)
		if err == nil {
			break
		}
		p.m.failures.Inc()
		if pctx.Err() != nil {
			return fmt.Errorf("%w: last entity store error: %v", errShutdown, err)
		}
		p.warnEvery("entities", "reading or storing entity states failed; retrying", "attempt", attempt, "retry_in", backoff, "err", err)
		if !sleep(pctx, backoff) {
			return fmt.Errorf("%w: last entity store error: %v", errShutdown, err)
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
	for s := range n {
		joined, e := v.Join(float64(scores[s]), p.vals[s*E:(s+1)*E])
		scores[s] = float32(joined)
		p.ent = append(p.ent, e)
	}
	return nil
}

// entityReason is an alert's reason for slot s whose score source e
// (EntityView.Join's) set the score, its contribution what the entity
// added to the DAE's score.
func (p *Pipeline) entityReason(s, e int, dae, score float32) AlertReason {
	v, E := p.ev, len(p.ev.Part.Fields)
	e, cat := v.Source(e)
	tx, x := &p.txs[s], p.vals[s*E+e]
	if cat >= 0 {
		note, observed, usual := v.CategoryReason(cat, tx.Keys[e], tx, x)
		return AlertReason{Field: v.Part.Categories[cat].Field, Contribution: score - dae, Observed: observed, Expected: usual, Note: note}
	}
	return AlertReason{Field: v.Part.Fields[e], Contribution: score - dae,
		Observed: strconv.FormatFloat(tx.Amount, 'f', 2, 64), Expected: strconv.FormatFloat(math.Expm1(x.Mean), 'f', 2, 64),
		Note: v.Reason(e, tx.Keys[e], tx.Amount, x)}
}
