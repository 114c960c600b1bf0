package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRunUsageAndErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: trainer"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"fit"}, 1, "no input given"},
		{[]string{"fit", "--input", "/nonexistent.csv"}, 1, "no such file"},
		{[]string{"fit", "--bogus-flag"}, 2, ""},
		{[]string{"schema", "--input", "-"}, 1, "empty"},
		{[]string{"fit", "-h"}, 0, "-swap-noise"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run(ctx, tc.args, strings.NewReader(""), &out, &errb)
		if tc.code == 2 && tc.want == "" {
			if code == 0 {
				t.Errorf("%v: exit 0 for a bad flag", tc.args)
			}
			continue
		}
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d; output %q", tc.args, code, tc.code, out.String()+errb.String())
		}
	}
}

func TestSchemaThenFitWithEditedSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("id,amount,shop,label\n")
	for i := range 400 {
		csv.WriteString(strings.Join([]string{itoa(i), itoa(10 + i%37), []string{"a", "b", "c"}[i%3], "0"}, ",") + "\n")
	}
	in := filepath.Join(dir, "in.csv")
	os.WriteFile(in, []byte(csv.String()), 0o644)
	var schema, errb bytes.Buffer
	if code := run(ctx, []string{"schema", "--input", in}, nil, &schema, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	// The user turns the shop into an ignored field.
	edited := strings.Replace(schema.String(), `"name": "shop",
      "kind": "categorical"`, `"name": "shop",
      "kind": "ignored"`, 1)
	if edited == schema.String() {
		t.Fatalf("schema did not list shop as categorical:\n%s", schema.String())
	}
	sp := filepath.Join(dir, "schema.json")
	os.WriteFile(sp, []byte(edited), 0o644)
	out := filepath.Join(dir, "m.bin")
	if code := run(ctx, []string{"fit", "--input", in, "--out", out, "--schema", sp, "--epochs", "2", "--seed", "3"}, nil, &bytes.Buffer{}, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	if !strings.Contains(errb.String(), "shop") || !strings.Contains(errb.String(), "(not learned") {
		t.Fatalf("fit log does not show the edited schema:\n%s", errb.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
