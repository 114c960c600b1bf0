package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

const (
	// windowRun is how many consecutive messages a sampled window reads at
	// each of its evenly spaced offsets: long enough that a fetch is not
	// mostly overhead, short enough that the sample spreads over the window.
	windowRun = 100
	// fetchMaxBytes bounds one fetch's response.
	fetchMaxBytes = 1 << 20
)

// ReadWindow returns the values of topic's messages timestamped at or after
// since; see (*Admin).ReadWindow. It opens and closes its own connections.
func ReadWindow(ctx context.Context, cfg Config, topic string, since time.Time, maxRows int, seed uint64) ([][]byte, error) {
	a, err := NewAdmin(cfg)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.ReadWindow(ctx, topic, since, maxRows, seed)
}

// ReadWindow returns the values of topic's messages timestamped at or after
// since, up to the partitions' ends as they were when it started. It never
// waits for new messages: per partition it asks the broker for the first
// offset at since and the end offset, skips a partition with nothing in
// between, and reads only that range. A topic that does not exist is a
// *MissingTopicsError (it is not created).
//
// When the window holds more than maxRows (> 0) messages, it reads about
// maxRows of them instead of the whole window: each partition contributes in
// proportion to its messages, read as runs of consecutive messages at evenly
// spaced offsets, each run placed within its stretch by a generator seeded
// with seed (the same seed and window give the same rows). The bytes read
// grow with maxRows, not with the window. Messages inside the ranges whose
// timestamps are older than since (producers' clocks disagree) are skipped,
// so a sample can hold slightly fewer than maxRows.
func (a *Admin) ReadWindow(ctx context.Context, topic string, since time.Time, maxRows int, seed uint64) ([][]byte, error) {
	rows, _, err := a.readWindow(ctx, topic, since, maxRows, seed)
	return rows, err
}

// span is the offsets [start, end) of one partition.
type span struct {
	partition  int
	start, end int64
}

// windowStats counts what a window read fetched.
type windowStats struct {
	fetches int
	fetched int   // records the broker returned, including those outside the ranges asked for
	bytes   int64 // their keys and values
}

func (a *Admin) readWindow(ctx context.Context, topic string, since time.Time, maxRows int, seed uint64) ([][]byte, windowStats, error) {
	var st windowStats
	spans, _, err := a.windowSpans(ctx, topic, since)
	if err != nil {
		return nil, st, err
	}
	var total int64
	for _, s := range spans {
		total += s.end - s.start
	}
	var reads []span
	if maxRows <= 0 || total <= int64(maxRows) {
		reads = spans
	} else {
		rng := rand.New(rand.NewPCG(seed, 11))
		for i, q := range shares(spans, total, int64(maxRows)) {
			reads = append(reads, runs(spans[i], q, rng)...)
		}
	}
	var rows [][]byte
	for _, r := range reads {
		if rows, err = a.readRange(ctx, topic, r, since, rows, &st); err != nil {
			return nil, st, err
		}
	}
	return rows, st, nil
}

// windowSpans returns, per partition with messages at or after since, the
// offsets from the first such message to the partition's end, and every
// partition's end.
func (a *Admin) windowSpans(ctx context.Context, topic string, since time.Time) ([]span, map[int]int64, error) {
	if since.UnixMilli() < 0 {
		since = time.UnixMilli(0) // negative timestamps are the protocol's special values
	}
	offsets, err := a.listOffsets(ctx, topic, "at "+since.Format(time.RFC3339), func(id int) kafka.OffsetRequest { return kafka.TimeOffsetOf(id, since) })
	if err != nil {
		return nil, nil, err
	}
	var spans []span
	ends := map[int]int64{}
	for _, p := range offsets {
		ends[p.Partition] = p.LastOffset
		start := int64(-1) // the broker answers -1 when no message is that recent
		for off := range p.Offsets {
			start = off
		}
		if start >= 0 && start < p.LastOffset {
			spans = append(spans, span{partition: p.Partition, start: start, end: p.LastOffset})
		}
	}
	slices.SortFunc(spans, func(x, y span) int { return x.partition - y.partition })
	return spans, ends, nil
}

