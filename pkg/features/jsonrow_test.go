package features

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// jrTxnNames are the keys a feature pipeline typically extracts from a
// card-transaction message; "mcc_group" and "promo_code" are never sent.
var jrTxnNames = []string{
	"transaction_id", "card_id", "customer_id", "amount", "currency",
	"merchant_id", "merchant_name", "merchant_category", "country", "city",
	"timestamp", "lat", "lon", "device_id", "ip", "channel", "entry_mode",
	"card_present", "risk_flags", "three_ds", "mcc_group", "promo_code",
}

// jrTxn20 is a typical 20-key message.
const jrTxn20 = `{"transaction_id":"tx_01HZX3K8Q2M7R9V4T6B1N5C0D","card_id":"card_7f3a91c2",` +
	`"customer_id":"cust_88213","amount":129.95,"currency":"EUR","merchant_id":"mrc_402187",` +
	`"merchant_name":"Boulangerie Paul","merchant_category":"5812","country":"FR","city":"Paris",` +
	`"timestamp":"2024-05-17T14:32:08.123Z","lat":48.856613,"lon":2.352222,"device_id":"dev_3c9e0a77f1",` +
	`"ip":"203.0.113.42","channel":"pos","entry_mode":"chip","card_present":true,` +
	`"risk_flags":["velocity","new_device"],"three_ds":null}`

// jrTxn20Esc is the same message with escapes in several values and a key.
const jrTxn20Esc = `{"transaction_id":"tx_01HZX3K8Q2M7R9V4T6B1N5C0D","card_id":"card_7f3a91c2",` +
	`"customer_id":"cust_88213","amount":129.95,"currency":"EUR","merchant_id":"mrc_402187",` +
	`"merchant_name":"Caf\u00e9 \"Le Zinc\" \ud83d\ude00","merchant_category":"5812","country":"FR",` +
	`"city":"Saint-\u00c9tienne","timestamp":"2024-05-17T14:32:08.123Z","lat":48.856613,"lon":2.352222,` +
	`"device_id":"dev\/3c9e0a77f1","ip":"203.0.113.42","channel":"pos","entry_m\u006fde":"chip",` +
	`"card_present":true,"risk_flags":["velocity","new_device"],"three_ds":null}`

// jrBenchMsg is a realistic ~25-key card-transaction message.
const jrBenchMsg = `{"event_id":"9f1c2e7a-4b3d-4e2f-9a61-0c8d5b7e3f21","transaction_id":"tx_01HZX3K8Q2M7R9V4T6B1N5C0D",` +
	`"card_id":"card_7f3a91c2","account_id":"acct_5521908","customer_id":"cust_88213","amount":129.95,` +
	`"currency":"EUR","amount_eur":129.95,"merchant_id":"mrc_402187","merchant_name":"Boulangerie Paul",` +
	`"merchant_category":"5812","mcc":5812,"country":"FR","city":"Paris","timestamp":"2024-05-17T14:32:08.123Z",` +
	`"lat":48.856613,"lon":2.352222,"device_id":"dev_3c9e0a77f1","ip":"203.0.113.42","channel":"pos",` +
	`"entry_mode":"chip","card_present":true,"is_international":false,"risk_flags":["velocity","new_device"],` +
	`"three_ds":null}`

const jrBenchMsgEsc = `{"event_id":"9f1c2e7a-4b3d-4e2f-9a61-0c8d5b7e3f21","transaction_id":"tx_01HZX3K8Q2M7R9V4T6B1N5C0D",` +
	`"card_id":"card_7f3a91c2","account_id":"acct_5521908","customer_id":"cust_88213","amount":129.95,` +
	`"currency":"EUR","amount_eur":129.95,"merchant_id":"mrc_402187","merchant_name":"Caf\u00e9 \"Le Zinc\" \ud83d\ude00",` +
	`"merchant_category":"5812","mcc":5812,"country":"FR","city":"Saint-\u00c9tienne","timestamp":"2024-05-17T14:32:08.123Z",` +
	`"lat":48.856613,"lon":2.352222,"device_id":"dev\/3c9e0a77f1","ip":"203.0.113.42","channel":"pos",` +
	`"entry_mode":"chip","card_present":true,"is_international":false,"risk_flags":["velocity","new_device"],` +
	`"three_ds":null}`

var jrBenchNames = []string{
	"event_id", "transaction_id", "card_id", "account_id", "customer_id", "amount", "currency",
	"amount_eur", "merchant_id", "merchant_name", "merchant_category", "mcc", "country", "city",
	"timestamp", "lat", "lon", "device_id", "ip", "channel", "entry_mode", "card_present",
	"is_international", "risk_flags", "three_ds",
}

