package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// ScanWindow calls fn with the value, timestamp, partition and offset of
// every message of topic timestamped at or after since, up to the
// partitions' ends as they were when it started, partition by partition in
// offset order, without
// keeping them (the trainer's entity replay reads weeks of history this
// way). When the window holds more than maxRows (> 0) messages, each
// partition is read from where its newest share of maxRows begins: the
// oldest messages are the ones left out. It returns the number of
// messages in the window, read or not. An error from fn ends the scan.
func (a *Admin) ScanWindow(ctx context.Context, topic string, since time.Time, maxRows int, fn func(value []byte, at time.Time, partition int, offset int64) error) (int64, error) {
	spans, err := a.windowSpans(ctx, topic, since)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, s := range spans {
		total += s.end - s.start
	}
	if maxRows > 0 && total > int64(maxRows) {
		for i, q := range shares(spans, total, int64(maxRows)) {
			spans[i].start = spans[i].end - q
		}
	}
	var st windowStats
	for _, s := range spans {
		if err := a.scanRange(ctx, topic, s, since, &st, fn); err != nil {
			return total, err
		}
	}
	return total, nil
}

// scanRange is readRange calling fn instead of keeping the values.
func (a *Admin) scanRange(ctx context.Context, topic string, r span, since time.Time, st *windowStats, fn func([]byte, time.Time, int, int64) error) error {
	for from := r.start; from < r.end; {
		res, err := retry(ctx, func() (*kafka.FetchResponse, error) {
			st.fetches++
			res, err := a.cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: r.partition, Offset: from,
				MinBytes: 1, MaxBytes: st.fetchBytes(r.end - from), MaxWait: 100 * time.Millisecond})
			if err == nil && res.Error != nil && !errors.Is(res.Error, kafka.OffsetOutOfRange) {
				err = res.Error
			}
			if err != nil {
				return nil, fmt.Errorf("stream: read %s/%d at offset %d: %w", topic, r.partition, from, err)
			}
			return res, nil
		})
		if err != nil {
			return err
		}
		if res.Error != nil {
			return nil // offset out of range: retention deleted these messages since the offsets were listed
		}
		next := from
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("stream: read %s/%d after offset %d: %w", topic, r.partition, next, err)
			}
			st.fetched++
			st.bytes += int64(length(rec.Key) + length(rec.Value))
			if rec.Offset >= from && rec.Offset < r.end {
				next = rec.Offset + 1
				if !rec.Time.Before(since) {
					v, err := protocol.ReadAll(rec.Value)
					if err == nil {
						err = fn(v, rec.Time, r.partition, rec.Offset)
					}
					if err != nil {
						closeBytes(rec.Key)
						closeBytes(rec.Value)
						return err
					}
				}
			}
			closeBytes(rec.Key)
			closeBytes(rec.Value)
		}
		if next == from {
			return nil // nothing left below r.end (compacted away, or aborted transactions)
		}
		from = next
	}
	return nil
}
