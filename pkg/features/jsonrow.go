package features

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// jrMaxDepth is the maximum nesting depth of containers, the top-level
// object included. It matches encoding/json, so that every input accepted
// by RowDecoder is also accepted by json.Valid.
const jrMaxDepth = 10000

// jrPat holds name+`"` (when at most 16 bytes) as two little-endian words
// and masks, so that a predicted key is checked with two loads.
type jrPat struct {
	w0, w1, m0, m1 uint64
	n              int // len(name) + 1; 0 if unused
}

// jrMaxOrder bounds the number of key positions remembered for prediction.
const jrMaxOrder = 256

// RowDecodeError reports malformed input to RowDecoder.Decode.
type RowDecodeError struct {
	Offset int    // byte offset in the message where the problem was detected
	Msg    string // description of the problem
}

func (e *RowDecodeError) Error() string {
	return "features: invalid JSON row at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

func jrErr(off int, msg string) error { return &RowDecodeError{Offset: off, Msg: msg} }

func jrEOF(msg []byte) error { return jrErr(len(msg), "unexpected end of input") }

// jrUnexpected reports the byte at msg[i], or the end of input when i is
// past the end.
func jrUnexpected(msg []byte, i int, context string) error {
	if i >= len(msg) {
		return jrEOF(msg)
	}
	return jrErr(i, "invalid character "+strconv.QuoteRune(rune(msg[i]))+" "+context)
}

// jrSlot is one entry of the open-addressed key table.
type jrSlot struct {
	hash uint32
	idx  int32 // index into names; -1 for an empty slot
}

// RowDecoder extracts the values of a fixed set of top-level keys from flat
// JSON objects (one message value per call), without building a generic
// representation and without allocating in the steady state.
//
// For each wanted key, Decode yields:
//   - JSON strings: the unescaped text. Invalid UTF-8 and unpaired UTF-16
//     surrogate escapes are replaced by U+FFFD, exactly as encoding/json does.
//   - numbers: their literal text, e.g. "12.50" or "-3e5".
//   - true/false: "true" / "false".
//   - null: "" (Present reports true).
//   - objects and arrays: their raw JSON text, validated.
//   - absent keys: "" (Present reports false).
//
// Unknown keys are skipped but still validated; on duplicate keys the last
// one wins. Key matching is exact and happens after unescaping the key.
//
// Lifetime of results: the strings that Decode stores in row alias either
// msg itself (values that needed no unescaping, numbers, literals, nested
// values) or an internal scratch buffer of the decoder (strings that
// contained escapes or invalid UTF-8). They are valid only until the next
// call to Decode on the same decoder, and only as long as msg is not
// modified or reused (e.g. a Kafka client recycling its fetch buffer).
// Callers that keep a value longer must copy it, e.g. with strings.Clone.
//
// A RowDecoder is not safe for concurrent use; use one per goroutine.
type RowDecoder struct {
	// MaxKeys, when above zero, makes Decode refuse an object with more
	// top-level keys than this: the work per message is bounded by its
	// bytes anyway, but a record with thousands of keys is not a
	// transaction, and the streaming path sends it aside.
	MaxKeys int

	names   []string
	table   []jrSlot
	mask    uint32
	dupOf   []int32 // dupOf[j] >= 0: names[j] repeats names[dupOf[j]]; nil when names are distinct
	present []bool
	// nums[j] is names[j]'s value when numOK[j]: a number in the usual
	// form, whose value the decoder computed from the digits it read to
	// validate it (Encoder.EncodeDecoded uses it instead of parsing the
	// text again).
	nums    []float64
	numOK   []bool
	scratch []byte // unescaped string values of the current message
	keyBuf  []byte // unescaped key being looked up

	// Key-order prediction: producers emit keys in a stable order, so
	// order[p] remembers which wanted key (index into names) came p-th in
	// the previous message, or -1. A key whose raw bytes equal the
	// predicted name is matched without unescaping, hashing or probing.
	order     []int32
	plainName []bool  // names[j] can be matched against raw key bytes
	pat       []jrPat // names[j]+`"` as masked words, for short plain names

	stack [(jrMaxDepth + 63) / 64]uint64 // container kinds (1 = object) in skipContainer
}

// NewRowDecoder returns a decoder that extracts the named top-level keys, in
// the order of names. Names are matched exactly (case-sensitively) against
// the unescaped keys. If a name is listed more than once, every position
// receives the value.
func NewRowDecoder(names []string) *RowDecoder {
	d := &RowDecoder{
		names:   append([]string(nil), names...),
		present: make([]bool, len(names)),
		nums:    make([]float64, len(names)),
		numOK:   make([]bool, len(names)),
		order:   make([]int32, 0, 32),
	}
	d.plainName = make([]bool, len(names))
	for j, name := range names {
		// A raw key equal to name followed by '"' is the key name exactly
		// when name has no quote, backslash, control character or invalid
		// UTF-8 (which would be escaped or replaced in a JSON string).
		d.plainName[j] = utf8.ValidString(name) && !strings.ContainsFunc(name, func(r rune) bool {
			return r < 0x20 || r == '"' || r == '\\'
		})
	}
	d.pat = make([]jrPat, len(names))
	for j, name := range names {
		if !d.plainName[j] || len(name)+1 > 16 {
			continue
		}
		var buf [16]byte
		k := copy(buf[:], name)
		buf[k] = '"'
		var mask [16]byte
		for x := 0; x <= k; x++ {
			mask[x] = 0xff
		}
		d.pat[j] = jrPat{
			w0: binary.LittleEndian.Uint64(buf[:]), w1: binary.LittleEndian.Uint64(buf[8:]),
			m0: binary.LittleEndian.Uint64(mask[:]), m1: binary.LittleEndian.Uint64(mask[8:]),
			n: k + 1,
		}
	}
	size := 8
	for size < 4*len(names) {
		size <<= 1
	}
	d.table = make([]jrSlot, size)
	d.mask = uint32(size - 1)
	for i := range d.table {
		d.table[i].idx = -1
	}
	for j, name := range d.names {
		if first := d.lookup([]byte(name)); first >= 0 {
			if d.dupOf == nil {
				d.dupOf = make([]int32, len(names))
				for k := range d.dupOf {
					d.dupOf[k] = -1
				}
			}
			d.dupOf[j] = int32(first)
			continue
		}
		h := jrHash([]byte(name))
		p := h & d.mask
		for d.table[p].idx >= 0 {
			p = (p + 1) & d.mask
		}
		d.table[p] = jrSlot{hash: h, idx: int32(j)}
	}
	return d
}

// Present reports whether key i (an index into the names given to
// NewRowDecoder) appeared in the last successfully decoded message, even
// with a null value.
func (d *RowDecoder) Present(i int) bool { return d.present[i] }

// jrHash is a cheap, constant-time hash of a key (length plus the first and
// last up to 8 bytes). Collisions only cost a probe: the table is built from
// the configured names and full keys are compared.
func jrHash(k []byte) uint32 {
	n := len(k)
	var x uint64
	switch {
	case n >= 8:
		x = binary.LittleEndian.Uint64(k) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(k[n-8:]), 31)
	case n >= 4:
		x = uint64(binary.LittleEndian.Uint32(k)) | uint64(binary.LittleEndian.Uint32(k[n-4:]))<<32
	case n > 0:
		x = uint64(k[0]) | uint64(k[n/2])<<8 | uint64(k[n-1])<<16
	}
	x ^= uint64(n) << 56
	x *= 0x9E3779B97F4A7C15
	x ^= x >> 29
	return uint32(x >> 32)
}

