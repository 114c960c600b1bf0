package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// EntityStore keeps the entities' states (entity.State, EncodedSize bytes
// each, 1 more when it counts categorical fields and CategoryEncodedSize
// per field counted, and the positions StepEntities has added: 2 bytes
// and 2–10 per partition) where every scorer worker sees them: a card's
// transactions reach one worker when the topic is keyed by card, but a
// terminal's come from every partition, so no worker can keep them alone.
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
	// month whose habit it holds, by when its weight is e^-3. It is set
	// when a state is created and renewed when its latest event moves to
	// another day (UTC), not on every write: renewing costs Redis about as
	// much as the write itself (SET with PX against SET KEEPTTL, 4,000
	// states: 0.75 against 0.40 µs each), so an active entity's state
	// expires between TTL and TTL plus a day after its last transaction.
	TTL time.Duration
	// Timeout bounds each round trip. Default 2s.
	Timeout time.Duration
}

// DefaultEntityTTL is RedisEntityStore's default TTL.
const DefaultEntityTTL = 90 * 24 * time.Hour

// swapScript sets each KEYS[i] to ARGV[2i+2] where it holds ARGV[2i+1]
// ("" for absent; a state is never empty), renewing its TTL (ARGV[1], ms)
// where byte i of ARGV[2] is "1" and keeping it otherwise, and returns, for
// each key that held something else, its index (1-based) and current value
// ("" for absent). One MGET reads the keys: a GET per key cost Redis 20%
// more.
var swapScript = redis.NewScript(`
local ttl = tonumber(ARGV[1])
local renew = ARGV[2]
local vals = {}
for from = 1, #KEYS, 1000 do
  -- unpack's results are bounded by Lua's stack (8,000 here)
  local part = redis.call('MGET', unpack(KEYS, from, math.min(from + 999, #KEYS)))
  for k = 1, #part do vals[from + k - 1] = part[k] end
end
local out = {}
for i = 1, #KEYS do
  local cur = vals[i]
  if cur == false then cur = '' end
  if cur == ARGV[2*i+1] then
    if string.byte(renew, i) == 49 then
      redis.call('SET', KEYS[i], ARGV[2*i+2], 'PX', ttl)
    else
      redis.call('SET', KEYS[i], ARGV[2*i+2], 'KEEPTTL')
    end
  else
    out[#out+1] = i
    out[#out+1] = cur
  end
end
return out
`)

// renewTTL reports whether storing next over prev renews the key's TTL:
// when there was no state, or when the state's latest event has moved to
// another day. A value it cannot read renews.
func renewTTL(prev, next []byte) bool {
	a, okA := storedLast(prev)
	b, okB := storedLast(next)
	const day = 24 * 60 * 60 * 1000
	return !okA || !okB || a/day != b/day
}

// storedLast reads the latest event time (Unix ms) of a stored value
// (see appendStored) without decoding its state.
func storedLast(b []byte) (int64, bool) {
	b, err := readApplied(b, nil)
	if err != nil {
		return 0, false
	}
	return entity.EncodedLast(b)
}

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
	args := make([]any, 0, 2+2*len(keys))
	renew := make([]byte, len(keys))
	for i := range keys {
		renew[i] = '0'
		if renewTTL(prev[i], next[i]) {
			renew[i] = '1'
		}
	}
	args = append(args, ttl.Milliseconds(), renew)
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

// Position is where a transaction was read: a partition of the
// transactions topic and the offset there (Offset < 0: unknown).
type Position struct {
	Partition int32
	Offset    int64
}

// An entity's stored value keeps, before its entity.State, the highest
// offset it has added from each partition (its applied positions), so a
// batch Kafka delivers again (a worker stopped after storing the states
// but before committing the batch) is not counted twice: the marker byte,
// the count of partitions, then partition and offset as uvarints, sorted
// by partition. A value without the marker (one that recorded no
// positions, as the offline replay's and those stored before positions
// were kept) is the bare state.
const appliedMarker = 0xA0 // never a state's first byte (its version)

// maxApplied bounds the partitions an entity's value remembers; from
// another partition beyond them, redelivered transactions count again.
const maxApplied = 256

