package features

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MessageOptions bounds DecodeMessages. Zero values select the defaults.
type MessageOptions struct {
	MaxKeys    int // keys per record; a record with more is a bad row. Default 1,000.
	MaxColumns int // distinct keys discovered over all records when names is nil; keys beyond are dropped (and counted). Default 1,000.
}

// DecodeMessages decodes one JSON object per message, whatever whitespace or newlines it contains.
// With names non-nil only those keys are read, in that order (the current schema's names);
// with names nil the columns are discovered, bounded by opt. Bad messages are returned as RowErrors
// (Line = index+1 of the message) and skipped.
//
// Discovery keeps the MaxColumns keys found in the most records (counted
// with a bounded Misra-Gries summary), in order of first appearance, so a
// burst of records with junk keys cannot push the real fields out. Keys left
// out are counted in Table.DroppedKeys. Rows hold copies: msgs may be reused
// afterwards.
func DecodeMessages(msgs [][]byte, names []string, opt MessageOptions) (*Table, []*RowError, error) {
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = 1000
	}
	if opt.MaxColumns <= 0 {
		opt.MaxColumns = 1000
	}
	discover := names == nil
	if discover {
		names = discoverKeys(msgs, opt)
		if len(names) == 0 {
			return nil, nil, errors.New("features: no JSON object found in the messages")
		}
	} else if len(names) == 0 {
		return nil, nil, errors.New("features: DecodeMessages needs at least one field name (or nil to discover them)")
	}
	t := &Table{Names: slices.Clone(names)}
	var bad []*RowError
	dec := NewRowDecoder(names)
	row := make([]string, len(names))
	for i, m := range msgs {
		m = trimMessage(m)
		if len(m) == 0 {
			bad = append(bad, &RowError{Line: i + 1, Err: errors.New("empty message")})
			continue
		}
		// Count first: a record with thousands of keys is refused before it costs more.
		n := topKeys(m, opt.MaxKeys, nil)
		if n > opt.MaxKeys {
			bad = append(bad, &RowError{Line: i + 1, Err: fmt.Errorf("more than %d keys in one record (%d bytes): not a transaction record", opt.MaxKeys, len(m))})
			continue
		}
		if err := dec.Decode(m, row); err != nil {
			bad = append(bad, &RowError{Line: i + 1, Err: err})
			continue
		}
		cp := make([]string, len(row))
		present := 0
		for j, v := range row {
			cp[j] = strings.Clone(v)
			if dec.Present(j) {
				present++
			}
		}
		if discover && n > present {
			t.DroppedKeys += n - present
		}
		t.Rows = append(t.Rows, cp)
		t.Lines = append(t.Lines, i+1)
	}
	return t, bad, nil
}

// trimMessage drops surrounding whitespace and a byte-order mark.
func trimMessage(m []byte) []byte {
	return bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(m), []byte("\ufeff")))
}

// discoverKeys returns up to opt.MaxColumns top-level keys, those found in
// the most records, in order of first appearance. Records with more than
// opt.MaxKeys keys contribute none.
func discoverKeys(msgs [][]byte, opt MessageOptions) []string {
	type entry struct {
		count int // Misra-Gries estimate: at most the true count, short by at most total/(capacity+1)
		first int // order of (re)insertion
	}
	// With room for 4x the columns kept, any key present in more than a
	// quarter-MaxColumns-th of all key occurrences survives, however many
	// one-off keys arrive, and memory stays bounded by the capacity.
	capacity := 4 * opt.MaxColumns
	sum := make(map[string]*entry, min(capacity, 1024))
	seq := 0
	insert := func(key string) {
		if e, ok := sum[key]; ok {
			e.count++
			return
		}
		if len(sum) >= capacity {
			// Decrement every counter and drop those at zero; the new key is
			// absorbed by the decrement, as in Misra-Gries.
			for k, e := range sum {
				if e.count--; e.count == 0 {
					delete(sum, k)
				}
			}
			return
		}
		seq++
		sum[key] = &entry{count: 1, first: seq}
	}
	add := func(raw []byte) {
		if bytes.IndexByte(raw, '\\') < 0 {
			if e, ok := sum[string(raw)]; ok { // no allocation for the lookup
				e.count++
				return
			}
			insert(string(raw))
			return
		}
		// Keys are matched after unescaping, as RowDecoder does.
		var key string
		quoted := append(append(append(make([]byte, 0, len(raw)+2), '"'), raw...), '"')
		if json.Unmarshal(quoted, &key) == nil {
			insert(key)
		}
	}
	for _, m := range msgs {
		m = trimMessage(m)
		if len(m) == 0 || m[0] != '{' {
			continue
		}
		if topKeys(m, opt.MaxKeys, nil) > opt.MaxKeys {
			continue
		}
		topKeys(m, opt.MaxKeys, add)
	}
	keys := make([]string, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(sum[b].count, sum[a].count); c != 0 {
			return c
		}
		return cmp.Compare(sum[a].first, sum[b].first)
	})
	keys = keys[:min(len(keys), opt.MaxColumns)]
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(sum[a].first, sum[b].first) })
	return keys
}

// topKeys counts the top-level keys of the JSON object in msg, calling fn
// (when not nil) with each key's raw, still escaped, text. It stops once it
// has counted more than max. It trusts nothing: on malformed input the count
// is only an estimate, and the decoder reports the error.
func topKeys(msg []byte, max int, fn func(raw []byte)) int {
	depth, n := 0, 0
	object, expectKey := false, false
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; c {
		case '"':
			j := i + 1
			for j < len(msg) && msg[j] != '"' {
				if msg[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j, len(msg))
			if depth == 1 && object && expectKey {
				if n++; n > max {
					return n
				}
				if fn != nil {
					fn(msg[i+1 : j])
				}
				expectKey = false
			}
			i = j
		case '{', '[':
			depth++
			if depth == 1 {
				object = c == '{'
				expectKey = object
			}
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		}
	}
	return n
}
