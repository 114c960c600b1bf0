package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// brokers returns the Kafka deployments the contract runs against: always
// the embedded broker, and a real one when KAFKA_BROKERS is set (CI starts
// Apache Kafka).
func brokers(t *testing.T) map[string]func(t *testing.T) Config {
	out := map[string]func(t *testing.T) Config{
		"embedded": func(t *testing.T) Config {
			e, err := StartEmbedded(0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Close)
			return e.Config()
		},
	}
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		out["kafka"] = func(t *testing.T) Config { return Config{Brokers: strings.Split(b, ",")} }
	}
	return out
}

// unique names keep runs against a shared real broker apart.
func unique(t *testing.T, what string) string {
	return fmt.Sprintf("%s-%s-%d", what, strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), time.Now().UnixNano())
}

func TestContract(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("at-least-once", func(t *testing.T) { testAtLeastOnce(t, cfg(t)) })
			t.Run("uncommitted are redelivered", func(t *testing.T) { testRedelivery(t, cfg(t)) })
			t.Run("dead letters", func(t *testing.T) { testDeadLetter(t, cfg(t)) })
			t.Run("tail from a time", func(t *testing.T) { testTailFrom(t, cfg(t)) })
		})
	}
}

func produce(t *testing.T, ctx context.Context, cfg Config, topic string, n, keys int) {
	t.Helper()
	p, err := NewProducer(cfg, ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: topic, Key: []byte(fmt.Sprintf("card-%d", i%keys)), Value: []byte(fmt.Sprintf("%d", i))}
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// consume reads until want distinct values arrived, committing each batch.
func consume(t *testing.T, ctx context.Context, c *Consumer, want int) []kafka.Message {
	t.Helper()
	var all []kafka.Message
	seen := map[string]bool{}
	for len(seen) < want {
		batch, err := c.FetchBatch(ctx, nil, 100, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(seen), err)
		}
		for _, m := range batch {
			seen[string(m.Value)] = true
		}
		all = append(all, batch...)
		if err := c.Commit(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

func testAtLeastOnce(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic, group := unique(t, "tx"), unique(t, "scorers")
	if err := EnsureTopics(ctx, cfg, Topic{Name: topic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, cfg, Topic{Name: topic, Partitions: 3}); err != nil {
		t.Fatalf("creating an existing topic again: %v", err)
	}
	produce(t, ctx, cfg, topic, 600, 7)
	c, err := NewConsumer(cfg, topic, group, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := consume(t, ctx, c, 600)
	// Per key, values arrive in the order they were produced.
	last := map[string]int{}
	for _, m := range got {
		var v int
		fmt.Sscan(string(m.Value), &v)
		if p, ok := last[string(m.Key)]; ok && v <= p {
			t.Fatalf("key %s: %d after %d", m.Key, v, p)
		}
		last[string(m.Key)] = v
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	lag, err := GroupLag(ctx, cfg, group, topic)
	if err != nil || len(lag) != 3 || lag[0]+lag[1]+lag[2] != 0 {
		t.Fatalf("lag after committing everything: %v %v", lag, err)
	}
	if lag, err := GroupLag(ctx, cfg, "a-group-that-never-read", topic); err != nil || lag[0]+lag[1]+lag[2] != 600 {
		t.Fatalf("lag of a group that read nothing: %v %v", lag, err)
	}
	// Everything was committed: a new member of the group gets nothing.
	c2, _ := NewConsumer(cfg, topic, group, ConsumerOptions{})
	defer c2.Close()
	short, cancel2 := context.WithTimeout(ctx, 8*time.Second)
	defer cancel2()
	if b, err := c2.FetchBatch(short, nil, 10, 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("committed messages came back: %d messages, %v", len(b), err)
	}
}

func testRedelivery(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic, group := unique(t, "tx"), unique(t, "scorers")
	if err := EnsureTopics(ctx, cfg, Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, cfg, topic, 100, 1)
	c, _ := NewConsumer(cfg, topic, group, ConsumerOptions{})
	var got []kafka.Message
	for len(got) < 100 {
		b, err := c.FetchBatch(ctx, got, 100, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got = b
	}
	// A crash after writing outputs for 40 messages but committing only those.
	if err := c.Commit(ctx, got[39]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2, _ := NewConsumer(cfg, topic, group, ConsumerOptions{})
	defer c2.Close()
	b, err := c2.FetchBatch(ctx, nil, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b[0].Offset != 40 || string(b[0].Value) != "40" {
		t.Fatalf("restarted at offset %d (value %s), want 40", b[0].Offset, b[0].Value)
	}
}

func testDeadLetter(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dlq := unique(t, "dead")
	if err := EnsureTopics(ctx, cfg, Topic{Name: dlq}); err != nil {
		t.Fatal(err)
	}
	src := kafka.Message{Topic: "transactions", Partition: 2, Offset: 1234, Key: []byte("card-9"), Value: []byte(`{"amount": oops}`),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("abc")}}}
	p, _ := NewProducer(cfg, ProducerOptions{})
	defer p.Close()
	if err := p.Write(ctx, DeadLetter(dlq, src, errors.New("invalid JSON at byte 11"))); err != nil {
		t.Fatal(err)
	}
	c, _ := NewConsumer(cfg, dlq, unique(t, "ops"), ConsumerOptions{})
	defer c.Close()
	b, err := c.FetchBatch(ctx, nil, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := b[0]
	if string(m.Value) != string(src.Value) || string(m.Key) != "card-9" || Header(m, "trace") != "abc" ||
		Header(m, HeaderReason) != "invalid JSON at byte 11" || Header(m, HeaderTopic) != "transactions" ||
		Header(m, HeaderPartition) != "2" || Header(m, HeaderOffset) != "1234" {
		t.Fatalf("dead letter %q headers %v", m.Value, m.Headers)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := NewConsumer(Config{}, "t", "g", ConsumerOptions{}); err == nil {
		t.Error("consumer without brokers")
	}
	if _, err := NewProducer(Config{Brokers: []string{"no-port"}}, ProducerOptions{}); err == nil {
		t.Error("broker without a port")
	}
	if _, err := NewConsumer(Config{Brokers: []string{"127.0.0.1:1"}}, "", "g", ConsumerOptions{}); err == nil {
		t.Error("consumer without a topic")
	}
}

func TestReadWindow(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic := unique(t, "tx")
			if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			p, _ := NewProducer(c, ProducerOptions{})
			defer p.Close()
			old := time.Now().Add(-48 * time.Hour)
			var msgs []kafka.Message
			for i := range 90 {
				m := kafka.Message{Topic: topic, Key: []byte(fmt.Sprint(i % 9)), Value: []byte(fmt.Sprint(i))}
				if i < 30 {
					m.Time = old // outside a 24h window
				}
				msgs = append(msgs, m)
			}
			if err := p.Write(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			got, err := ReadWindow(ctx, c, topic, time.Now().Add(-24*time.Hour), 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, v := range got {
				seen[string(v)] = true
			}
			if len(got) != 60 || seen["0"] || !seen["30"] || !seen["89"] {
				t.Fatalf("window holds %d messages (0: %v, 30: %v)", len(got), seen["0"], seen["30"])
			}
			sample, err := ReadWindow(ctx, c, topic, old.Add(-time.Hour), 25, 1)
			if err != nil || len(sample) != 25 {
				t.Fatalf("capped window: %d, %v", len(sample), err)
			}
		})
	}
}

// BenchmarkWriteOne measures one acknowledged single-message write, the
// path an alert takes, for writer batch timeouts: kafka-go's default 1s
// against the 2ms chosen here.
func BenchmarkWriteOne(b *testing.B) {
	e, err := StartEmbedded(0)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if err := EnsureTopics(ctx, e.Config(), Topic{Name: "alerts", Partitions: 3}); err != nil {
		b.Fatal(err)
	}
	for _, bt := range []time.Duration{time.Second, 10 * time.Millisecond, 2 * time.Millisecond} {
		b.Run(bt.String(), func(b *testing.B) {
			p, _ := NewProducer(e.Config(), ProducerOptions{BatchTimeout: bt})
			defer p.Close()
			for b.Loop() {
				if err := p.Write(ctx, kafka.Message{Topic: "alerts", Value: []byte(`{"alert":true}`)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// testTailFrom checks where a tail begins. Where no record is at or after
// the time, it begins at the end as a concrete offset: kafka-go's own
// lookup answers "the end, whenever the reader first fetches", and a record
// written before that fetch was skipped (startOffset's -1 below).
func testTailFrom(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := unique(t, "tail")
	if err := EnsureTopics(ctx, cfg, Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if at, err := startOffset(ctx, cfg, topic, 0, time.Unix(0, 0)); err != nil || at != 0 {
		t.Fatalf("an empty partition's start: %d, %v; want 0", at, err)
	}
	produce(t, ctx, cfg, topic, 3, 3)
	later := time.Now().Add(time.Hour)
	for _, c := range []struct {
		since time.Time
		want  int64
	}{{time.Unix(0, 0), 0}, {later, 3}} {
		if at, err := startOffset(ctx, cfg, topic, 0, c.since); err != nil || at != c.want {
			t.Fatalf("start at %s: %d, %v; want %d", c.since, at, err, c.want)
		}
	}
	// A tail from a time after the old records and before the new one
	// reads only the new one, whether it begins before the write (no
	// record at or after the time: the end) or after it.
	got := tailInto(t, ctx, cfg, topic, timeAfterRecords())
	writeAndReadFirst(t, ctx, cfg, topic, got, 3)
}

// timeAfterRecords returns a time after every record written so far and
// before every record written from now on (record times are milliseconds).
func timeAfterRecords() time.Time {
	time.Sleep(5 * time.Millisecond)
	at := time.Now()
	time.Sleep(5 * time.Millisecond)
	return at
}

// tailInto tails topic from since into the returned channel until the test
// ends, and then checks that Tail returned nil.
func tailInto(t *testing.T, ctx context.Context, cfg Config, topic string, since time.Time) <-chan kafka.Message {
	got := make(chan kafka.Message, 16)
	tctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Tail(tctx, cfg, topic, since, func(ms []kafka.Message) {
			for _, m := range ms {
				got <- m
			}
		})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return got
}

// writeAndReadFirst writes a record "new" to topic and fails unless it is
// the first that got receives, at offset want.
func writeAndReadFirst(t *testing.T, ctx context.Context, cfg Config, topic string, got <-chan kafka.Message, want int64) {
	t.Helper()
	p, err := NewProducer(cfg, ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Write(ctx, kafka.Message{Topic: topic, Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Value) != "new" || m.Offset != want {
			t.Fatalf("the tail's first record: offset %d %q; want offset %d \"new\"", m.Offset, m.Value, want)
		}
	case <-ctx.Done():
		t.Fatal("the record written after the time was not read")
	}
}