func TestRowDecoderValid(t *testing.T) {
	type kv = map[string]string // expected values of present keys; others must be missing
	tests := []struct {
		name  string
		names []string
		in    string
		want  kv
		null  []string // present with a null value
	}{
		{
			name:  "transaction",
			names: jrTxnNames,
			in:    jrTxn20,
			want: kv{
				"transaction_id": "tx_01HZX3K8Q2M7R9V4T6B1N5C0D", "card_id": "card_7f3a91c2",
				"customer_id": "cust_88213", "amount": "129.95", "currency": "EUR",
				"merchant_id": "mrc_402187", "merchant_name": "Boulangerie Paul",
				"merchant_category": "5812", "country": "FR", "city": "Paris",
				"timestamp": "2024-05-17T14:32:08.123Z", "lat": "48.856613", "lon": "2.352222",
				"device_id": "dev_3c9e0a77f1", "ip": "203.0.113.42", "channel": "pos",
				"entry_mode": "chip", "card_present": "true", "risk_flags": `["velocity","new_device"]`,
			},
			null: []string{"three_ds"},
		},
		{
			name:  "transaction with escapes",
			names: jrTxnNames,
			in:    jrTxn20Esc,
			want: kv{
				"transaction_id": "tx_01HZX3K8Q2M7R9V4T6B1N5C0D", "card_id": "card_7f3a91c2",
				"customer_id": "cust_88213", "amount": "129.95", "currency": "EUR",
				"merchant_id": "mrc_402187", "merchant_name": "Café \"Le Zinc\" 😀",
				"merchant_category": "5812", "country": "FR", "city": "Saint-Étienne",
				"timestamp": "2024-05-17T14:32:08.123Z", "lat": "48.856613", "lon": "2.352222",
				"device_id": "dev/3c9e0a77f1", "ip": "203.0.113.42", "channel": "pos",
				"entry_mode": "chip", "card_present": "true", "risk_flags": `["velocity","new_device"]`,
			},
			null: []string{"three_ds"},
		},
		{
			name:  "all simple escapes",
			names: []string{"s"},
			in:    `{"s":"q\" b\\ s\/ \b\f\n\r\t end"}`,
			want:  kv{"s": "q\" b\\ s/ \b\f\n\r\t end"},
		},
		{
			name:  "unicode escapes",
			names: []string{"e", "pair", "upper", "nul", "bmp", "raw"},
			in:    `{"e":"\u00e9","pair":"\uD83D\uDE00!","upper":"\u00C9\u00c9","nul":"a\u0000b","bmp":"\u20ac\u2028","raw":"é😀€"}`,
			want:  kv{"e": "é", "pair": "😀!", "upper": "ÉÉ", "nul": "a\x00b", "bmp": "€\u2028", "raw": "é😀€"},
		},
		{
			name:  "lone surrogates become U+FFFD like encoding/json",
			names: []string{"hi", "lo", "hi2", "rev", "hiA"},
			in:    `{"hi":"x\ud800y","lo":"\udc00","hi2":"\ud800\ud800\udc00","rev":"\udc00\ud800","hiA":"\ud800\u0041"}`,
			want:  kv{"hi": "x\uFFFDy", "lo": "\uFFFD", "hi2": "\uFFFD𐀀", "rev": "\uFFFD\uFFFD", "hiA": "\uFFFDA"},
		},
		{
			name:  "invalid UTF-8 is coerced like encoding/json",
			names: []string{"a", "b"},
			in:    "{\"a\":\"x\xffy\",\"b\":\"\xe2\x82\"}",
			want:  kv{"a": "x\uFFFDy", "b": "\uFFFD\uFFFD"},
		},
		{
			name:  "numbers keep their literal text",
			names: []string{"i", "neg", "frac", "exp", "expneg", "zero", "negzero", "big", "Exp"},
			in:    `{"i":12,"neg":-3e5,"frac":12.50,"exp":1e+10,"expneg":2.5E-3,"zero":0,"negzero":-0.0,"big":123456789012345678901234567890,"Exp":0E0}`,
			want: kv{"i": "12", "neg": "-3e5", "frac": "12.50", "exp": "1e+10", "expneg": "2.5E-3",
				"zero": "0", "negzero": "-0.0", "big": "123456789012345678901234567890", "Exp": "0E0"},
		},
		{
			name:  "literals",
			names: []string{"t", "f", "n"},
			in:    `{"t":true,"f":false,"n":null}`,
			want:  kv{"t": "true", "f": "false"},
			null:  []string{"n"},
		},
		{
			name:  "nested values are returned raw",
			names: []string{"obj", "arr", "empty_obj", "empty_arr", "tricky", "after"},
			in:    `{"obj":{"a":[1,{"b":null}],"c":"}"},"arr":[ 1 , "]" , [ ] , { } ],"empty_obj":{},"empty_arr":[],"tricky":["\"]\\",{"k\"}":"{["}],"after":1}`,
			want: kv{"obj": `{"a":[1,{"b":null}],"c":"}"}`, "arr": `[ 1 , "]" , [ ] , { } ]`, "empty_obj": `{}`,
				"empty_arr": `[]`, "tricky": `["\"]\\",{"k\"}":"{["}]`, "after": "1"},
		},
		{
			name:  "missing keys and empty object",
			names: []string{"a", "b"},
			in:    `{}`,
			want:  kv{},
		},
		{
			name:  "unknown keys skipped",
			names: []string{"b"},
			in:    `{"a":{"x":[1,2,{"y":"\u00e9\n"}]},"z":"\"","b":"yes","c":[true,false,null,-1.5e3]}`,
			want:  kv{"b": "yes"},
		},
		{
			name:  "duplicate keys: last wins",
			names: []string{"a", "b"},
			in:    `{"a":"first","b":"x\ty","a":"last","b":null}`,
			want:  kv{"a": "last"},
			null:  []string{"b"},
		},
		{
			name:  "duplicate key: null then value",
			names: []string{"a"},
			in:    `{"a":null,"a":"v"}`,
			want:  kv{"a": "v"},
		},
		{
			name:  "whitespace everywhere",
			names: []string{"a", "b", "c"},
			in:    " \t\r\n{ \n\"a\" \t: \r\"x\" ,\n\t\"b\":[ 1 ,\n2 ] , \"c\" : { \"d\" : 1 } \n} \r\n\t ",
			want:  kv{"a": "x", "b": "[ 1 ,\n2 ]", "c": `{ "d" : 1 }`},
		},
		{
			name:  "escaped keys are unescaped before lookup",
			names: []string{"amount", "é", `q"k`, "", "a/b"},
			in:    `{"am\u006funt":1,"\u00e9":2,"q\"k":3,"":4,"a\/b":5}`,
			want:  kv{"amount": "1", "é": "2", `q"k`: "3", "": "4", "a/b": "5"},
		},
		{
			name:  "keys are case sensitive",
			names: []string{"Amount", "amount"},
			in:    `{"amount":1}`,
			want:  kv{"amount": "1"},
		},
		{
			name:  "empty string value is present",
			names: []string{"a"},
			in:    `{"a":""}`,
			want:  kv{"a": ""},
		},
		{
			name:  "repeated name gets the value in every position",
			names: []string{"a", "b", "a"},
			in:    `{"a":"v","b":"w"}`,
			want:  kv{"a": "v", "b": "w"},
		},
		{
			name:  "many escaped values (scratch growth keeps earlier values intact)",
			names: []string{"a", "b", "c", "d"},
			in: `{"a":"` + strings.Repeat(`\u00e9`, 50) + `","b":"` + strings.Repeat(`\n`, 300) +
				`","c":"` + strings.Repeat(`x\"`, 1000) + `","d":"\t"}`,
			want: kv{"a": strings.Repeat("é", 50), "b": strings.Repeat("\n", 300),
				"c": strings.Repeat(`x"`, 1000), "d": "\t"},
		},
		{
			name:  "maximum nesting depth (10000 with the top-level object)",
			names: []string{"a"},
			in:    `{"a":` + strings.Repeat("[", jrMaxDepth-1) + strings.Repeat("]", jrMaxDepth-1) + `}`,
			want:  kv{"a": strings.Repeat("[", jrMaxDepth-1) + strings.Repeat("]", jrMaxDepth-1)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !json.Valid([]byte(tc.in)) {
				t.Fatalf("test input is not valid JSON")
			}
			d := NewRowDecoder(tc.names)
			row := make([]string, len(tc.names))
			// Decode twice with the same decoder to exercise buffer reuse.
			for range 2 {
				if err := d.Decode([]byte(tc.in), row); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				for j, name := range tc.names {
					want, ok := tc.want[name]
					isNull := slices.Contains(tc.null, name)
					if row[j] != want {
						t.Errorf("row[%d] (%q) = %q, want %q", j, name, row[j], want)
					}
					if got := d.Present(j); got != (ok || isNull) {
						t.Errorf("Present(%d) (%q) = %v, want %v", j, name, got, ok || isNull)
					}
				}
			}
			// The result must agree with encoding/json.
			jrCheckStdlib(t, nil, tc.names, []byte(tc.in))
		})
	}
}

