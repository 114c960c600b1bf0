package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is written by the demo's goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLiveDemo runs the local pipeline briefly: a model is trained from the
// generated stream, published, picked up by the scorers, and the summary
// reports decisions with precision and recall; it then stops cleanly.
func TestLiveDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline for 40s")
	}
	var out syncBuffer
	err := run(context.Background(), []string{"--kafka-port", "0", "--rate", "500", "--every", "4s", "--min-rows", "1500",
		"--summary", "2s", "--duration", "40s"}, &out, &out)
	if err != nil {
		t.Fatal(err, out.String())
	}
	text := out.String()
	line := regexp.MustCompile(`model v(\d+) \| +(\d+) tx/s \| alerts ([\d.]+)% \| precision ([\d.]+) recall ([\d.]+) \(running: ([\d.]+) / ([\d.]+)\)`)
	ms := line.FindAllStringSubmatch(text, -1)
	if len(ms) < 3 || !strings.Contains(text, "trainer: version 1 promoted") || !strings.HasSuffix(strings.TrimSpace(text), "stopped") {
		t.Fatalf("demo output:\n%s", text)
	}
	last := ms[len(ms)-1]
	prec, _ := strconv.ParseFloat(last[6], 64)
	rec, _ := strconv.ParseFloat(last[7], 64)
	if prec < 0.2 || rec < 0.2 {
		t.Fatalf("running precision %.2f recall %.2f:\n%s", prec, rec, text)
	}
}