// lookup returns the index of the first name equal to k, or -1.
func (d *RowDecoder) lookup(k []byte) int {
	h := jrHash(k)
	p := h & d.mask
	for {
		s := d.table[p]
		if s.idx < 0 {
			return -1
		}
		if s.hash == h && d.names[s.idx] == string(k) {
			return int(s.idx)
		}
		p = (p + 1) & d.mask
	}
}

// jrBytesString returns b as a string without copying.
func jrBytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Decode parses msg, which must be a single JSON object with optional
// surrounding whitespace, and stores in row[j] the value of key names[j]
// (see RowDecoder for the representation and lifetime of the values).
// It panics if len(row) != len(names). On error, which is a
// *RowDecodeError carrying the byte offset, all of row is set to "" and
// Present reports false for every key.
func (d *RowDecoder) Decode(msg []byte, row []string) error {
	if len(row) != len(d.names) {
		panic("features: RowDecoder.Decode: len(row) = " + strconv.Itoa(len(row)) +
			", want " + strconv.Itoa(len(d.names)))
	}
	clear(row)
	clear(d.present)
	clear(d.numOK)
	d.scratch = d.scratch[:0]
	if err := d.decode(msg, row); err != nil {
		clear(row)
		clear(d.present)
		clear(d.numOK)
		return err
	}
	if d.dupOf != nil {
		for j, first := range d.dupOf {
			if first >= 0 {
				row[j] = row[first]
				d.present[j] = d.present[first]
				d.nums[j], d.numOK[j] = d.nums[first], d.numOK[first]
			}
		}
	}
	return nil
}

