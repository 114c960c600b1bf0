package stream

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestWatchRejoinsAStuckConsumer: the broker answers every fetch with no
// records (as kafka-go's readers behave when they stall after a broker
// restart: the group holds the partitions, nothing is delivered) while
// records wait. Watch notices, rejoins, and the new reader delivers them.
// With nothing waiting, a fetch that waits is not stuck.
func TestWatchRejoinsAStuckConsumer(t *testing.T) {
	e, err := StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var frozen atomic.Bool
	e.c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.c.KeepControl()
		if !frozen.Load() {
			return nil, nil, false
		}
		return req.(*kmsg.FetchRequest).ResponseKind(), nil, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := e.Config()
	cfg.ClientID = "watched"
	a, err := NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	// Nothing waiting: a consumer waiting on an empty topic is left alone.
	idle := unique(t, "idle")
	if err := a.EnsureTopics(ctx, Topic{Name: idle, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	c0, err := NewConsumer(cfg, idle, unique(t, "g"), ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c0.Close()
	wctx, stop := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { c0.Watch(wctx, a, 50*time.Millisecond, 200*time.Millisecond, slog.New(slog.DiscardHandler)) })
	short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
	c0.FetchBatch(short, nil, 10, time.Millisecond)
	cancelShort()
	stop()
	watching.Wait()
	if n := c0.Rejoins(); n != 0 {
		t.Fatalf("rejoined %d times with nothing waiting", n)
	}

	// Records waiting, nothing delivered: rejoin.
	topic := unique(t, "tx")
	if err := a.EnsureTopics(ctx, Topic{Name: topic, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	frozen.Store(true)
	produce(t, ctx, cfg, topic, 20, 5)
	c, err := NewConsumer(cfg, topic, unique(t, "g"), ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wctx, stop = context.WithCancel(ctx)
	watching.Go(func() { c.Watch(wctx, a, 50*time.Millisecond, 300*time.Millisecond, slog.New(slog.DiscardHandler)) })
	defer watching.Wait() // before Close: every goroutine stopped first
	defer stop()
	got := 0
	var firstErr error
	for got < 20 {
		b, err := c.FetchBatch(ctx, nil, 20, 20*time.Millisecond)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if !errors.Is(err, ErrRejoined) {
				t.Fatalf("fetch: %v", err)
			}
			frozen.Store(false) // the broker answers again; the new reader reads
			continue
		}
		got += len(b)
	}
	if c.Rejoins() == 0 || !errors.Is(firstErr, ErrRejoined) {
		t.Fatalf("rejoins %d, first error %v", c.Rejoins(), firstErr)
	}
}