func TestRowDecoderMalformed(t *testing.T) {
	names := []string{"a", "b"}
	tests := []struct {
		in  string
		off int // expected error offset, -1 = not checked
	}{
		{"", 0},
		{"   ", 3},
		{"null", 0},
		{"[]", 0},
		{`"a"`, 0},
		{"1", 0},
		{"{", 1},
		{`{"a"`, 4},
		{`{"a":`, 5},
		{`{"a":1`, 6},
		{`{"a":1,`, 7},
		{`{"a":1,}`, 7},
		{`{,}`, 1},
		{`{"a" 1}`, 5},
		{`{"a":1 "b":2}`, 7},
		{`{a:1}`, 1},
		{`{'a':1}`, 1},
		{`{"a":1}x`, 7},
		{`{"a":1}{}`, 7},
		{`{} {}`, 3},
		{`{"a":tru}`, 8},
		{`{"a":tru`, 8},
		{`{"a":truex}`, 9},
		{`{"a":nul}`, 8},
		{`{"a":True}`, 5},
		{`{"a":falsy}`, 9},
		{`{"a":01}`, 6},
		{`{"a":-}`, 6},
		{`{"a":-a}`, 6},
		{`{"a":1.}`, 7},
		{`{"a":.5}`, 5},
		{`{"a":1e}`, 7},
		{`{"a":1e+}`, 8},
		{`{"a":+1}`, 5},
		{`{"a":0x10}`, 6},
		{`{"a":NaN}`, 5},
		{`{"a":Infinity}`, 5},
		{`{"a":1..2}`, 7},
		{"{\"a\":\"x\ty\"}", 7},
		{"{\"a\":\"x\ny\"}", 7},
		{"{\"a\":\"\x00\"}", 6},
		{`{"a":"\x"}`, 7},
		{`{"a":"\'"}`, 7},
		{`{"a":"\u12"}`, 10},
		{`{"a":"\u12G4"}`, 10},
		{`{"a":"\ud83d\u12"}`, 16},
		{`{"a":"\`, 7},
		{`{"a":"abc}`, 10},
		{`{"a":"abc\"}`, 12},
		{`{"a":[1,2}`, 9},
		{`{"a":[1,2,]}`, 10},
		{`{"a":[1 2]}`, 8},
		{`{"a":{"b":1]}`, 11},
		{`{"a":{"b"}}`, 9},
		{`{"a":{1:2}}`, 6},
		{`{"a":{"b":1,}}`, 12},
		{`{"a":[}`, 6},
		{`{"a":[`, 6},
		{`{"a":{"b":[1,{"c":}]}}`, 18},
		{`{"zz":tru}`, 9},
		{`{"zz":"\q"}`, 8},
		{`{"zz":[1 2]}`, 9},
		{`{"zz":"a` + "\x01" + `"}`, 8},
		{`{"zz":[1,2]]}`, 11},
		{`{"a":1,"a"}`, 10},
		{"\x00{}", 0},
		{"{}\x00", 2},
		{"\v{}", 0},
		{"{\f}", 1},
		{"{}\u00a0", 2},
		{"\ufeff{}", 0},
		{"{\"a\x01\":1}", 3},
		{`{"a\q":1}`, 4},
		{`{"a":1}}`, 7},
		{`{"a":1]`, 6},
		{`{"a":[]]}`, 7},
		{`{"a":{}}}`, 8},
		{`{"a":"x"` + "\x00", 8},
		{`{"a":` + strings.Repeat("[", jrMaxDepth) + strings.Repeat("]", jrMaxDepth) + `}`, -1},
		{`{"zz":` + strings.Repeat(`{"k":`, jrMaxDepth) + "1" + strings.Repeat("}", jrMaxDepth) + `}`, -1},
		{`{"a":` + strings.Repeat("[", 200), -1},
	}
	d := NewRowDecoder(names)
	for _, tc := range tests {
		in := tc.in
		if len(in) > 60 {
			in = in[:60] + "..."
		}
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) {
			if json.Valid([]byte(tc.in)) && jrIsObject([]byte(tc.in)) {
				t.Fatalf("test input is a valid JSON object")
			}
			row := []string{"stale", "stale"}
			err := d.Decode([]byte(tc.in), row)
			if err == nil {
				t.Fatalf("Decode succeeded, want error; row = %.80q", row)
			}
			var de *RowDecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is %T, want *RowDecodeError", err, err)
			}
			if de.Offset < 0 || de.Offset > len(tc.in) {
				t.Errorf("offset %d outside [0, %d]", de.Offset, len(tc.in))
			}
			if tc.off >= 0 && de.Offset != tc.off {
				t.Errorf("error %q: offset %d, want %d", err, de.Offset, tc.off)
			}
			if row[0] != "" || row[1] != "" || d.Present(0) || d.Present(1) {
				t.Errorf("row not cleared after error: %q", row)
			}
		})
	}
}

