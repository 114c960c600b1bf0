package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --help shows each mode with its own flags and exits 0; a mode's -h shows
// only that mode's flags.
func TestHelpShowsEachModesFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := cli(context.Background(), []string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	s := out.String()
	drain, latency := strings.Index(s, "usage: loadtest drain"), strings.Index(s, "usage: loadtest latency")
	if drain < 0 || latency < drain || !strings.Contains(s[drain:latency], "-messages") || !strings.Contains(s[latency:], "-rate") ||
		!strings.Contains(s[latency:], "-duration") || !strings.Contains(s[latency:], "-brokers") {
		t.Fatalf("usage:\n%s", s)
	}
	errOut.Reset()
	if code := cli(context.Background(), []string{"drain", "-h"}, &out, &errOut); code != 0 {
		t.Fatalf("drain -h: exit %d", code)
	}
	if s := errOut.String(); !strings.Contains(s, "-messages") || strings.Contains(s, "-rate") {
		t.Fatalf("drain -h:\n%s", s)
	}
	errOut.Reset()
	if code := cli(context.Background(), []string{"soak"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "drain|latency") {
		t.Fatalf("unknown mode: exit %d\n%s", code, errOut.String())
	}
	errOut.Reset()
	if code := cli(context.Background(), []string{"drain", "--rate", "5"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "rate") {
		t.Fatalf("a latency flag given to drain: exit %d\n%s", code, errOut.String())
	}
}

// drain --entities runs the scorers with the model's entity score on
// both fields, their states in an in-process Redis, and drains every
// message.
func TestDrainWithEntities(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	var out, errOut bytes.Buffer
	if code := cli(context.Background(), []string{"drain", "--messages", "3000", "--entities", "card_id,merchant_id"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	s := out.String()
	if !strings.Contains(s, "entity score on card_id, merchant_id, states in Redis") || !strings.Contains(s, "drained ") {
		t.Fatalf("output:\n%s", s)
	}
}
