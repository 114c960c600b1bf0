package stream

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestRejoinDuringClose: Watch may decide to rejoin while the worker is
// closing the consumer. Close must not race the rejoin (the race detector
// flags a WaitGroup Add concurrent with its Wait), and a rejoin after
// Close must not leave a new reader holding the group.
func TestRejoinDuringClose(t *testing.T) {
	e, err := StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := e.Config()
	a, err := NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	topic := unique(t, "tx")
	if err := a.EnsureTopics(ctx, Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c, err := NewConsumer(cfg, topic, unique(t, "g"), ConsumerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			for j := 0; j < 3; j++ {
				c.Rejoin()
			}
		})
		close(start)
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		wg.Wait()
		if err := c.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		c.Rejoin() // after Close: nothing to replace
		if n := c.Rejoins(); n > 3 {
			t.Fatalf("rejoined %d times, %d after Close", n, n-3)
		}
	}
}