func TestRowDecoderWrongRowLenPanics(t *testing.T) {
	d := NewRowDecoder([]string{"a", "b"})
	defer func() {
		if recover() == nil {
			t.Fatal("Decode with a short row did not panic")
		}
	}()
	_ = d.Decode([]byte(`{}`), make([]string, 1))
}

func TestRowDecoderAliasing(t *testing.T) {
	// Unescaped values alias msg (no copy); escaped ones live in scratch.
	msg := []byte(`{"a":"plain","b":"esc\n"}`)
	d := NewRowDecoder([]string{"a", "b"})
	row := make([]string, 2)
	if err := d.Decode(msg, row); err != nil {
		t.Fatal(err)
	}
	copy(msg[6:], "PLAIN")
	if row[0] != "PLAIN" {
		t.Errorf("plain value %q does not alias msg", row[0])
	}
	if row[1] != "esc\n" {
		t.Errorf("escaped value = %q", row[1])
	}
}

// TestRowDecoderKeyOrderPrediction decodes a sequence of messages with one
// decoder, so that keys are checked against the order learnt from the
// previous message: order changes, prefixes of other names, escaped
// spellings, long names and keys near the end of the input.
func TestRowDecoderKeyOrderPrediction(t *testing.T) {
	names := []string{"amount", "amount_eur", "merchant_category_code", "é", "", "a/b", "x"}
	d := NewRowDecoder(names)
	for _, msg := range []string{
		`{"amount":1,"amount_eur":2,"merchant_category_code":3,"é":4,"":5,"a/b":6,"x":7}`,
		`{"amount":1,"amount_eur":2,"merchant_category_code":3,"é":4,"":5,"a/b":6,"x":7}`,
		`{"amount_eur":1,"amount":2,"merchant_category_cod":3,"é":4,""":5,"a\/b":6,"x":7}`,
		`{"amoun":1,"amount_eu":2,"merchant_category_code_":3,"éé":4,"":5,"a/b":6,"x":7}`,
		`{"amount":1,"amount_eur":2,"merchant_category_code":3,"é":4,"":5,"a/b":6,"xx":7}`,
		`{"x":1}`,
		`{"x":1,"x":2}`,
		`{"unknown":1,"amount":2}`,
		`{"amount":1,"amount_eur":2,"merchant_category_code":3,"é":4,"":5,"a/b":6,"x":7}`,
		`{"x":{"amount":9}}`,
		`{"x"}`,
		`{"x":1`,
		`{"amount"`,
		`{"x":`,
		`{"am`,
	} {
		jrCheckStdlib(t, d, names, []byte(msg))
	}
}

