package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

// TestGeneratorRidesOutABrokerOutage: the broker goes away and comes back;
// the generator keeps producing instead of exiting with the first error.
func TestGeneratorRidesOutABrokerOutage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b1, err := stream.StartEmbedded(port)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--brokers", addr, "--topic", "tx", "--rate", "500"}, &out, &errb) }()
	time.Sleep(500 * time.Millisecond)
	b1.Close()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("the generator stopped during the outage: %v\n%s", err, errb.String())
	default:
	}
	b2, err := stream.StartEmbedded(port)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	a, _ := stream.NewAdmin(b2.Config())
	defer a.Close()
	// A real broker keeps its topics across a restart; this one starts empty.
	if err := a.EnsureTopics(ctx, stream.Topic{Name: "tx", Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		lag, err := a.GroupLag(ctx, "nobody", "tx") // everything in the topic counts
		var n int64
		for _, v := range lag {
			n += v
		}
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing produced to the restarted broker: %v\n%s", err, errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
