package stream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// writeTo writes msgs to the partitions their Partition fields name, in
// producer batches of at most batch messages.
func writeTo(t *testing.T, ctx context.Context, cfg Config, batch int, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Transport: cfg.transport(), RequiredAcks: kafka.RequireAll,
		BatchSize: batch, BatchTimeout: time.Millisecond,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition })}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

func rngFor(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 11)) }

func newAdmin(t *testing.T, cfg Config) *Admin {
	t.Helper()
	a, err := NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestReadWindowIdlePartition(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			// Today's code waited for new traffic on partition 0 until this
			// deadline ran out.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic := unique(t, "tx")
			if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-48 * time.Hour)
			var msgs []kafka.Message
			for i := range 20 { // partition 0: only messages older than the window
				msgs = append(msgs, kafka.Message{Topic: topic, Partition: 0, Time: old, Value: fmt.Appendf(nil, "old-%d", i)})
			}
			for i := range 5 { // partition 1: old, then recent
				msgs = append(msgs, kafka.Message{Topic: topic, Partition: 1, Time: old, Value: fmt.Appendf(nil, "old-1-%d", i)})
			}
			var want []string
			for i := range 30 {
				msgs = append(msgs, kafka.Message{Topic: topic, Partition: 1, Value: fmt.Appendf(nil, "new-%d", i)})
				want = append(want, fmt.Sprintf("new-%d", i))
			}
			// partition 2: empty
			writeTo(t, ctx, c, 10, msgs...)

			got, err := ReadWindow(ctx, c, topic, time.Now().Add(-24*time.Hour), 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			var vals []string
			for _, v := range got {
				vals = append(vals, string(v))
			}
			if !slices.Equal(vals, want) {
				t.Fatalf("window holds %d messages %v, want the 30 recent ones of partition 1", len(vals), vals)
			}
			// A window that starts after every message is empty, not a wait.
			got, err = ReadWindow(ctx, c, topic, time.Now().Add(time.Hour), 0, 1)
			if err != nil || len(got) != 0 {
				t.Fatalf("window after the last message: %d messages, %v", len(got), err)
			}
		})
	}
}

func TestReadWindowSamples(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			topic := unique(t, "tx")
			if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: 2}); err != nil {
				t.Fatal(err)
			}
			// 6,000 messages on partition 0 and 3,000 on partition 1, about
			// 200 bytes each, in producer batches of 50.
			sizes := []int{6000, 3000}
			pad := strings.Repeat("x", 190)
			var msgs []kafka.Message
			for p, n := range sizes {
				for i := range n {
					msgs = append(msgs, kafka.Message{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d %d %s", p, i, pad)})
				}
			}
			writeTo(t, ctx, c, 50, msgs...)

			const maxRows = 900
			a := newAdmin(t, c)
			rows, st, err := a.readWindow(ctx, topic, time.Now().Add(-time.Hour), maxRows, 7)
			if err != nil {
				t.Fatal(err)
			}
			total := sizes[0] + sizes[1]
			t.Logf("window %d, maxRows %d: %d rows, %d records fetched in %d fetches", total, maxRows, len(rows), st.fetched, st.fetches)
			if len(rows) != maxRows {
				t.Fatalf("%d rows, want %d", len(rows), maxRows)
			}
			// The cost is bounded by maxRows, not by the window.
			if st.fetched > 3*maxRows {
				t.Fatalf("fetched %d records of a %d-message window for %d rows", st.fetched, total, maxRows)
			}
			// Each partition contributes in proportion (600 and 300), one run
			// of windowRun consecutive messages in each equal stretch.
			seen := map[string]bool{}
			perStretch := map[[2]int]int{}
			for _, r := range rows {
				var p, i int
				if _, err := fmt.Sscan(string(r), &p, &i); err != nil {
					t.Fatalf("row %q: %v", r, err)
				}
				if seen[fmt.Sprint(p, i)] {
					t.Fatalf("message %d of partition %d read twice", i, p)
				}
				seen[fmt.Sprint(p, i)] = true
				share := maxRows * sizes[p] / total
				k := (share + windowRun - 1) / windowRun
				perStretch[[2]int{p, i * k / sizes[p]}]++
			}
			for p, n := range sizes {
				share := maxRows * n / total
				for s := range (share + windowRun - 1) / windowRun {
					if got := perStretch[[2]int{p, s}]; got != windowRun {
						t.Errorf("partition %d stretch %d: %d rows, want %d (all: %v)", p, s, got, windowRun, perStretch)
					}
				}
			}
			// The same seed gives the same sample; another seed another.
			again, _, err := a.readWindow(ctx, topic, time.Now().Add(-time.Hour), maxRows, 7)
			if err != nil || !slices.EqualFunc(rows, again, func(x, y []byte) bool { return string(x) == string(y) }) {
				t.Fatalf("same seed, different sample (%v)", err)
			}
			other, _, err := a.readWindow(ctx, topic, time.Now().Add(-time.Hour), maxRows, 8)
			if err != nil || slices.EqualFunc(rows, other, func(x, y []byte) bool { return string(x) == string(y) }) {
				t.Fatalf("another seed gave the same sample (%v)", err)
			}
		})
	}
}

