package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --help is a request, not an error: exit 0 with the usage and the flags.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var out, errOut bytes.Buffer
		if code := cli(context.Background(), []string{arg}, &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d\n%s", arg, code, errOut.String())
		}
		if s := errOut.String(); !strings.Contains(s, "usage: demo") || !strings.Contains(s, "-offline") || strings.Contains(s, "help requested") {
			t.Fatalf("%s: usage\n%s", arg, s)
		}
	}
	var errOut bytes.Buffer
	if code := cli(context.Background(), []string{"--no-such-flag"}, &bytes.Buffer{}, &errOut); code != 2 || !strings.Contains(errOut.String(), "no-such-flag") {
		t.Fatalf("unknown flag: exit %d\n%s", code, errOut.String())
	}
}
