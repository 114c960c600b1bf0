package features

import (
	"encoding/csv"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// result is what a RowReader yields for one record: its line and either its
// fields or its error.
type result struct {
	line int
	row  string // fields joined by |
	err  string
}

func readAll(t *testing.T, in string, names []string) []result {
	t.Helper()
	rr, err := NewRowReader(strings.NewReader(in), CSV, names)
	if err != nil {
		t.Fatal(err)
	}
	var out []result
	for {
		row, line, err := rr.Next()
		if err == io.EOF {
			return out
		}
		var re *RowError
		switch {
		case errors.As(err, &re):
			out = append(out, result{line: re.Line, err: re.Error()})
		case err != nil:
			t.Fatal(err)
		default:
			out = append(out, result{line: line, row: strings.Join(row, "|")})
		}
	}
}

// TestCSVStrayQuote: a field that opens a quote and never closes it used to
// run on over the following lines (LazyQuotes), so 2 of 4 records vanished
// into one bad record whose message said nothing about a quote. Now every
// input row gives one result, in order: the quoted line is a bad row that
// names the quote, the rows after it are read.
func TestCSVStrayQuote(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []result
	}{
		{"never closes", "id,amount,note\n1,10,a\n2,\"20,b\n3,30,c\n4,40,d\n", []result{
			{line: 2, row: "1|10|a"}, {line: 3, err: "stray quote"}, {line: 4, row: "3|30|c"}, {line: 5, row: "4|40|d"},
		}},
		// Closes two lines later with the header's field count: encoding/csv
		// returned one record and the middle row silently vanished.
		{"closes later", "id,amount,note\n1,10,\"a\n2,20,b\n3,30,c\"\n4,40,d\n", []result{
			{line: 2, err: "stray quote"}, {line: 3, row: "2|20|b"}, {line: 4, row: "3|30|c\""}, {line: 5, row: "4|40|d"},
		}},
		{"stray quote inside a quoted field", "id,amount,note\n1,\"10\"x,a\n2,20,b\n", []result{
			{line: 2, err: "stray quote"}, {line: 3, row: "2|20|b"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, tc.in, nil)
			if len(got) != len(tc.want) {
				t.Fatalf("%d results %+v, want one per input row: %+v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.line != w.line || g.row != w.row || (w.err == "") != (g.err == "") || !strings.Contains(g.err, w.err) {
					t.Errorf("result %d = %+v, want %+v", i, g, w)
				}
			}
			if i := slices.IndexFunc(got, func(r result) bool { return r.err != "" }); i < 0 || !strings.Contains(got[i].err, `"`) {
				t.Errorf("no bad row shows the quote: %+v", got)
			}
		})
	}
	tab, bad, err := ReadTable(strings.NewReader("id,amount,note\n1,10,a\n2,\"20,b\n3,30,c\n4,40,d\n"), CSV)
	if err != nil || len(tab.Rows) != 3 || len(bad) != 1 || !slices.Equal(tab.Lines, []int{2, 4, 5}) {
		t.Errorf("ReadTable: %v, rows %v lines %v, bad %v", err, tab.Rows, tab.Lines, bad)
	}
}

// TestCSVQuotedNewlines: a genuine quoted field with newlines, doubled
// quotes and commas is still one record. (A field whose continuation lines
// each hold exactly a record's worth of commas is taken for a stray quote:
// see csvlines.go.)
func TestCSVQuotedNewlines(t *testing.T) {
	in := "\ufeffid,note,amount\r\n1,\"first line\r\nsecond \"\"quoted\"\" line, with a comma\",10\r\n\r\n2,plain,20\r\n3,\"\",\r\n"
	got := readAll(t, in, []string{"amount", "id", "absent"})
	want := []result{{line: 2, row: "10|1|"}, {line: 5, row: "20|2|"}, {line: 6, row: "|3|"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	rr, _ := NewRowReader(strings.NewReader(in), CSV, nil)
	row, _, err := rr.Next()
	if err != nil || len(row) != 3 || row[1] != "first line\nsecond \"quoted\" line, with a comma" {
		t.Errorf("note = %q, %v", row[1], err)
	}
	if _, err := NewRowReader(strings.NewReader("a,\"b\nc\n"), CSV, nil); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("header with a quote that never closes: %v", err)
	}
	if _, err := NewRowReader(strings.NewReader("\n\n"), CSV, nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty input: %v", err)
	}
}

// TestCSVMatchesEncodingCSV: on well-formed input (and on bare quotes inside
// unquoted fields, which LazyQuotes accepted), records and lines are those
// encoding/csv gives.
func TestCSVMatchesEncodingCSV(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	pieces := []string{"a", "b c", "12.5", "", " ", "x\"y", "5\" screen", "é"}
	for iter := range 300 {
		var b strings.Builder
		b.WriteString("h1,h2,h3\n")
		for range 1 + rng.IntN(8) {
			for f := range 3 {
				if f > 0 {
					b.WriteByte(',')
				}
				v := pieces[rng.IntN(len(pieces))]
				switch rng.IntN(3) {
				case 0: // quoted, with what only quoting allows
					v = strings.ReplaceAll(v, `"`, `""`)
					if rng.IntN(2) == 0 {
						v += ", \"\"q\"\""
					}
					b.WriteString(`"` + v + `"`)
				default:
					if !strings.HasPrefix(v, `"`) {
						b.WriteString(v)
					}
				}
			}
			b.WriteString([]string{"\n", "\r\n", "\n\n"}[rng.IntN(3)])
		}
		in := b.String()
		cr := csv.NewReader(strings.NewReader(in))
		cr.FieldsPerRecord, cr.LazyQuotes = -1, true
		var want []result
		cr.Read() // header
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			line, _ := cr.FieldPos(0)
			want = append(want, result{line: line, row: strings.Join(rec, "|")})
		}
		if got := readAll(t, in, nil); !slices.Equal(got, want) {
			t.Fatalf("input %d %q:\ngot  %+v\nwant %+v", iter, in, got, want)
		}
	}
}
