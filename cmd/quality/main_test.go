package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --help is a request, not an error: exit 0 with the usage and the flags.
func TestHelpExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := cli(context.Background(), []string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	if s := errOut.String(); !strings.Contains(s, "usage: quality") || !strings.Contains(s, "-seeds") || strings.Contains(s, "help requested") {
		t.Fatalf("usage\n%s", s)
	}
	errOut.Reset()
	if code := cli(context.Background(), nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "no input given") {
		t.Fatalf("no input: exit %d\n%s", code, errOut.String())
	}
}
