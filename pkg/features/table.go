package features

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// Format is a record file format.
type Format string

const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// FormatFor picks the format from a file name, falling back to sniffing the
// first non-blank byte of head ('{' means JSON Lines).
func FormatFor(name string, head []byte) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".ndjson", ".json":
		return JSONL
	case ".csv":
		return CSV
	}
	if t := bytes.TrimLeft(head, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '{' {
		return JSONL
	}
	return CSV
}

// RowError is a record that could not be read; the reader skips it and
// carries on. Line is 1-based.
type RowError struct {
	Line int
	Err  error
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *RowError) Unwrap() error { return e.Err }

// RowReader reads records one at a time, with their values in Names order.
type RowReader interface {
	Names() []string
	// Next returns the next record and its 1-based line. A *RowError means
	// that record was bad and skipped; call Next again. io.EOF ends the input.
	// The row is valid until the next call.
	Next() (row []string, line int, err error)
}

// NewRowReader reads CSV (with a header line) or JSON Lines. For JSON
// Lines, names lists the keys to extract; for CSV, names may be nil (the
// header is used) or list the columns wanted, in which case missing columns
// read as empty.
func NewRowReader(r io.Reader, f Format, names []string) (RowReader, error) {
	switch f {
	case JSONL:
		if len(names) == 0 {
			return nil, errors.New("features: JSON Lines input needs the field names")
		}
		br := bufio.NewReaderSize(r, 1<<20)
		return &jsonlReader{r: br, names: names, dec: NewRowDecoder(names), row: make([]string, len(names))}, nil
	default:
		lr := &csvLines{r: bufio.NewReaderSize(r, 1<<16)}
		header, _, err := lr.record(0)
		if err != nil {
			if err == io.EOF {
				return nil, errors.New("features: CSV input is empty (no header line)")
			}
			var re *RowError
			if errors.As(err, &re) {
				return nil, fmt.Errorf("features: CSV header, %w", re)
			}
			return nil, fmt.Errorf("features: CSV header: %w", err)
		}
		header = slices.Clone(header)
		if len(header) > 0 {
			header[0] = strings.TrimPrefix(header[0], "\ufeff")
		}
		for i := range header {
			header[i] = strings.TrimSpace(header[i])
		}
		c := &csvReader{r: lr, header: header}
		if names == nil {
			c.names = header
		} else {
			c.names = names
			c.pick = make([]int, len(names))
			for i, n := range names {
				c.pick[i] = slices.Index(header, n)
			}
			c.row = make([]string, len(names))
		}
		return c, nil
	}
}

type csvReader struct {
	r      *csvLines
	header []string
	names  []string
	pick   []int
	row    []string
}

func (c *csvReader) Names() []string { return c.names }

// Absent lists the wanted columns that the CSV header lacks.
func (c *csvReader) Absent() []string {
	var out []string
	for i, j := range c.pick {
		if j < 0 {
			out = append(out, c.names[i])
		}
	}
	return out
}

func (c *csvReader) Next() ([]string, int, error) {
	rec, line, err := c.r.record(len(c.header))
	if err != nil {
		return nil, line, err
	}
	if len(rec) != len(c.header) {
		return nil, line, &RowError{Line: line, Err: fmt.Errorf("%d fields, header has %d", len(rec), len(c.header))}
	}
	if c.pick == nil {
		return rec, line, nil
	}
	for i, j := range c.pick {
		if j >= 0 {
			c.row[i] = rec[j]
		} else {
			c.row[i] = ""
		}
	}
	return c.row, line, nil
}

type jsonlReader struct {
	r       *bufio.Reader
	names   []string
	dec     *RowDecoder
	row     []string
	line    int
	buf     []byte
	present []int // records in which each name appeared
}

// Present returns, per name, how many records so far carried that key.
func (j *jsonlReader) Present() []int { return j.present }

func (j *jsonlReader) Names() []string { return j.names }

func (j *jsonlReader) Next() ([]string, int, error) {
	for {
		b, err := readLine(j.r, &j.buf)
		if err != nil {
			return nil, j.line, err
		}
		j.line++
		if j.line == 1 {
			b = bytes.TrimPrefix(b, []byte("\ufeff")) // a byte-order mark
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		if derr := j.dec.Decode(b, j.row); derr != nil {
			return nil, j.line, &RowError{Line: j.line, Err: derr}
		}
		if j.present == nil {
			j.present = make([]int, len(j.names))
		}
		for i := range j.names {
			if j.dec.Present(i) {
				j.present[i]++
			}
		}
		return j.row, j.line, nil
	}
}

// readLine returns the next line without its newline, reusing buf.
func readLine(r *bufio.Reader, buf *[]byte) ([]byte, error) {
	*buf = (*buf)[:0]
	for {
		chunk, err := r.ReadSlice('\n')
		*buf = append(*buf, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(*buf) > 0 {
			return bytes.TrimRight(*buf, "\r\n"), nil
		}
		if err != nil {
			return nil, err
		}
		return bytes.TrimRight(*buf, "\r\n"), nil
	}
}

// Table is a whole input held in memory, for fitting and inference.
type Table struct {
	Names []string
	Rows  [][]string
	Lines []int // the input line of each row
	// DroppedKeys counts key occurrences left out because DecodeMessages
	// reached MaxColumns while discovering the columns.
	DroppedKeys int
}

// ReadTable reads a whole CSV or JSON Lines input. For JSON Lines the
// names are the union of the records' keys in order of first appearance.
// Bad records are skipped and returned; only I/O errors fail the read.
func ReadTable(r io.Reader, f Format) (*Table, []*RowError, error) {
	var src io.Reader = r
	var names []string
	if f == JSONL {
		// Keys are not known up front: hold the input, find them, then decode.
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, nil, err
		}
		names = jsonKeys(data)
		if len(names) == 0 {
			return nil, nil, errors.New("features: no JSON object found in the input")
		}
		src = bytes.NewReader(data)
	}
	rr, err := NewRowReader(src, f, names)
	if err != nil {
		return nil, nil, err
	}
	t := &Table{Names: slices.Clone(rr.Names())}
	var bad []*RowError
	for {
		row, line, err := rr.Next()
		if err == io.EOF {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			bad = append(bad, re)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		cp := make([]string, len(row))
		for i, v := range row {
			cp[i] = strings.Clone(v)
		}
		t.Rows = append(t.Rows, cp)
		t.Lines = append(t.Lines, line)
	}
	return t, bad, nil
}

func jsonKeys(data []byte) []string {
	var names []string
	seen := map[string]bool{}
	for line := range bytes.Lines(data) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		// Map order is random: add new keys in the order they appear in the line.
		dec := json.NewDecoder(bytes.NewReader(line))
		if _, err := dec.Token(); err != nil {
			continue
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			k, _ := tok.(string)
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				break
			}
			if !seen[k] {
				seen[k] = true
				names = append(names, k)
			}
		}
	}
	return names
}

// Project returns rows reordered to the schema's field order, from rows
// whose columns are named by names. Columns the schema lacks are dropped;
// fields the input lacks read as empty.
func Project(s *Schema, names []string, rows [][]string) [][]string {
	idx := make([]int, len(s.Fields))
	same := len(names) == len(s.Fields)
	for i, f := range s.Fields {
		idx[i] = slices.Index(names, f.Name)
		same = same && idx[i] == i
	}
	if same {
		return rows
	}
	out := make([][]string, len(rows))
	for r, row := range rows {
		p := make([]string, len(idx))
		for i, j := range idx {
			if j >= 0 && j < len(row) {
				p[i] = row[j]
			}
		}
		out[r] = p
	}
	return out
}
