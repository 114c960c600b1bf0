package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
// messages in the window, read or not, and each partition's end offset
// where the scan stopped (ScanAfter goes on from there). An error from fn
// ends the scan.
func (a *Admin) ScanWindow(ctx context.Context, topic string, since time.Time, maxRows int, fn func(value []byte, at time.Time, partition int, offset int64) error) (int64, map[int]int64, error) {
	spans, ends, err := a.windowSpans(ctx, topic, since)
	if err != nil {
		return 0, nil, err
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
		if err := a.scanRange(ctx, topic, s, since, false, &st, fn); err != nil {
			return total, ends, err
		}
	}
	return total, ends, nil
}

// ScanAfter calls fn, as ScanWindow does, with every message of topic from
// the offsets from (a partition's next offset, as ScanWindow's ends give
// them) up to the partitions' ends as they are when it starts: what
// arrived since an earlier scan, contiguous with it. A partition from does
// not name (added since) is read from its first offset. It returns how
// many messages were waiting and the new ends; it reads none, and returns
// from as the ends, when more than maxRows (> 0) wait (a caller that needs
// the messages contiguous with its earlier scan cannot use a part), and
// when retention has deleted some of them since (*ScanGapError; also when
// retention deletes some while it reads, after reading those before). On
// an error from reading or from fn, what was read before it is contiguous
// on each partition, and the ends returned are from.
func (a *Admin) ScanAfter(ctx context.Context, topic string, from map[int]int64, maxRows int, fn func(value []byte, at time.Time, partition int, offset int64) error) (int64, map[int]int64, error) {
	offsets, err := a.listOffsets(ctx, topic, "now", kafka.LastOffsetOf)
	if err != nil {
		return 0, from, err
	}
	var spans []span
	var total int64
	ends := map[int]int64{}
	for _, p := range offsets {
		ends[p.Partition] = p.LastOffset
		start, ok := from[p.Partition]
		if !ok {
			start = p.FirstOffset
		} else if start < p.FirstOffset {
			return 0, from, &ScanGapError{Topic: topic, Partition: p.Partition, From: start, First: p.FirstOffset}
		}
		if start < p.LastOffset {
			spans = append(spans, span{partition: p.Partition, start: start, end: p.LastOffset})
			total += p.LastOffset - start
		}
	}
	if maxRows > 0 && total > int64(maxRows) {
		return total, from, nil
	}
	slices.SortFunc(spans, func(x, y span) int { return x.partition - y.partition })
	var st windowStats
	for _, s := range spans {
		if err := a.scanRange(ctx, topic, s, time.Time{}, true, &st, fn); err != nil {
			return total, from, err
		}
	}
	return total, ends, nil
}

// ScanGapError is ScanAfter's answer when retention has deleted messages
// between an earlier scan's end and now.
type ScanGapError struct {
	Topic     string
	Partition int
	From      int64 // the first offset missing
	First     int64 // the partition's first offset now (-1: not known)
}

func (e *ScanGapError) Error() string {
	if e.First < 0 {
		return fmt.Sprintf("stream: %s/%d: messages from offset %d were deleted (retention) while they were read", e.Topic, e.Partition, e.From)
	}
	return fmt.Sprintf("stream: %s/%d: offsets %d to %d were deleted (retention) since the earlier scan", e.Topic, e.Partition, e.From, e.First-1)
}

// scanRange is readRange calling fn instead of keeping the values.
// With gapIsError, messages retention deletes while it reads are a
// *ScanGapError; without, the partition's read ends there.
func (a *Admin) scanRange(ctx context.Context, topic string, r span, since time.Time, gapIsError bool, st *windowStats, fn func([]byte, time.Time, int, int64) error) error {
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
		if res.Error != nil { // offset out of range: retention deleted these messages since the offsets were listed
			if gapIsError {
				return &ScanGapError{Topic: topic, Partition: r.partition, From: from, First: -1}
			}
			return nil
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
