package features

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// CSV records are read one physical line at a time, with encoding/csv's
// rules (RFC 4180 quoting, "" for a quote, quoted fields may span lines, a
// line's trailing \r dropped, empty lines skipped) and its LazyQuotes
// leniency (a quote inside an unquoted field, or inside a quoted field and
// not followed by a comma or the end of the line, is text). What differs is
// a quote that does not close: encoding/csv with LazyQuotes silently runs the
// quoted field on over the following lines, so several input rows vanish
// into one record and the output loses its one row per input row. Here a
// record whose quoted field spans lines is kept only when it closes within
// maxRecordLines lines and has the header's number of fields; otherwise its
// first line is a bad row that names the quote and the lines after it are
// read again as records of their own. A record that does close with the
// right count is still refused this way when one of the lines it swallowed
// is a complete record on its own (see recordsAlone): `2,"x` followed by
// `3,y,z` and `4,w"` is rows around a stray quote far more often than one
// note with newlines, and a visible bad row is better than rows that
// silently vanish. A note whose inner lines each hold exactly a record's
// worth of commas is taken for a stray quote: its lines come out as rows.
const (
	maxRecordLines = 64      // lines one record (a quoted field with newlines) may span
	maxRecordBytes = 1 << 20 // bytes one multi-line record may hold
)

type csvLine struct {
	n    int // 1-based physical line number
	text []byte
}

type csvLines struct {
	r       *bufio.Reader
	line    int       // physical lines read from r
	pending []csvLine // lines read ahead and given back, in order
	buf     []byte
	joined  []byte
	fields  []byte // the current record's unescaped field contents
	ends    []int
	rec     []string
}

// next returns the next physical line without its line ending; the text is
// valid until the next call.
func (c *csvLines) next() (csvLine, error) {
	if len(c.pending) > 0 {
		l := c.pending[0]
		c.pending = c.pending[1:]
		return l, nil
	}
	b, err := readLine(c.r, &c.buf)
	if err != nil {
		return csvLine{}, err
	}
	c.line++
	return csvLine{c.line, b}, nil
}

// record returns the next record's fields (valid until the next call) and
// its first line. want is the header's field count (0 for the header
// itself): a multi-line record with another count is taken for a stray
// quote. A bad record is a *RowError; io.EOF ends the input.
func (c *csvLines) record(want int) ([]string, int, error) {
	var first csvLine
	for {
		l, err := c.next()
		if err != nil {
			return nil, 0, err
		}
		if l.n == 1 {
			l.text = bytes.TrimPrefix(l.text, []byte("\ufeff")) // a byte-order mark
		}
		if len(l.text) > 0 {
			first = l
			break
		}
	}
	open, field := c.split(first.text)
	if !open {
		return c.strings(), first.n, nil
	}
	// A quoted field runs past the end of the line: read on until it closes.
	text := append(c.joined[:0], first.text...)
	var more []csvLine
	var err error
	for open && len(more) < maxRecordLines-1 && len(text) <= maxRecordBytes {
		var l csvLine
		if l, err = c.next(); err != nil {
			break
		}
		more = append(more, csvLine{l.n, bytes.Clone(l.text)})
		text = append(append(text, '\n'), l.text...)
		open, _ = c.split(text)
	}
	c.joined = text
	if err != nil && err != io.EOF {
		return nil, first.n, err
	}
	if !open && (want == 0 || len(c.ends) == want && !c.recordsAlone(more, want)) {
		c.split(text)
		return c.strings(), first.n, nil
	}
	// Give the lines back: each is read again as a record of its own.
	c.pending = append(more, c.pending...)
	return nil, first.n, &RowError{Line: first.n, Err: fmt.Errorf(
		`stray quote: the " that opens field %d is not closed on this line (read on, it would merge the following lines into one record); line skipped`, field)}
}

// split parses text into c.fields and c.ends. open reports a quoted field
// still open at the end of text, and field its 1-based position.
func (c *csvLines) split(text []byte) (open bool, field int) {
	dst, ends := c.fields[:0], c.ends[:0]
	defer func() { c.fields, c.ends = dst, ends }()
	i := 0
	for {
		if i < len(text) && text[i] == '"' {
			i++
			closed := false
			for i < len(text) {
				ch := text[i]
				if ch == '"' {
					switch {
					case i+1 < len(text) && text[i+1] == '"':
						dst = append(dst, '"')
						i += 2
					case i+1 == len(text) || text[i+1] == ',':
						i++
						closed = true
					default: // a stray quote inside the field: text, as with LazyQuotes
						dst = append(dst, '"')
						i++
					}
					if closed {
						break
					}
					continue
				}
				dst = append(dst, ch)
				i++
			}
			if !closed {
				return true, len(ends) + 1
			}
			ends = append(ends, len(dst))
			if i == len(text) {
				return false, 0
			}
			i++ // the comma
			continue
		}
		j := bytes.IndexByte(text[i:], ',')
		if j < 0 {
			dst = append(dst, text[i:]...)
			ends = append(ends, len(dst))
			return false, 0
		}
		dst = append(dst, text[i:i+j]...)
		ends = append(ends, len(dst))
		i += j + 1
	}
}

// recordsAlone reports whether one of lines (those a quoted field ran on
// over), read alone, is a complete record of want fields: then the quote
// that joined them to the line before is more likely stray (`1,"x` ...
// `3,y"`) than a field with newlines. The closing line counts only when it
// ends with the closing quote: otherwise its closing `",` adds a field of
// its own and a note's last line with one comma would look like a record.
func (c *csvLines) recordsAlone(lines []csvLine, want int) bool {
	for i, l := range lines {
		if i == len(lines)-1 && !bytes.HasSuffix(l.text, []byte{'"'}) {
			continue
		}
		if open, _ := c.split(l.text); !open && len(c.ends) == want {
			return true
		}
	}
	return false
}

// strings returns the fields of the last split as strings sharing one allocation.
func (c *csvLines) strings() []string {
	all := string(c.fields)
	c.rec = c.rec[:0]
	prev := 0
	for _, e := range c.ends {
		c.rec = append(c.rec, all[prev:e])
		prev = e
	}
	return c.rec
}