func TestRunsCoverTheirShare(t *testing.T) {
	// Shares add up to n and stay within their spans, whatever the split;
	// runs never overlap and stay inside their span.
	spans := []span{{0, 10, 11}, {1, 0, 7}, {2, 5, 1005}, {3, 0, 250}}
	var total int64
	for _, s := range spans {
		total += s.end - s.start
	}
	for n := int64(1); n < total; n += 37 {
		q := shares(spans, total, n)
		var sum int64
		for i, s := range spans {
			if q[i] > s.end-s.start {
				t.Fatalf("n=%d: share %d of a span of %d", n, q[i], s.end-s.start)
			}
			sum += q[i]
			rs := runs(s, q[i], rngFor(uint64(n)))
			var got int64
			for j, r := range rs {
				if r.start < s.start || r.end > s.end || r.end <= r.start || (j > 0 && r.start < rs[j-1].end) {
					t.Fatalf("n=%d: runs %v in span %v", n, rs, s)
				}
				got += r.end - r.start
			}
			if got != q[i] {
				t.Fatalf("n=%d: runs %v cover %d offsets, want %d", n, rs, got, q[i])
			}
		}
		if sum != n {
			t.Fatalf("n=%d: shares %v add up to %d", n, q, sum)
		}
	}
}

func TestReadWindowMissingTopic(t *testing.T) {
	// The embedded broker and CI's Kafka both create topics on metadata
	// requests that allow it: asking about a topic must not.
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic := unique(t, "transactions")
			var missing *MissingTopicsError
			if _, err := ReadWindow(ctx, c, topic, time.Now().Add(-time.Hour), 10, 1); !errors.As(err, &missing) || !slices.Equal(missing.Topics, []string{topic}) {
				t.Fatalf("window of a missing topic: %v", err)
			}
			if _, err := GroupLag(ctx, c, "scorers", topic); !errors.As(err, &missing) {
				t.Fatalf("lag on a missing topic: %v", err)
			}
			if _, err := newAdmin(t, c).Partitions(ctx, topic); !errors.As(err, &missing) {
				t.Fatalf("reading a window or a lag created the topic: %v", err)
			}
			// The generator or an operator creates it later with the
			// partitions asked for, not the broker's default.
			if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: 6}); err != nil {
				t.Fatal(err)
			}
			if ids, err := newAdmin(t, c).Partitions(ctx, topic); err != nil || len(ids) != 6 {
				t.Fatalf("partitions %v, %v; want 6", ids, err)
			}
		})
	}
}

// scanTopic makes a topic of the given partitions holding n messages
// "a-0".."a-(n-1)", alternately on partitions 0 and 1, and an admin.
func scanTopic(t *testing.T, ctx context.Context, c Config, partitions, n int) (string, *Admin) {
	t.Helper()
	topic := unique(t, "tx")
	if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	writeRound(t, ctx, c, topic, "a", n, 2)
	return topic, newAdmin(t, c)
}

