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
		if next < 0 {
			// next stays -1 on failure: the retry looks the time up again.
			var at int64
			if at, err = startOffset(ctx, cfg, topic, p, since); err == nil {
				next = at
			}
		}
		if err == nil {
			err = r.SetOffset(next)
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

// startOffset is where a partition's tail begins: the first record at or
// after since or, where there is none, the partition's end as it was
// before the lookup. kafka-go's SetOffsetAt turns "none" into LastOffset,
// which its reader resolves only on its first fetch, so a record written
// in between was skipped (a CI run lost a dead letter that way).
func startOffset(ctx context.Context, cfg Config, topic string, p int, since time.Time) (int64, error) {
	if len(cfg.Brokers) == 0 {
		return 0, errors.New("stream: no brokers")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	for _, b := range cfg.Brokers {
		var conn *kafka.Conn
		conn, err = cfg.dialer().DialLeader(ctx, "tcp", b, topic, p)
		if err != nil {
			continue
		}
		dl, _ := ctx.Deadline()
		conn.SetDeadline(dl)
		// The end first: a record appended after it is read either way.
		end, lerr := conn.ReadLastOffset()
		var at int64
		if lerr == nil {
			at, lerr = conn.ReadOffset(since)
		}
		conn.Close()
		if lerr != nil {
			return 0, fmt.Errorf("stream: %s[%d]: offset at %s: %w", topic, p, since.Format(time.RFC3339), lerr)
		}
		if at < 0 {
			return end, nil
		}
		return at, nil
	}
	return 0, fmt.Errorf("stream: %s[%d]: dialing the leader: %w", topic, p, err)
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