func TestRowDecoderZeroAllocs(t *testing.T) {
	for _, tc := range []struct{ name, msg string }{
		{"plain", jrTxn20},
		{"escapes", jrTxn20Esc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(tc.msg)
			d := NewRowDecoder(jrTxnNames)
			row := make([]string, len(jrTxnNames))
			if err := d.Decode(msg, row); err != nil { // warm-up: grows scratch
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(1000, func() {
				if err := d.Decode(msg, row); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("Decode allocates %v times per call, want 0", allocs)
			}
		})
	}
}

// jrIsObject reports whether the first non-whitespace byte of msg is '{'.
func jrIsObject(msg []byte) bool {
	msg = bytes.TrimLeft(msg, " \t\r\n")
	return len(msg) > 0 && msg[0] == '{'
}

// jrCheckStdlib decodes msg with d (a new decoder for names if d is nil),
// twice so that the second pass runs with the key order learnt from msg,
// and checks each result against encoding/json:
//   - success implies json.Valid and an object;
//   - if json.Unmarshal into map[string]json.RawMessage succeeds on an
//     object, Decode must succeed and agree on every value.
//
// It returns whether Decode succeeded.
func jrCheckStdlib(t *testing.T, d *RowDecoder, names []string, msg []byte) bool {
	t.Helper()
	if d == nil {
		d = NewRowDecoder(names)
	}
	var m map[string]json.RawMessage
	stdOK := json.Unmarshal(msg, &m) == nil && jrIsObject(msg)
	row := make([]string, len(names))
	var ok bool
	for pass := range 2 {
		err := d.Decode(msg, row)
		if err == nil {
			if !json.Valid(msg) {
				t.Fatalf("pass %d: Decode accepted invalid JSON %q", pass, msg)
			}
			if !jrIsObject(msg) {
				t.Fatalf("pass %d: Decode accepted non-object %q", pass, msg)
			}
		} else {
			var de *RowDecodeError
			if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(msg) {
				t.Fatalf("pass %d: bad error %#v for %q", pass, err, msg)
			}
		}
		ok = err == nil
		if !stdOK {
			continue
		}
		if err != nil {
			t.Fatalf("pass %d: Decode(%q) = %v, but encoding/json accepts it", pass, msg, err)
		}
		for j, name := range names {
			raw, ok := m[name]
			if d.Present(j) != ok {
				t.Fatalf("pass %d: %q: Present(%q) = %v, encoding/json has it: %v", pass, msg, name, d.Present(j), ok)
			}
			var want string
			switch {
			case !ok || string(raw) == "null":
				want = ""
			case raw[0] == '"':
				if err := json.Unmarshal(raw, &want); err != nil {
					t.Fatalf("unmarshal %q: %v", raw, err)
				}
			default:
				want = string(raw)
			}
			if row[j] != want {
				t.Fatalf("pass %d: %q: key %q = %q, encoding/json says %q", pass, msg, name, row[j], want)
			}
			// A number the decoder valued: the value of the last one, as
			// the encoder would parse it from the row.
			if d.numOK[j] {
				x, err := strconv.ParseFloat(want, 64)
				if ok && raw[0] == '"' || err != nil || math.Float64bits(x) != math.Float64bits(d.nums[j]) {
					t.Fatalf("pass %d: %q: key %q valued %v, its value %q (%v)", pass, msg, name, d.nums[j], want, err)
				}
			}
		}
	}
	return ok
}

// jrGen generates random flat JSON objects, mostly valid, exercising
// escapes, surrogates, invalid UTF-8, numbers, literals, nested values and
// whitespace.
type jrGen struct {
	r *rand.Rand
	b []byte
}

var jrGenKeys = []string{"a", "b", "amount", "merchant_name", "é", "k\"q", "", "x y", "😀", "ctrl\x01", "bad\xff"}

func (g *jrGen) ws() {
	for g.r.IntN(4) == 0 {
		g.b = append(g.b, " \t\r\n"[g.r.IntN(4)])
	}
}

func (g *jrGen) hex4(r rune) {
	const hexLower, hexUpper = "0123456789abcdef", "0123456789ABCDEF"
	h := hexLower
	if g.r.IntN(2) == 0 {
		h = hexUpper
	}
	g.b = append(g.b, '\\', 'u', h[r>>12&15], h[r>>8&15], h[r>>4&15], h[r&15])
}

func (g *jrGen) str(s string) {
	g.b = append(g.b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			g.b = append(g.b, s[i]) // raw invalid byte
			i++
			continue
		}
		i += size
		short := map[rune]byte{'"': '"', '\\': '\\', '/': '/', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't'}
		mustEscape := r < 0x20 || r == '"' || r == '\\'
		switch {
		case (mustEscape || r == '/') && short[r] != 0 && g.r.IntN(2) == 0:
			g.b = append(g.b, '\\', short[r])
		case mustEscape || g.r.IntN(4) == 0:
			if r >= 0x10000 {
				r1, r2 := utf16.EncodeRune(r)
				g.hex4(r1)
				g.hex4(r2)
			} else {
				g.hex4(r)
			}
		default:
			g.b = utf8.AppendRune(g.b, r)
		}
	}
	g.b = append(g.b, '"')
}