func (d *RowDecoder) decode(msg []byte, row []string) error {
	n := len(msg)
	i := jrSkipWS(msg, 0)
	if i >= n || msg[i] != '{' {
		return jrUnexpected(msg, i, "looking for beginning of object")
	}
	i = jrSkipWS(msg, i+1)
	if i < n && msg[i] == '}' {
		i++
	} else {
		for pos := 0; ; pos++ {
			if pos == d.MaxKeys && d.MaxKeys > 0 {
				return jrErr(i, "more than "+strconv.Itoa(d.MaxKeys)+" keys: not a transaction record")
			}
			// Key.
			if i >= n || msg[i] != '"' {
				return jrUnexpected(msg, i, "looking for beginning of object key string")
			}
			slot := -1
			if pos < len(d.order) {
				if s := d.order[pos]; s >= 0 {
					if p := &d.pat[s]; p.n != 0 && i+17 <= n {
						x0 := binary.LittleEndian.Uint64(msg[i+1:])
						x1 := binary.LittleEndian.Uint64(msg[i+9:])
						if x0&p.m0 == p.w0 && x1&p.m1 == p.w1 {
							slot = int(s)
							i += 1 + p.n // past the closing quote
						}
					} else {
						name := d.names[s]
						if e := i + 1 + len(name); e < n && msg[e] == '"' && string(msg[i+1:e]) == name {
							slot = int(s)
							i = e + 1
						}
					}
				}
			}
			var err error
			if slot < 0 {
				d.keyBuf = d.keyBuf[:0]
				var key []byte
				key, i, err = jrUnquote(msg, i, &d.keyBuf)
				if err != nil {
					return err
				}
				slot = d.lookup(key)
				if pos < jrMaxOrder {
					s := int32(-1)
					if slot >= 0 && d.plainName[slot] {
						s = int32(slot)
					}
					if pos < len(d.order) {
						d.order[pos] = s
					} else if pos == len(d.order) {
						d.order = append(d.order, s)
					}
				}
			}
			if i+1 < n && msg[i] == ':' && msg[i+1] > ' ' {
				i++ // compact JSON: the value follows the colon
			} else {
				i = jrSkipWS(msg, i)
				if i >= n || msg[i] != ':' {
					return jrUnexpected(msg, i, "after object key")
				}
				i = jrSkipWS(msg, i+1)
				if i >= n {
					return jrEOF(msg)
				}
			}

			// Value.
			if slot < 0 {
				i, err = d.skipValue(msg, i)
				if err != nil {
					return err
				}
			} else {
				var val string
				start := i
				d.numOK[slot] = false // a repeated key's last value wins, number or not
				switch c := msg[i]; {
				case c == '"':
					var b []byte
					b, i, err = jrUnquote(msg, i, &d.scratch)
					val = jrBytesString(b)
				case c == '{' || c == '[':
					i, err = d.skipContainer(msg, i)
					val = jrBytesString(msg[start:i])
				case c == 'n':
					i, err = jrLiteral(msg, i, "null")
				case jrNumberStart[c]: // '-' or a digit in one lookup, not two comparisons that branch on the sign
					if j, x := jrNumberValue(msg, i); j > 0 {
						i = j
						d.nums[slot], d.numOK[slot] = x, true
					} else {
						i, err = jrNumber(msg, i)
					}
					val = jrBytesString(msg[start:i])
				default:
					i, err = d.skipValue(msg, i)
					val = jrBytesString(msg[start:i])
				}
				if err != nil {
					return err
				}
				row[slot] = val
				d.present[slot] = true
			}

			// Separator.
			i = jrSkipWS(msg, i)
			if i >= n {
				return jrEOF(msg)
			}
			if msg[i] == ',' {
				i = jrSkipWS(msg, i+1)
				continue
			}
			if msg[i] == '}' {
				i++
				break
			}
			return jrUnexpected(msg, i, "after object key:value pair")
		}
	}
	i = jrSkipWS(msg, i)
	if i < n {
		return jrUnexpected(msg, i, "after top-level value")
	}
	return nil
}