// decodeStored reads a stored value into st and returns its applied
// positions (nil for a bare state).
func decodeStored(b []byte, st *entity.State) ([]Position, error) {
	*st = entity.State{}
	if len(b) == 0 {
		return nil, nil
	}
	var out []Position
	b, err := readApplied(b, func(p Position) { out = append(out, p) })
	if err != nil {
		return nil, err
	}
	return out, st.UnmarshalBinary(b)
}

// readApplied reads the applied positions a stored value starts with,
// passing each to fn when fn is not nil, and returns the state's encoding
// after them (all of b for a bare state).
func readApplied(b []byte, fn func(Position)) ([]byte, error) {
	if len(b) == 0 || b[0] != appliedMarker {
		return b, nil
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxApplied {
		return nil, fmt.Errorf("entity: a stored value's applied positions are unreadable (count %d)", n)
	}
	b = b[k:]
	for range n {
		part, k1 := binary.Uvarint(b)
		if k1 <= 0 || part > math.MaxInt32 {
			return nil, errors.New("entity: a stored value's applied partition is unreadable")
		}
		off, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 || off > math.MaxInt64 {
			return nil, errors.New("entity: a stored value's applied offset is unreadable")
		}
		if fn != nil {
			fn(Position{int32(part), int64(off)})
		}
		b = b[k1+k2:]
	}
	return b, nil
}

// appendStored appends the stored value of st with applied positions a.
func appendStored(dst []byte, a []Position, st *entity.State) []byte {
	if len(a) > 0 {
		dst = append(dst, appliedMarker)
		dst = binary.AppendUvarint(dst, uint64(len(a)))
		for _, p := range a {
			dst = binary.AppendUvarint(dst, uint64(p.Partition))
			dst = binary.AppendUvarint(dst, uint64(p.Offset))
		}
	}
	return st.AppendBinary(dst)
}

// find returns where partition's entry is, or would go, in applied
// (sorted by partition), and whether it is there.
func find(applied []Position, partition int32) (int, bool) {
	return slices.BinarySearchFunc(applied, partition, func(a Position, part int32) int { return cmp.Compare(a.Partition, part) })
}

// covered reports whether applied holds p: the entity has added p's
// transaction already.
func covered(applied []Position, p Position) bool {
	if p.Offset < 0 {
		return false
	}
	k, ok := find(applied, p.Partition)
	return ok && p.Offset <= applied[k].Offset
}

// apply records p in applied (sorted by partition) and returns it: the
// partition's highest offset added, or with restart p's offset.
func apply(applied []Position, p Position, restart bool) []Position {
	if p.Offset < 0 || p.Partition < 0 {
		return applied
	}
	k, ok := find(applied, p.Partition)
	switch {
	case ok && restart:
		applied[k].Offset = p.Offset
	case ok:
		applied[k].Offset = max(applied[k].Offset, p.Offset)
	case len(applied) < maxApplied:
		applied = slices.Insert(applied, k, p)
	}
	return applied
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
//
// pos, when not nil, gives each transaction's position (pos[i] for
// txs[i]). An entity that has already added a transaction at that
// position (a redelivered batch, or one a worker that lost its partition
// stored before it stopped) does not add it again; its value is computed
// from the stored state, which holds it already. A transaction at an
// offset already added but more than a second newer than the entity's
// latest event is added: its partition's offsets started again (a topic
// deleted and created).
//
// A stored value that cannot be read is not retried for ever. A damaged
// one: the entity starts afresh from this batch and its value is replaced
// by the compare-and-set like any other. One a newer version wrote: it is
// left as it is, and the entity gives its transactions no value (NaN, as
// for an entity a transaction lacks). Either way the error is returned in
// unreadable, once per entity, for the caller to report.
func StepEntities(ctx context.Context, store EntityStore, v *model.EntityView, txs []model.Tx, pos []Position, vals []model.EntityValue) (unreadable []error, err error) {
	if pos != nil && len(pos) != len(txs) {
		return nil, fmt.Errorf("entity states: %d positions for %d transactions", len(pos), len(txs))
	}
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
		return nil, nil
	}
	prev, err := store.Load(ctx, keys)
	if err != nil {
		return nil, err
	}
	order := model.ReplayOrder(txs)
	pending := make([]bool, len(keys))
	for j := range pending {
		pending[j] = true
	}
	states := make([]entity.State, len(keys))
	loaded := make([][]Position, len(keys)) // applied positions as stored
	applied := make([][]Position, len(keys))
	last := make([]time.Time, len(keys)) // the stored state's latest event
	reported := make([]bool, len(keys))  // an unreadable state, reported once
	next := make([][]byte, len(keys))
	for round := 0; ; round++ {
		for j, ok := range pending {
			if !ok {
				continue
			}
			a, err := decodeStored(prev[j], &states[j])
			if errors.Is(err, entity.ErrNewerState) {
				// A newer version's state: leave it to that version (no
				// entity value here, nothing written).
				if !reported[j] {
					unreadable = append(unreadable, fmt.Errorf("entity state %q left as it is, without an entity score: %w", keys[j], err))
				}
				reported[j], pending[j] = true, false
				continue
			}
			if err != nil {
				if !reported[j] {
					unreadable = append(unreadable, fmt.Errorf("entity state %q (%d bytes) started afresh: %w", keys[j], len(prev[j]), err))
				}
				reported[j] = true
				states[j], a = entity.State{}, nil
			}
			loaded[j], applied[j], last[j] = a, slices.Clone(a), states[j].Last()
		}
		for _, i := range order {
			for e := range E {
				j := ref[i*E+e]
				if j < 0 || !pending[j] {
					continue
				}
				seen := pos != nil && covered(loaded[j], pos[i])
				// Within a second of the latest: states stored before event
				// times kept milliseconds hold whole seconds.
				if seen && !txs[i].At.After(last[j].Add(time.Second)) {
					again := states[j]
					vals[i*E+e] = v.Step(e, &again, &txs[i])
					continue
				}
				vals[i*E+e] = v.Step(e, &states[j], &txs[i])
				if pos != nil {
					// seen here: an offset already added, but an event newer
					// than any the entity has; the partition's offsets
					// started again (a topic recreated), so its own count
					// starts again too.
					applied[j] = apply(applied[j], pos[i], seen)
				}
			}
		}
		var ks []string
		var ps, ns [][]byte
		var at []int
		for j, ok := range pending {
			if !ok {
				continue
			}
			next[j] = appendStored(next[j][:0], applied[j], &states[j])
			if bytes.Equal(next[j], prev[j]) {
				// Nothing this batch adds (every transaction already
				// counted: a redelivery, or a worker behind another on the
				// same batch): nothing to write, and so no conflict with
				// a worker that moves the entity on meanwhile.
				pending[j] = false
				continue
			}
			ks, ps, ns, at = append(ks, keys[j]), append(ps, prev[j]), append(ns, next[j]), append(at, j)
		}
		if len(ks) == 0 {
			return unreadable, nil
		}
		conflicts, current, err := store.Swap(ctx, ks, ps, ns)
		if err != nil {
			return unreadable, err
		}
		for _, j := range at {
			pending[j] = false
		}
		if len(conflicts) == 0 {
			return unreadable, nil
		}
		if round+1 == maxSwapRounds {
			return unreadable, fmt.Errorf("entity states: %d entities (%s, …) kept changing under %d rounds of compare-and-set", len(conflicts), keys[at[conflicts[0]]], maxSwapRounds)
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
func (p *Pipeline) joinEntities(ctx context.Context, msgs []kafka.Message, n int, scores []float32) error {
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
	if cap(p.pos) < n {
		p.pos = make([]Position, n)
	}
	p.pos = p.pos[:n]
	for i, s := range p.slots {
		if s >= 0 {
			p.pos[s] = Position{int32(msgs[i].Partition), msgs[i].Offset}
		}
	}
	pctx, cancel := p.drainContext(ctx)
	defer cancel()
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		unreadable, err := StepEntities(pctx, p.cfg.Entities, v, p.txs, p.pos, p.vals)
		if err == nil {
			// Counted once the batch's states are stored: a failed attempt
			// meets the same values again.
			if len(unreadable) > 0 {
				p.m.entityUnreadable.Add(float64(len(unreadable)))
				p.warnEvery("entity-unreadable", "stored entity states could not be read (damaged ones start afresh; a newer version's are left as they are)",
					"count", len(unreadable), "first", unreadable[0])
			}
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