func (g *jrGen) randString() string {
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f",
		"é", "€", "😀", "\u2028", "\uFFFD", "\x7f", "\xff", "\xe2\x82", "{", "}", "[", "]", ",", ":"}
	var sb strings.Builder
	for n := g.r.IntN(12); n > 0; n-- {
		sb.WriteString(alphabet[g.r.IntN(len(alphabet))])
	}
	return sb.String()
}

func (g *jrGen) number() {
	if g.r.IntN(3) == 0 {
		g.b = append(g.b, '-')
	}
	if g.r.IntN(4) == 0 {
		g.b = append(g.b, '0')
	} else {
		g.b = append(g.b, byte('1'+g.r.IntN(9)))
		for n := g.r.IntN(6); n > 0; n-- {
			g.b = append(g.b, byte('0'+g.r.IntN(10)))
		}
	}
	if g.r.IntN(2) == 0 {
		g.b = append(g.b, '.')
		for n := 1 + g.r.IntN(4); n > 0; n-- {
			g.b = append(g.b, byte('0'+g.r.IntN(10)))
		}
	}
	if g.r.IntN(4) == 0 {
		g.b = append(g.b, "eE"[g.r.IntN(2)])
		if k := g.r.IntN(3); k < 2 {
			g.b = append(g.b, "+-"[k])
		}
		for n := 1 + g.r.IntN(3); n > 0; n-- {
			g.b = append(g.b, byte('0'+g.r.IntN(10)))
		}
	}
}