// writeRound writes n messages "prefix-0".."prefix-(n-1)" to topic, the
// i-th on partition i % spread.
func writeRound(t *testing.T, ctx context.Context, c Config, topic, prefix string, n, spread int) {
	t.Helper()
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, kafka.Message{Topic: topic, Partition: i % spread, Value: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	writeTo(t, ctx, c, 10, msgs...)
}

// TestScanAfterReadsWhatArrived: ScanAfter, from ScanWindow's ends, reads
// exactly the messages written since (on every partition, one the ends do
// not name from its start), reads nothing when more than maxRows wait or
// when messages since the ends are gone, and returns ends that a second
// call continues from.
func TestScanAfterReadsWhatArrived(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic, a := scanTopic(t, ctx, c, 3, 30)
			var first []string
			_, ends, err := a.ScanWindow(ctx, topic, time.Now().Add(-time.Hour), 0, func(v []byte, _ time.Time, _ int, _ int64) error {
				first = append(first, string(v))
				return nil
			})
			if err != nil || len(first) != 30 {
				t.Fatalf("window: %d messages, %v", len(first), err)
			}
			if ends[0] != 15 || ends[1] != 15 || ends[2] != 0 {
				t.Fatalf("ends %v, want 15, 15 and 0", ends)
			}
			delete(ends, 2) // as if partition 2 were added since
			writeRound(t, ctx, c, topic, "b", 12, 3)

			var got []string
			type at struct {
				partition int
				offset    int64
			}
			where := map[string]at{}
			scan := func(v []byte, _ time.Time, p int, off int64) error {
				got = append(got, string(v))
				where[string(v)] = at{p, off}
				return nil
			}
			waiting, same, err := a.ScanAfter(ctx, topic, ends, 11, scan)
			if err != nil || waiting != 12 || len(got) != 0 || !maps.Equal(same, ends) {
				t.Fatalf("12 waiting, maxRows 11: waiting %d, read %v, ends %v (given %v), %v", waiting, got, same, ends, err)
			}
			waiting, next, err := a.ScanAfter(ctx, topic, ends, 12, scan)
			if err != nil || waiting != 12 {
				t.Fatalf("waiting %d, %v", waiting, err)
			}
			slices.Sort(got)
			want := make([]string, 12)
			for i := range want {
				want[i] = fmt.Sprint("b-", i)
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
			if p := where["b-1"]; p.partition != 1 || p.offset != 15 {
				t.Fatalf("b-1 read at %+v, want partition 1 offset 15", p)
			}
			if want := map[int]int64{0: 19, 1: 19, 2: 4}; !maps.Equal(next, want) {
				t.Fatalf("ends %v, want %v", next, want)
			}
			got = got[:0]
			if waiting, _, err := a.ScanAfter(ctx, topic, next, 0, scan); err != nil || waiting != 0 || len(got) != 0 {
				t.Fatalf("nothing new: waiting %d, read %v, %v", waiting, got, err)
			}
			// An end below a partition's first offset (as when retention
			// deleted messages since): a gap, nothing read.
			gap := map[int]int64{0: -1, 1: 19, 2: 4}
			var ge *ScanGapError
			if _, ends, err := a.ScanAfter(ctx, topic, gap, 0, scan); !errors.As(err, &ge) || ge.Partition != 0 || len(got) != 0 || !maps.Equal(ends, gap) {
				t.Fatalf("a gap on partition 0: %v, read %v, ends %v", err, got, ends)
			}
		})
	}
}

// deleteRecords deletes partition's messages below offset, as retention
// does, with franz-go's client (kafka-go has no DeleteRecords).
func deleteRecords(t *testing.T, c Config, topic string, partition int32, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = partition, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range res.Topics {
		for _, p := range tp.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("delete records of %s/%d below %d: %v", topic, p.Partition, offset, err)
			}
		}
	}
}

// TestScanAfterRetentionGap: messages deleted between an earlier scan's
// end and now, or while ScanAfter reads, are a *ScanGapError, not read
// past: a caller marking what it read as contiguous would be wrong.
func TestScanAfterRetentionGap(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic, a := scanTopic(t, ctx, c, 2, 20)
			nop := func([]byte, time.Time, int, int64) error { return nil }
			_, ends, err := a.ScanWindow(ctx, topic, time.Now().Add(-time.Hour), 0, nop)
			if err != nil || ends[0] != 10 || ends[1] != 10 {
				t.Fatalf("window ends %v, %v", ends, err)
			}
			writeRound(t, ctx, c, topic, "b", 20, 2)

			// Partition 1 loses offsets 10 to 14, which the earlier scan had
			// not read.
			deleteRecords(t, c, topic, 1, 15)
			var ge *ScanGapError
			read := 0
			count := func([]byte, time.Time, int, int64) error { read++; return nil }
			if _, got, err := a.ScanAfter(ctx, topic, ends, 0, count); !errors.As(err, &ge) || ge.Partition != 1 || ge.From != 10 || ge.First != 15 || read != 0 || !maps.Equal(got, ends) {
				t.Fatalf("after a deletion: %v, %d read, ends %v", err, read, got)
			}

			// From ends past the deletion, partition 1 loses the rest of its
			// messages while partition 0 is read.
			from := map[int]int64{0: 10, 1: 15}
			read = 0
			_, got, err := a.ScanAfter(ctx, topic, from, 0, func(_ []byte, _ time.Time, p int, _ int64) error {
				if p == 0 && read == 0 {
					deleteRecords(t, c, topic, 1, 20)
				}
				read++
				return nil
			})
			if !errors.As(err, &ge) || ge.Partition != 1 || ge.From != 15 || read != 10 || !maps.Equal(got, from) {
				t.Fatalf("a deletion while reading: %v, %d read, ends %v", err, read, got)
			}
		})
	}
}
