package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Tail reads every partition of topic, outside any consumer group, from
// the first record at or after since, and then follows new records,
// calling handle with batches of up to 256 messages (at most 100ms apart
// while records flow). handle is called from one goroutine per partition
// at once. A partition whose reader fails is reopened with backoff where
// it stopped. Tail returns nil when ctx ends; partitions added while it
// runs are not read.
func Tail(ctx context.Context, cfg Config, topic string, since time.Time, handle func([]kafka.Message)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	a, err := NewAdmin(cfg)
	if err != nil {
		return err
	}
	parts, err := a.Partitions(ctx, topic)
	a.Close()
	if err != nil {
		return fmt.Errorf("stream: tail %s: %w", topic, err)
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { tailPartition(ctx, cfg, topic, p, since, handle) })
	}
	wg.Wait()
	return nil
}

func tailPartition(ctx context.Context, cfg Config, topic string, p int, since time.Time, handle func([]kafka.Message)) {
	next := int64(-1) // offset to resume from after a failure
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: p, Dialer: cfg.dialer(),
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond, ErrorLogger: cfg.errorLogger()})
		var err error
		if next >= 0 {
			err = r.SetOffset(next)
		} else {
			err = r.SetOffsetAt(ctx, since)
		}
		if err == nil {
			next, err = tailRead(ctx, r, handle)
			if err == nil || ctx.Err() != nil {
				r.Close()
				return
			}
		}
		r.Close()
		if cfg.Logger != nil {
			cfg.Logger.Warn("tailing a partition failed; reopening", "topic", topic, "partition", p, "retry_in", backoff, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// tailRead reads r until ctx ends (nil) or a fetch fails; it returns the
// offset to resume from.
func tailRead(ctx context.Context, r *kafka.Reader, handle func([]kafka.Message)) (int64, error) {
	batch := make([]kafka.Message, 0, 256)
	next := int64(-1)
	flush := func() {
		if len(batch) > 0 {
			handle(batch)
			next = batch[len(batch)-1].Offset + 1
			batch = batch[:0]
		}
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	for {
		fctx, cancel := context.WithDeadline(ctx, deadline)
		m, err := r.FetchMessage(fctx)
		cancel()
		switch {
		case err == nil:
			batch = append(batch, m)
			if len(batch) == cap(batch) {
				flush()
				deadline = time.Now().Add(100 * time.Millisecond)
			}
		case ctx.Err() != nil:
			flush()
			return next, nil
		case errors.Is(err, context.DeadlineExceeded):
			flush()
			deadline = time.Now().Add(100 * time.Millisecond)
		default:
			flush()
			if next < 0 {
				next = r.Offset()
			}
			return next, err
		}
	}
}