func (g *jrGen) value(depth int) {
	switch k := g.r.IntN(10); {
	case k < 4:
		g.str(g.randString())
	case k < 6:
		g.number()
	case k == 6:
		g.b = append(g.b, []string{"true", "false", "null"}[g.r.IntN(3)]...)
	case k == 7 && depth < 3:
		g.b = append(g.b, '[')
		for i, n := 0, g.r.IntN(4); i < n; i++ {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.ws()
			g.value(depth + 1)
			g.ws()
		}
		g.b = append(g.b, ']')
	case k == 8 && depth < 3:
		g.object(depth + 1)
	default:
		// Hand-written escapes, incl. lone and reversed surrogates.
		g.b = append(g.b, '"')
		for n := g.r.IntN(4); n > 0; n-- {
			g.hex4([]rune{0xD83D, 0xDE00, 0xD800, 0xDC00, 0xDBFF, 0xDFFF, 0x00E9, 0x0041}[g.r.IntN(8)])
		}
		g.b = append(g.b, '"')
	}
}

func (g *jrGen) object(depth int) {
	g.b = append(g.b, '{')
	for i, n := 0, g.r.IntN(8); i < n; i++ {
		if i > 0 {
			g.b = append(g.b, ',')
		}
		g.ws()
		g.str(jrGenKeys[g.r.IntN(len(jrGenKeys))])
		g.ws()
		g.b = append(g.b, ':')
		g.ws()
		g.value(depth)
		g.ws()
	}
	g.b = append(g.b, '}')
}

// TestRowDecoderMatchesEncodingJSON compares Decode with encoding/json on
// random flat objects, and on random corruptions of them.
func TestRowDecoderMatchesEncodingJSON(t *testing.T) {
	g := &jrGen{r: rand.New(rand.NewPCG(1, 2))}
	names := append(slices.Clone(jrGenKeys), "never")
	shared := NewRowDecoder(names) // reused: exercises key-order mispredictions
	n := 20000
	if testing.Short() {
		n = 2000
	}
	valid := 0
	for range n {
		g.b = g.b[:0]
		g.ws()
		g.object(0)
		g.ws()
		msg := slices.Clone(g.b)
		if !jrCheckStdlib(t, shared, names, msg) {
			t.Fatalf("Decode rejected generated object %q", msg)
		}
		valid++
		// Corrupt: truncate, flip or insert a byte.
		bad := slices.Clone(msg)
		switch g.r.IntN(3) {
		case 0:
			bad = bad[:g.r.IntN(len(bad))]
		case 1:
			bad[g.r.IntN(len(bad))] = byte(g.r.IntN(256))
		case 2:
			p := g.r.IntN(len(bad) + 1)
			bad = slices.Insert(bad, p, `{}[]",:\ae0-.`[g.r.IntN(13)])
		}
		jrCheckStdlib(t, shared, names, bad)
		jrCheckStdlib(t, nil, names, bad)
	}
	t.Logf("%d generated objects agree with encoding/json", valid)
}

var jrFuzzNames = []string{"a", "b", "amount", "", "é"}

// jrFuzzPrime is decoded before each fuzz input so that the input is
// decoded against a learnt key order (mispredictions included).
const jrFuzzPrime = `{"b":1,"a":2,"":3,"é":4,"amount":5,"a":6}`

