package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsageAndErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.bin")
	os.WriteFile(garbage, []byte("this is not a model"), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: scorer"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"score", "--model", filepath.Join(dir, "missing.bin"), "--input", "x.csv"}, 1, "no such file"},
		{[]string{"score", "--model", garbage, "--input", "x.csv"}, 1, "not a model bundle"},
		{[]string{"eval", "--model", garbage, "--input", "x.csv"}, 1, "not a model bundle"},
		{[]string{"impute", "--model", garbage}, 1, "not a model bundle"},
		{[]string{"eval", "-h"}, 0, "-label"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run(ctx, tc.args, strings.NewReader(""), &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d; output %q", tc.args, code, tc.code, out.String()+errb.String())
		}
	}
}
