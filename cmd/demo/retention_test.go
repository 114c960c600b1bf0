package main

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

// The embedded broker keeps everything in memory: the demo makes it drop
// transactions older than the training window (plus a minute) and outputs
// older than a minute, so memory stays bounded however long it runs.
func TestEmbeddedBrokerDropsOldRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sc := e.Config()
	if err := stream.EnsureTopics(ctx, sc, stream.Topic{Name: topicTx}, stream.Topic{Name: topicAlerts}, stream.Topic{Name: topicScores}, stream.Topic{Name: topicDead}); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { retentionCheck = d }(retentionCheck)
	retentionCheck = 100 * time.Millisecond
	window := 10 * time.Minute
	if err := boundRetention(ctx, sc, window); err != nil {
		t.Fatal(err)
	}
	prod, err := stream.NewProducer(sc, stream.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	now := time.Now()
	write := func(topic string, n int, at time.Time) {
		msgs := make([]kafka.Message, n)
		for i := range msgs {
			msgs[i] = kafka.Message{Topic: topic, Value: []byte(`{"x":1}`), Time: at}
		}
		if err := prod.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	write(topicTx, 50, now.Add(-window-2*time.Minute)) // beyond the window: dropped
	write(topicTx, 20, now.Add(-window+2*time.Minute)) // inside it: kept for the trainer
	write(topicAlerts, 30, now.Add(-2*outputRetention))
	write(topicAlerts, 5, now)

	cl := &kafka.Client{Addr: kafka.TCP(sc.Brokers...), Timeout: 5 * time.Second}
	first := func(topic string) (int64, int64) {
		res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}}})
		if err != nil {
			t.Fatal(err)
		}
		p := res.Topics[topic][0]
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		return p.FirstOffset, p.LastOffset
	}
	// The broker applies retention on its own tick; wait for it, bounded
	// by the test's context.
	for {
		tx, _ := first(topicTx)
		al, _ := first(topicAlerts)
		if tx == 50 && al == 30 {
			break
		}
		if tx > 50 || al > 30 {
			t.Fatalf("records within retention were dropped: transactions from offset %d, alerts from %d", tx, al)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("old records still held: transactions from offset %d (want 50), alerts from %d (want 30)", tx, al)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, last := first(topicTx); last != 70 {
		t.Fatalf("transactions end at offset %d, want 70", last)
	}
}
