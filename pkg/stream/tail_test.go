package stream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTailRetriesItsStartLookup: when looking up where to begin fails (the
// broker drops the connection on the first ListOffsets), the retry looks
// the time up again; it does not begin at offset 0 and replay records from
// before the time.
func TestTailRetriesItsStartLookup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := e.Config()
	topic := "tail-retry"
	if err := EnsureTopics(ctx, cfg, Topic{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, cfg, topic, 3, 3)
	since := timeAfterRecords()

	var failed atomic.Int32
	e.c.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		failed.Add(1)
		return nil, errors.New("injected: connection dropped"), true // handled once, then removed
	})
	got := tailInto(t, ctx, cfg, topic, since)
	// The first lookup failed; wait for the retry to be under way.
	for failed.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the start lookup never reached the broker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // past the 100 ms backoff
	writeAndReadFirst(t, ctx, cfg, topic, got, 3)
}
