package casework

import (
	"context"
	"errors"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/labels"
)

// The epoch key marks a Redis that holds the queue's state: when it is
// missing, Redis is new or has lost its data, and the queue is rebuilt
// from the topics that hold it (Restore).
func (s *Service) kEpoch() string { return s.p + "epoch" }

// Restored reports whether Redis holds the queue's state (the epoch key).
func (s *Service) Restored(ctx context.Context) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.rdb.Exists(ctx, s.kEpoch()).Result()
	return n > 0, err
}

// MarkRestored sets the epoch key once Restore has succeeded.
func (s *Service) MarkRestored(ctx context.Context, epoch string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.rdb.Set(ctx, s.kEpoch(), epoch, 0).Err()
}

// Restore rebuilds the queue's state from the topics after Redis lost it
// (or on a first start): alerts are queued again (idempotently), then
// every label is indexed again without being published: a transaction's
// history gets its labels in time order and its latest label decides the
// case, the entities' tallies and the cluster's counts. Records that are
// not alerts or labels are skipped and counted.
func (s *Service) Restore(ctx context.Context, alerts, labelRecords [][]byte) (queued, labelled, skipped int, err error) {
	for from := 0; from < len(alerts); from += 500 {
		n, bad, err := s.Ingest(ctx, alerts[from:min(from+500, len(alerts))])
		if err != nil {
			return queued, 0, skipped, err
		}
		queued += n
		skipped += len(bad)
	}
	byTx := map[string][]labels.Label{}
	for _, v := range labelRecords {
		l, err := labels.Parse(v)
		if err != nil {
			skipped++
			continue
		}
		byTx[l.TransactionID] = append(byTx[l.TransactionID], l)
	}
	ids := make([]string, 0, len(byTx))
	for id := range byTx {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		ls := byTx[id]
		slices.SortStableFunc(ls, func(a, b labels.Label) int { return a.At.Compare(b.At) })
		c, err := s.Get(ctx, id)
		if err != nil && !errors.Is(err, ErrNoCase) {
			return queued, labelled, skipped, err
		}
		if c != nil && c.Label != nil {
			continue // indexed already (a restore run before this one)
		}
		rctx, cancel := s.bound(ctx)
		_, err = s.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
			for _, l := range ls[:len(ls)-1] {
				if js, err := jsonLabel(l); err == nil {
					p.RPush(rctx, s.kHistory(id), js)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			return queued, labelled, skipped, err
		}
		if err := s.index(ctx, ls[len(ls)-1]); err != nil {
			return queued, labelled, skipped, err
		}
		labelled++
	}
	return queued, labelled, skipped, nil
}
