// Package offline implements the batch commands fraud teams use for
// backtests: infer a schema, fit a model on a file, score, impute and
// evaluate files. CSV and JSON Lines inputs work everywhere; bad records
// are reported with their line number and skipped (or, when scoring, given
// an empty result row so that output rows stay aligned with input rows).
package offline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/features"
)

// maxReported bounds the bad-row lines printed; the count is always printed.
const maxReported = 20

// input is an opened record file.
type input struct {
	r      io.Reader
	format features.Format
	close  func() error
	name   string
}

// openInput opens path ("-" is standard input) and detects its format.
func openInput(path string, stdin io.Reader) (*input, error) {
	var rc io.Reader
	closeFn := func() error { return nil }
	if path == "" {
		return nil, errors.New("no input given (use --input FILE, or - for standard input)")
	}
	if path == "-" {
		rc = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		rc, closeFn = f, f.Close
	}
	br := bufio.NewReaderSize(rc, 1<<20)
	head, _ := br.Peek(512)
	return &input{r: br, format: features.FormatFor(path, head), close: closeFn, name: path}, nil
}

// badRows reports skipped records on w: the first few with their lines, then a count.
type badRows struct {
	w     io.Writer
	count int
}

func (b *badRows) add(e *features.RowError) {
	b.count++
	if b.count <= maxReported {
		fmt.Fprintf(b.w, "skipped bad record at %v\n", e)
	} else if b.count == maxReported+1 {
		fmt.Fprintln(b.w, "(further bad records are counted, not listed)")
	}
}

func (b *badRows) summary(what string, good int) {
	fmt.Fprintf(b.w, "%s: %d records, %d bad records skipped\n", what, good, b.count)
}

// readTable reads a whole input into memory, reporting bad records.
func readTable(ctx context.Context, path string, stdin io.Reader, log io.Writer) (*features.Table, int, error) {
	in, err := openInput(path, stdin)
	if err != nil {
		return nil, 0, err
	}
	defer in.close()
	t, bad, err := features.ReadTable(in.r, in.format)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	br := &badRows{w: log}
	for _, e := range bad {
		br.add(e)
	}
	br.summary("read "+path, len(t.Rows))
	if len(t.Rows) == 0 {
		return nil, 0, fmt.Errorf("%s: no usable records", path)
	}
	return t, len(bad), nil
}

// output is where a command writes its result. A file is written to a
// temporary file in the same directory and renamed over path only by
// commit, so an input that turns out missing, empty or unreadable leaves
// an existing file untouched instead of replacing it with a header.
type output struct {
	io.Writer
	path string
	f    *os.File // nil for standard output
	bw   *bufio.Writer
	done bool
}

// createOutput prepares path for writing ("-" or "" is standard output,
// written directly). Call commit on success; abort (deferred) otherwise.
func createOutput(path string, stdout io.Writer) (*output, error) {
	if path == "" || path == "-" {
		return &output{Writer: stdout}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	return &output{Writer: bw, path: path, f: f, bw: bw}, nil
}

// commit flushes the output and moves it into place.
func (o *output) commit() error {
	if o.f == nil || o.done {
		return nil
	}
	o.done = true
	err := o.bw.Flush()
	if err == nil {
		// CreateTemp makes the file private; an output file is not.
		mode := os.FileMode(0o644)
		if st, serr := os.Stat(o.path); serr == nil {
			mode = st.Mode().Perm()
		}
		err = o.f.Chmod(mode)
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.f.Name(), o.path)
	}
	if err != nil {
		os.Remove(o.f.Name())
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	return nil
}

// abort drops an uncommitted output; after commit it does nothing.
func (o *output) abort() {
	if o.f == nil || o.done {
		return
	}
	o.done = true
	o.f.Close()
	os.Remove(o.f.Name())
}

// SplitList splits a comma-separated flag value, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