// listOffsets asks the broker, for every partition of topic, the offset
// at (what is described in what, for errors) and the partition's first and
// last offsets.
func (a *Admin) listOffsets(ctx context.Context, topic, what string, at func(id int) kafka.OffsetRequest) ([]kafka.PartitionOffsets, error) {
	ids, err := a.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, id := range ids {
		req.Topics[topic] = append(req.Topics[topic], at(id), kafka.FirstOffsetOf(id), kafka.LastOffsetOf(id))
	}
	return retry(ctx, func() ([]kafka.PartitionOffsets, error) {
		res, err := a.cl.ListOffsets(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("stream: offsets of %s %s: %w", topic, what, err)
		}
		if got := len(res.Topics[topic]); got != len(ids) {
			return nil, fmt.Errorf("stream: offsets of %s: %d of %d partitions answered", topic, got, len(ids))
		}
		for _, p := range res.Topics[topic] {
			if p.Error != nil {
				return nil, fmt.Errorf("stream: offsets of %s/%d %s: %w", topic, p.Partition, what, p.Error)
			}
		}
		return res.Topics[topic], nil
	})
}

// shares splits n (< the spans' total) across spans in proportion to their
// lengths, largest remainders first, so that the shares add up to n.
func shares(spans []span, total, n int64) []int64 {
	q := make([]int64, len(spans))
	rem := make([]int64, len(spans))
	order := make([]int, len(spans))
	left := n
	for i, s := range spans {
		q[i], rem[i] = n*(s.end-s.start)/total, n*(s.end-s.start)%total
		left -= q[i]
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(rem[j], rem[i]) })
	for _, i := range order[:left] {
		q[i]++ // stays within the span: q[i] was below its length because n < total
	}
	return q
}

// runs places q offsets of s as ceil(q/windowRun) runs of consecutive
// offsets, one in each of as many equal stretches of s, at a random position
// within its stretch; runs never overlap.
func runs(s span, q int64, rng *rand.Rand) []span {
	k := (q + windowRun - 1) / windowRun
	n := s.end - s.start
	out := make([]span, 0, k)
	cursor := s.start
	for i := range k {
		l := (i+1)*q/k - i*q/k
		rest := q - i*q/k // this run and those after it
		lo, hi := s.start+i*n/k, s.start+(i+1)*n/k
		off := lo
		if slack := hi - lo - l; slack > 0 {
			off += rng.Int64N(slack + 1)
		}
		off = min(max(off, cursor), s.end-rest)
		out = append(out, span{partition: s.partition, start: off, end: off + l})
		cursor = off + l
	}
	return out
}

// readRange appends to rows the values of the messages of r timestamped at
// or after since.
func (a *Admin) readRange(ctx context.Context, topic string, r span, since time.Time, rows [][]byte, st *windowStats) ([][]byte, error) {
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
			return nil, err
		}
		if res.Error != nil {
			return rows, nil // offset out of range: retention deleted these messages since the offsets were listed
		}
		next := from
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("stream: read %s/%d after offset %d: %w", topic, r.partition, next, err)
			}
			st.fetched++
			st.bytes += int64(length(rec.Key) + length(rec.Value))
			// A response starts with the whole batch holding from and may
			// end past r.end.
			if rec.Offset >= from && rec.Offset < r.end {
				next = rec.Offset + 1
				if !rec.Time.Before(since) {
					v, err := protocol.ReadAll(rec.Value)
					if err != nil {
						return nil, fmt.Errorf("stream: read %s/%d at offset %d: %w", topic, r.partition, rec.Offset, err)
					}
					rows = append(rows, v)
				}
			}
			closeBytes(rec.Key)
			closeBytes(rec.Value)
		}
		if next == from {
			return rows, nil // nothing left below r.end (compacted away, or aborted transactions)
		}
		from = next
	}
	return rows, nil
}

// fetchBytes sizes a fetch for n more messages from the mean size seen so
// far (1 KiB until then), within [4 KiB, fetchMaxBytes].
func (st *windowStats) fetchBytes(n int64) int64 {
	mean := int64(1 << 10)
	if st.fetched > 0 {
		mean = max(st.bytes/int64(st.fetched), 1)
	}
	return min(max(n*mean*5/4, 4<<10), fetchMaxBytes)
}

func length(b protocol.Bytes) int {
	if b == nil {
		return 0
	}
	return b.Len()
}

func closeBytes(b protocol.Bytes) {
	if b != nil {
		b.Close()
	}
}
