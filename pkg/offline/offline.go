// Package offline implements the batch commands fraud teams use for
// backtests: infer a schema, fit a model on a file, score, impute and
// evaluate files. CSV and JSON Lines inputs work everywhere; bad records
// are reported with their line number and skipped (or, when scoring, given
// an empty result row so that output rows stay aligned with input rows).
package offline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

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
	head   []byte // the first bytes, for messages about the header
}

// sniffLen is how much of an input is checked for binary content.
const sniffLen = 16 << 10

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
	head, _ := br.Peek(sniffLen)
	if err := checkText(head); err != nil {
		closeFn()
		return nil, fmt.Errorf("%s is not CSV or JSON Lines: %w (a binary or compressed file?)", path, err)
	}
	return &input{r: br, format: features.FormatFor(path, head), close: closeFn, name: path, head: head}, nil
}

// checkText refuses input that is not text: a NUL byte in the first
// sniffLen bytes, or invalid UTF-8 or control characters in the first line
// (the CSV header or first JSON record). Otherwise a gzip file or an image
// is read as one garbled column and "scored". Later lines may hold other
// encodings (Latin-1 values in a UTF-8 header are common): they are data.
func checkText(head []byte) error {
	if i := bytes.IndexByte(head, 0); i >= 0 {
		return fmt.Errorf("a NUL byte at offset %d", i)
	}
	first := head
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		first = head[:i]
	} else {
		// The first line may go on past the sniffed bytes, cut mid-rune.
		for k := 1; k < utf8.UTFMax && k <= len(first); k++ {
			if tail := first[len(first)-k:]; utf8.RuneStart(tail[0]) {
				if !utf8.FullRune(tail) {
					first = first[:len(first)-k]
				}
				break
			}
		}
	}
	for i := 0; i < len(first); {
		r, n := utf8.DecodeRune(first[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("invalid UTF-8 at offset %d of the first line", i)
		}
		if r < 0x20 && r != '\t' && r != '\r' {
			return fmt.Errorf("control character 0x%02x at offset %d of the first line", r, i)
		}
		i += n
	}
	return nil
}

// columns lists the input's columns for messages: the CSV header, or the
// keys of the first JSON record.
func (in *input) columns() []string {
	line := in.head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimPrefix(bytes.TrimSpace(line), []byte("\ufeff"))
	if in.format == features.JSONL {
		var obj map[string]json.RawMessage
		if json.Unmarshal(line, &obj) != nil {
			return nil
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	}
	cr := csv.NewReader(bytes.NewReader(line))
	cr.LazyQuotes = true
	rec, err := cr.Read()
	if err != nil {
		return nil
	}
	for i := range rec {
		rec[i] = strings.TrimSpace(rec[i])
	}
	return rec
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
