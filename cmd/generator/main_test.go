package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// TestOutWritesALabelledFile: --out writes --count transactions as JSON
// Lines over --days days of event time from --start, each labelled, with
// the pattern of every fraud and none on the others; no Kafka involved.
func TestOutWritesALabelledFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tx.jsonl")
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"--out", path, "--count", "3000", "--days", "3", "--start", "2026-02-01", "--fraud-rate", "0.05",
		"--brokers", "127.0.0.1:1"}, &out, &errs); err != nil {
		t.Fatal(err, errs.String())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, frauds, days := 0, 0, map[string]bool{}
	for sc.Scan() {
		var r struct {
			ID      string    `json:"tx_id"`
			Time    time.Time `json:"event_time"`
			Label   int       `json:"label"`
			Pattern string    `json:"pattern"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		days[r.Time.Format("2006-01-02")] = true
		if (r.Label == 1) != (r.Pattern != "") {
			t.Fatalf("%s: label %d with pattern %q", r.ID, r.Label, r.Pattern)
		}
		frauds += r.Label
	}
	if n != 3000 || len(days) != 3 || !days["2026-02-01"] || !days["2026-02-03"] || frauds < 100 || frauds > 200 {
		t.Fatalf("%d rows over days %v, %d frauds", n, days, frauds)
	}
	if !strings.Contains(out.String(), "wrote 3000 transactions") {
		t.Errorf("output %q", out.String())
	}
	if err := run(context.Background(), []string{"--out", path}, &out, &errs); err == nil || !strings.Contains(err.Error(), "--count") {
		t.Errorf("--out without --count: %v", err)
	}
}