func FuzzJSONRow(f *testing.F) {
	for _, s := range []string{
		jrTxn20, jrTxn20Esc, `{}`, `{"a":1,"a":null}`, `{"a":"\ud83d\ude00\u00e9"}`,
		`{"a":[1,{"b":"]"}],"b":{"c":[]}}`, " {\"amount\" : -1.5e-3 } ", `{"a":tru}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		names := slices.Clone(jrFuzzNames)
		var m map[string]json.RawMessage
		if json.Unmarshal(msg, &m) == nil {
			for k := range m {
				names = append(names, k)
			}
			slices.Sort(names[len(jrFuzzNames):])
		}
		d := NewRowDecoder(names)
		if err := d.Decode([]byte(jrFuzzPrime), make([]string, len(names))); err != nil {
			t.Fatal(err)
		}
		jrCheckStdlib(t, d, names, msg)
	})
}

func BenchmarkRowDecoder(b *testing.B) {
	for _, bc := range []struct{ name, msg string }{
		{"plain", jrBenchMsg},
		{"escapes", jrBenchMsgEsc},
	} {
		b.Run(bc.name, func(b *testing.B) {
			msg := []byte(bc.msg)
			d := NewRowDecoder(jrBenchNames)
			row := make([]string, len(jrBenchNames))
			if err := d.Decode(msg, row); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(msg, row); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRowDecoderBaselineEncodingJSON is the encoding/json approach
// RowDecoder replaces, for comparison.
func BenchmarkRowDecoderBaselineEncodingJSON(b *testing.B) {
	msg := []byte(jrBenchMsg)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(msg, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRowDecoderMaxKeys: an object with MaxKeys keys decodes, one more key
// is refused with an error that says why, and the decoder goes on.
func TestRowDecoderMaxKeys(t *testing.T) {
	d := NewRowDecoder([]string{"a"})
	d.MaxKeys = 3
	row := make([]string, 1)
	if err := d.Decode([]byte(`{"x":1,"a":"ok","y":[1,2]}`), row); err != nil || row[0] != "ok" {
		t.Fatalf("3 keys: %v %q", err, row[0])
	}
	err := d.Decode([]byte(`{"x":1,"a":"ok","y":2,"z":3}`), row)
	if err == nil || !strings.Contains(err.Error(), "more than 3 keys") || row[0] != "" {
		t.Fatalf("4 keys: %v %q", err, row[0])
	}
	if err := d.Decode([]byte(`{"a":"again"}`), row); err != nil || row[0] != "again" {
		t.Fatalf("after a refusal: %v %q", err, row[0])
	}
	d.MaxKeys = 0 // no limit
	if err := d.Decode([]byte(`{"x":1,"a":"ok","y":2,"z":3}`), row); err != nil {
		t.Fatal(err)
	}
}

// TestNumberFastAgreesWithTheGrammar: wherever the word-at-a-time number
// scanner answers, it ends the number where the byte-by-byte validator
// does, with the value parseDecimal gives the text, bit for bit, and it
// answers for the common shapes.
func TestNumberFastAgreesWithTheGrammar(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const alphabet = "0123456789-.eE+x \xff"
	answered := 0
	for range 200_000 {
		b := make([]byte, 1+rng.IntN(20))
		for k := range b {
			if rng.IntN(3) == 0 {
				b[k] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[k] = byte('0' + rng.IntN(10))
			}
		}
		if rng.IntN(2) == 0 {
			b[0] = '-'
		}
		if !(b[0] == '-' || jrIsDigit(b[0])) {
			continue
		}
		if j, x := jrNumberValue(b, 0); j > 0 {
			answered++
			if want, err := jrNumber(b, 0); err != nil || j != want {
				t.Fatalf("%q: fast end %d, the grammar's %d (%v)", b, j, want, err)
			}
			// The value has the bits the encoder's parse gives the text.
			if want, ok := parseDecimal(string(b[:j])); !ok || math.Float64bits(x) != math.Float64bits(want) {
				t.Fatalf("%q: fast value %v (%#x), parseDecimal's %v (%#x, %v)", b[:j], x, math.Float64bits(x), want, math.Float64bits(want), ok)
			}
			if want, err := strconv.ParseFloat(string(b[:j]), 64); err != nil || x != want {
				t.Fatalf("%q: fast value %v, strconv's %v (%v)", b[:j], x, want, err)
			}
		}
	}
	if answered < 10_000 {
		t.Fatalf("the fast scanner answered %d times", answered)
	}
	// The fraction ends in the number's first word, or past it.
	for _, s := range []string{"123.45,\"x\":1}", "-0.5}        ", "7,        ", "1234567.1234567}", "1.952,\"n\":2}", "123456.7}       ", "123.4567}       ", "1.234567,       "} {
		want, _ := jrNumber([]byte(s), 0)
		j, x := jrNumberValue([]byte(s), 0)
		if v, ok := parseDecimal(s[:want]); j != want || !ok || math.Float64bits(x) != math.Float64bits(v) {
			t.Errorf("%q: fast end %d value %v, want %d %v", s, j, x, want, v)
		}
	}
	for _, s := range []string{"1e5,       ", "12345678,       ", "1.5}", "01,        ", "-x,        ", "1.,        "} {
		if j, _ := jrNumberValue([]byte(s), 0); j != 0 {
			t.Errorf("%q: the fast scanner answered %d, not left it to jrNumber", s, j)
		}
	}
}
