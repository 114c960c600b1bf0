package features

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func normalMessages(n int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, `{"tx_id":"tx-%d","card_id":"c-%d","amount":%d.50,"country":"FR","event_time":"2024-03-01T10:%02d:00Z"}`, i, i%97, i%300, i%60)
	}
	return msgs
}

// TestDecodeMessagesHugeRecord: one 1 MB message with 60,000 distinct keys
// among 10,000 normal ones used to widen every row to 60,005 cells (the
// union of all keys); now it is a bad row that says why and the table keeps
// the normal records' width.
func TestDecodeMessagesHugeRecord(t *testing.T) {
	msgs := normalMessages(10000)
	var big bytes.Buffer
	big.WriteByte('{')
	for k := range 60000 {
		if k > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `"k%d":%d`, k, k)
	}
	big.WriteByte('}')
	msgs = slices.Insert(msgs, 5000, big.Bytes())

	tab, bad, err := DecodeMessages(msgs, nil, MessageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tx_id", "card_id", "amount", "country", "event_time"}
	if !slices.Equal(tab.Names, want) {
		t.Fatalf("names %d %.200v, want %v", len(tab.Names), tab.Names, want)
	}
	if len(tab.Rows) != 10000 || len(tab.Rows[0]) != len(want) {
		t.Fatalf("%d rows of %d cells, want 10000 of %d", len(tab.Rows), len(tab.Rows[0]), len(want))
	}
	if len(bad) != 1 || bad[0].Line != 5001 || !strings.Contains(bad[0].Error(), "more than 1000 keys") {
		t.Fatalf("bad rows %v, want line 5001 refused for its keys", bad)
	}
	if tab.Lines[5000] != 5002 || tab.Rows[5000][0] != "tx-5000" {
		t.Errorf("row after the bad one: line %d id %s", tab.Lines[5000], tab.Rows[5000][0])
	}

	// The same with the schema's names: the big record is refused as well.
	tab, bad, err = DecodeMessages(msgs, []string{"amount", "tx_id", "absent"}, MessageOptions{})
	if err != nil || len(tab.Rows) != 10000 || len(bad) != 1 {
		t.Fatalf("with names: err %v, %d rows, %d bad", err, len(tab.Rows), len(bad))
	}
	if got := tab.Rows[3]; !slices.Equal(got, []string{"3.50", "tx-3", ""}) {
		t.Errorf("row 3 = %q, want the named keys in order", got)
	}
}

// TestDecodeMessagesJunkKeysDoNotCrowdOut: records carrying hundreds of
// one-off keys at the start of the window must not take the columns of the
// fields every record has (first-appearance order would keep only junk).
func TestDecodeMessagesJunkKeysDoNotCrowdOut(t *testing.T) {
	var msgs [][]byte
	for j := range 50 {
		var b strings.Builder
		b.WriteByte('{')
		for k := range 900 {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"junk_%d_%d":1`, j, k)
		}
		b.WriteByte('}')
		msgs = append(msgs, []byte(b.String()))
	}
	msgs = append(msgs, normalMessages(2000)...)
	tab, bad, err := DecodeMessages(msgs, nil, MessageOptions{MaxColumns: 100})
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	if len(tab.Names) > 100 {
		t.Fatalf("%d columns, over the bound of 100", len(tab.Names))
	}
	for _, n := range []string{"tx_id", "card_id", "amount", "country", "event_time"} {
		if !slices.Contains(tab.Names, n) {
			t.Errorf("field %s was crowded out by junk keys", n)
		}
	}
	if tab.DroppedKeys == 0 {
		t.Error("dropped junk keys were not counted")
	}
}

// TestDecodeMessagesPrettyPrinted: a message is one JSON object whatever its
// newlines; joining messages with "\n" used to split these into bad rows.
func TestDecodeMessagesPrettyPrinted(t *testing.T) {
	var msgs [][]byte
	for i := range 3 {
		b, _ := json.MarshalIndent(map[string]any{"tx_id": fmt.Sprint("t", i), "amount": 1.5 + float64(i), "nested": map[string]int{"a": i}}, "", "  ")
		msgs = append(msgs, b)
	}
	msgs = append(msgs, []byte("\ufeff{\r\n\"tx_id\": \"t3\",\r\n\"amount\": 9, \"caf\\u00e9\": \"x\"\r\n}\r\n"))
	msgs = append(msgs, []byte("   "), []byte(`{"tx_id": "t5",`), []byte(`{"tx_id":"a"}{"tx_id":"b"}`))
	tab, bad, err := DecodeMessages(msgs, nil, MessageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rows) != 4 {
		t.Fatalf("%d rows (%v), want the 4 objects decoded; bad: %v", len(tab.Rows), tab.Rows, bad)
	}
	if !slices.Contains(tab.Names, "café") {
		t.Errorf("escaped key not unescaped: %q", tab.Names)
	}
	ai, ni := slices.Index(tab.Names, "amount"), slices.Index(tab.Names, "nested")
	if tab.Rows[1][ai] != "2.5" || tab.Rows[2][ni] != `{
    "a": 2
  }` || tab.Rows[3][ai] != "9" {
		t.Errorf("values: %q", tab.Rows)
	}
	var lines []int
	for _, b := range bad {
		lines = append(lines, b.Line)
	}
	if !slices.Equal(lines, []int{5, 6, 7}) || !strings.Contains(bad[0].Error(), "empty") {
		t.Errorf("bad rows %v, want messages 5 (empty), 6 (truncated), 7 (two objects)", bad)
	}
}

func TestDecodeMessagesErrors(t *testing.T) {
	if _, _, err := DecodeMessages([][]byte{[]byte("not json"), nil}, nil, MessageOptions{}); err == nil {
		t.Error("no object at all: want an error")
	}
	if _, _, err := DecodeMessages([][]byte{[]byte(`{"a":1}`)}, []string{}, MessageOptions{}); err == nil {
		t.Error("empty names: want an error")
	}
	tab, bad, err := DecodeMessages([][]byte{[]byte(`{"a":1,"b":2,"c":3}`), []byte(`{"a":4}`)}, nil, MessageOptions{MaxKeys: 2})
	if err != nil || len(tab.Rows) != 1 || len(bad) != 1 || bad[0].Line != 1 || !slices.Equal(tab.Names, []string{"a"}) {
		t.Errorf("MaxKeys 2: %v %+v %v", err, tab, bad)
	}
}

func TestTopKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`{}`, nil},
		{`{"a":1,"b":{"c":[1,{"d":2}],"e":"}"},"f\"g":"h,\"i\":"}`, []string{"a", "b", `f\"g`}},
		{` { "a" : [ "x" , "y" ] , "b" : null } `, []string{"a", "b"}},
		{`["a","b"]`, nil},
		{`{"a":"unterminated`, []string{"a"}},
	} {
		var got []string
		n := topKeys([]byte(tc.in), 100, func(raw []byte) { got = append(got, string(raw)) })
		if !slices.Equal(got, tc.want) || n != len(tc.want) {
			t.Errorf("topKeys(%s) = %d %q, want %q", tc.in, n, got, tc.want)
		}
	}
	if n := topKeys([]byte(`{"a":1,"b":2,"c":3}`), 1, nil); n != 2 {
		t.Errorf("stops after max+1 keys: got %d", n)
	}
}