func jrSkipWS(msg []byte, i int) int {
	// One comparison in the usual case, no whitespace: the four
	// whitespace bytes are all at most ' '.
	for i < len(msg) && msg[i] <= ' ' {
		switch msg[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue validates the value starting at msg[i] (i < len(msg)) and
// returns the offset just past it.
func (d *RowDecoder) skipValue(msg []byte, i int) (int, error) {
	switch c := msg[i]; {
	case c == '"':
		return jrSkipString(msg, i)
	case c == '{' || c == '[':
		return d.skipContainer(msg, i)
	case c == 't':
		return jrLiteral(msg, i, "true")
	case c == 'f':
		return jrLiteral(msg, i, "false")
	case c == 'n':
		return jrLiteral(msg, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		if j, _ := jrNumberValue(msg, i); j > 0 {
			return j, nil
		}
		return jrNumber(msg, i)
	}
	return i, jrUnexpected(msg, i, "looking for beginning of value")
}

func jrLiteral(msg []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(msg) {
			return i, jrEOF(msg)
		}
		if msg[i+k] != lit[k] {
			return i, jrUnexpected(msg, i+k, "in literal "+lit)
		}
	}
	return i + len(lit), nil
}

func jrIsDigit(c byte) bool { return c >= '0' && c <= '9' }

// jrDigits returns how many of the 8 bytes at msg[j] (j+8 <= len(msg))
// are ASCII digits before the first that is not (8: all are). One word
// instead of a loop whose exit the branch predictor misses on every
// number of a new length.
func jrDigits(msg []byte, j int) int {
	return bits.TrailingZeros64(jrNotDigits(binary.LittleEndian.Uint64(msg[j:]))) >> 3
}

// jrNotDigits sets the high bit of each byte of w that is not an ASCII
// digit, and no other bit.
func jrNotDigits(w uint64) uint64 {
	const lo7, ten, high = 0x7f7f7f7f7f7f7f7f, 0x7676767676767676, 0x8080808080808080
	x := w ^ 0x3030303030303030 // a digit becomes 0-9
	// High bit set: the byte is 10 or more, or was non-ASCII (no carry
	// crosses bytes: 0x7f + 0x76 < 0x100).
	return ((x & lo7) + ten | x) & high
}

// jrNumberValue returns the end and the value of the number starting at
// msg[i] when it is the common -?(0|[1-9][0-9]*)(\.[0-9]+)? with each
// digit run under 8 bytes, read a word at a time, and 0 otherwise (an
// exponent, a long run, the message's last bytes, or not a number):
// jrNumber decides those. The value is the digits as one integer over a
// power of ten, one correctly rounded division as parseDecimal's, so it
// has parseDecimal's bits for the same text.
func jrNumberValue(msg []byte, i int) (int, float64) {
	// The sign without a branch: half the numbers of a field may be
	// negative, in no order a predictor can learn.
	var neg uint64
	if msg[i] == '-' {
		neg = 1
	}
	j := i + int(neg)
	if j+8 > len(msg) {
		return 0, 0
	}
	w := binary.LittleEndian.Uint64(msg[j:])
	nd := jrNotDigits(w)
	k := bits.TrailingZeros64(nd) >> 3
	if k == 0 || k == 8 || (k > 1 && msg[j] == '0') {
		return 0, 0
	}
	mant := swarDigits(w, k)
	frac := 0
	switch {
	case msg[j+k] != '.':
		j += k
	case nd&(nd-1) != 0:
		// The fraction ends in the same word ("-1.952," "117.79,"): its end
		// comes from the mask in hand, not from a second load at the
		// point, which lengthened the chain that finds where the next key
		// begins.
		e := bits.TrailingZeros64(nd&(nd-1)) >> 3
		if frac = e - k - 1; frac == 0 {
			return 0, 0
		}
		mant = mant*pow10u[frac] + swarDigits(w>>(8*uint(k+1)), frac)
		j += e
	default:
		j += k + 1
		if j+8 > len(msg) {
			return 0, 0
		}
		w = binary.LittleEndian.Uint64(msg[j:])
		if frac = jrDigits(msg, j); frac == 0 || frac == 8 {
			return 0, 0
		}
		mant = mant*pow10u[frac] + swarDigits(w, frac)
		j += frac
	}
	if c := msg[j]; c == 'e' || c == 'E' {
		return 0, 0
	}
	x := float64(mant) / pow10[frac]
	return j, math.Float64frombits(math.Float64bits(x) | neg<<63)
}

// pow10u holds 10^0..10^7 as integers.
var pow10u = [8]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7}

// swarDigits returns the value of the k (1 to 7) ASCII digits in w's low
// bytes, the first digit lowest: shifted so that they end at the top byte
// (zeros before them are leading zeros), then summed in pairs, quads and
// halves as parseDecimal does.
func swarDigits(w uint64, k int) uint64 {
	v := (w ^ 0x3030303030303030) << (64 - 8*uint(k))
	v = v*10 + v>>8
	return ((v&0x000000ff000000ff)*(100+1000000<<32) + (v>>16&0x000000ff000000ff)*(1+10000<<32)) >> 32
}

// jrNumber validates the number starting at msg[i] against the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns its end.
func jrNumber(msg []byte, i int) (int, error) {
	n := len(msg)
	j := i
	if msg[j] == '-' {
		j++
	}
	if j >= n {
		return j, jrEOF(msg)
	}
	switch c := msg[j]; {
	case c == '0':
		j++
	case c >= '1' && c <= '9':
		j++
		for j < n && jrIsDigit(msg[j]) {
			j++
		}
	default:
		return j, jrUnexpected(msg, j, "in numeric literal")
	}
	if j < n && msg[j] == '.' {
		j++
		if j >= n || !jrIsDigit(msg[j]) {
			return j, jrUnexpected(msg, j, "after decimal point in numeric literal")
		}
		for j < n && jrIsDigit(msg[j]) {
			j++
		}
	}
	if j < n && (msg[j] == 'e' || msg[j] == 'E') {
		j++
		if j < n && (msg[j] == '+' || msg[j] == '-') {
			j++
		}
		if j >= n || !jrIsDigit(msg[j]) {
			return j, jrUnexpected(msg, j, "in exponent of numeric literal")
		}
		for j < n && jrIsDigit(msg[j]) {
			j++
		}
	}
	return j, nil
}

// jrNumberStart marks the bytes a JSON number starts with.
var jrNumberStart = func() (t [256]bool) {
	t['-'] = true
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	return t
}()

// jrPlain[c] is true for bytes that stand for themselves inside a JSON
// string and need no further checks: printable ASCII other than '"' and '\\'.
var jrPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	jrLo = 0x0101010101010101
	jrHi = 0x8080808080808080
)

// jrSpecial8 returns a mask whose lowest set bit is the high bit of the
// first byte of x (in little-endian order) that is not plain: '"', '\\',
// a control character or a non-ASCII byte. Bits above it are meaningless.
// It is zero when all 8 bytes are plain.
func jrSpecial8(x uint64) uint64 {
	q := x ^ (jrLo * '"')
	b := x ^ (jrLo * '\\')
	return ((q-jrLo)&^q | (b-jrLo)&^b | (x - jrLo*0x20) | x) & jrHi
}

// jrSkipPlain returns the offset of the first byte at or after j that is
// not plain (see jrPlain), or len(msg).
func jrSkipPlain(msg []byte, j int) int {
	for j+8 <= len(msg) {
		if m := jrSpecial8(binary.LittleEndian.Uint64(msg[j:])); m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	for j < len(msg) && jrPlain[msg[j]] {
		j++
	}
	return j
}

// jrSkipString validates the string starting at msg[i] == '"' and returns
// the offset just past its closing quote. Like json.Valid, it does not
// check UTF-8.
func jrSkipString(msg []byte, i int) (int, error) {
	n := len(msg)
	j := i + 1
	for {
		j = jrSkipPlain(msg, j)
		if j >= n {
			break
		}
		c := msg[j]
		switch {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			if j+1 >= n {
				return j, jrEOF(msg)
			}
			switch msg[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if _, err := jrHex4(msg, j+2); err != nil {
					return j, err
				}
				j += 6
			default:
				return j, jrUnexpected(msg, j+1, "in string escape code")
			}
		case c < 0x20:
			return j, jrUnexpected(msg, j, "in string literal")
		default:
			j++
		}
	}
	return j, jrEOF(msg)
}

// jrHex4 decodes the 4 hex digits at msg[i:i+4].
func jrHex4(msg []byte, i int) (rune, error) {
	var r rune
	for k := i; k < i+4; k++ {
		if k >= len(msg) {
			return -1, jrEOF(msg)
		}
		c := msg[k]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1, jrUnexpected(msg, k, "in \\u hexadecimal character escape")
		}
		r = r<<4 | rune(c)
	}
	return r, nil
}

// jrUnquote decodes the string starting at msg[i] == '"' and returns its
// text and the offset just past the closing quote. When the string needs
// no transformation the text aliases msg; otherwise it is appended to *buf
// and aliases *buf (bytes already in *buf are never modified).
func jrUnquote(msg []byte, i int, buf *[]byte) ([]byte, int, error) {
	n := len(msg)
	j := i + 1
	// Fast path: plain ASCII and valid UTF-8 can be returned as is.
	for {
		j = jrSkipPlain(msg, j)
		if j >= n {
			return nil, j, jrEOF(msg)
		}
		c := msg[j]
		if c == '"' {
			return msg[i+1 : j], j + 1, nil
		}
		if c < utf8.RuneSelf {
			break // escape or control character
		}
		r, size := utf8.DecodeRune(msg[j:])
		if r == utf8.RuneError && size == 1 {
			break // invalid UTF-8: needs replacement
		}
		j += size
	}

	// Slow path: copy into *buf, unescaping.
	b := *buf
	start := len(b)
	b = append(b, msg[i+1:j]...)
	for {
		if j >= n {
			*buf = b
			return nil, j, jrEOF(msg)
		}
		c := msg[j]
		switch {
		case jrPlain[c]:
			k := jrSkipPlain(msg, j+1)
			b = append(b, msg[j:k]...)
			j = k
		case c == '"':
			*buf = b
			return b[start:], j + 1, nil
		case c == '\\':
			if j+1 >= n {
				*buf = b
				return nil, j, jrEOF(msg)
			}
			switch e := msg[j+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
				j += 2
			case 'b':
				b = append(b, '\b')
				j += 2
			case 'f':
				b = append(b, '\f')
				j += 2
			case 'n':
				b = append(b, '\n')
				j += 2
			case 'r':
				b = append(b, '\r')
				j += 2
			case 't':
				b = append(b, '\t')
				j += 2
			case 'u':
				r, err := jrHex4(msg, j+2)
				if err != nil {
					*buf = b
					return nil, j, err
				}
				j += 6
				if utf16.IsSurrogate(r) {
					// A valid pair decodes to one rune; anything else is
					// replaced by U+FFFD and the following escape, if
					// any, is decoded on its own (as encoding/json does).
					r2 := rune(-1)
					if j+1 < n && msg[j] == '\\' && msg[j+1] == 'u' {
						r2, _ = jrHex4(msg, j+2)
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						j += 6
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				*buf = b
				return nil, j + 1, jrUnexpected(msg, j+1, "in string escape code")
			}
		case c < 0x20:
			*buf = b
			return nil, j, jrUnexpected(msg, j, "in string literal")
		default:
			r, size := utf8.DecodeRune(msg[j:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, msg[j:j+size]...)
			}
			j += size
		}
	}
}

// skipContainer validates the object or array starting at msg[i] (a '{' or
// '[' nested inside the top-level object) and returns the offset just past
// its closing bracket. It is iterative: the kinds of the open containers
// are kept in a bit stack (1 = object), so hostile nesting cannot overflow
// the goroutine stack.
func (d *RowDecoder) skipContainer(msg []byte, i int) (int, error) {
	n := len(msg)
	depth := 0 // containers open inside this value
	var err error
	var inObj bool

open: // msg[i] is '{' or '['
	if depth >= jrMaxDepth-1 { // the top-level object is one level
		return i, jrErr(i, "exceeded max nesting depth")
	}
	inObj = msg[i] == '{'
	if inObj {
		d.stack[depth>>6] |= 1 << (depth & 63)
	} else {
		d.stack[depth>>6] &^= 1 << (depth & 63)
	}
	depth++
	i = jrSkipWS(msg, i+1)
	if i >= n {
		return i, jrEOF(msg)
	}
	if inObj {
		if msg[i] == '}' {
			i++
			goto closed
		}
		goto key
	}
	if msg[i] == ']' {
		i++
		goto closed
	}
	goto value

key: // i < n
	if msg[i] != '"' {
		return i, jrUnexpected(msg, i, "looking for beginning of object key string")
	}
	if i, err = jrSkipString(msg, i); err != nil {
		return i, err
	}
	i = jrSkipWS(msg, i)
	if i >= n || msg[i] != ':' {
		return i, jrUnexpected(msg, i, "after object key")
	}
	i = jrSkipWS(msg, i+1)
	if i >= n {
		return i, jrEOF(msg)
	}

value: // i < n
	if c := msg[i]; c == '{' || c == '[' {
		goto open
	}
	if i, err = d.skipValue(msg, i); err != nil {
		return i, err
	}

after: // a value inside the container at depth-1 ended at i
	i = jrSkipWS(msg, i)
	if i >= n {
		return i, jrEOF(msg)
	}
	inObj = d.stack[(depth-1)>>6]&(1<<((depth-1)&63)) != 0
	switch msg[i] {
	case ',':
		i = jrSkipWS(msg, i+1)
		if i >= n {
			return i, jrEOF(msg)
		}
		if inObj {
			goto key
		}
		goto value
	case '}':
		if !inObj {
			return i, jrUnexpected(msg, i, "after array element")
		}
		i++
		goto closed
	case ']':
		if inObj {
			return i, jrUnexpected(msg, i, "after object key:value pair")
		}
		i++
		goto closed
	}
	if inObj {
		return i, jrUnexpected(msg, i, "after object key:value pair")
	}
	return i, jrUnexpected(msg, i, "after array element")

closed:
	depth--
	if depth == 0 {
		return i, nil
	}
	goto after
}
