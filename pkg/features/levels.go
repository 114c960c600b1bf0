package features

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// levelTable maps a categorical field's levels to their indexes for the
// encoder's hot path, in place of a map[string]int32 whose string hashing
// and probing showed as ~7% of encoding and scoring the mixed card record.
// It is open addressing with linear probing at a load of at most 1/2,
// keyed by a cheap hash of the length and the first and last eight bytes.
// Each slot keeps those words: for a key of up to 16 bytes they hold every
// byte, so comparing them and the length is comparing the strings (the
// runtime's memequal, a call per lookup, showed as ~2% of a JSON message
// scored with reasons); longer keys also compare the strings when the
// words agree. Built once per vocabulary, read-only afterwards.
type levelTable struct {
	slots []levelSlot
	mask  uint64
}

type levelSlot struct {
	a, b uint64 // levelWords of key
	key  string
	idx  int32 // 0: empty (levels 0 and 1, MISSING and OTHER, are never keys)
}

// newLevelTable indexes levels[2:]; a repeated level keeps its last index,
// as the map it replaces did.
func newLevelTable(levels []string) levelTable {
	n := len(levels) - 2
	if n <= 0 {
		return levelTable{}
	}
	size := 4
	for size < 2*n {
		size *= 2
	}
	t := levelTable{slots: make([]levelSlot, size), mask: uint64(size - 1)}
	for j := 2; j < len(levels); j++ {
		k := levels[j]
		a, b := levelWords(k)
		for i := levelHash(a, b, len(k)) & t.mask; ; i = (i + 1) & t.mask {
			e := &t.slots[i]
			if e.idx == 0 || e.key == k {
				*e = levelSlot{a: a, b: b, key: k, idx: int32(j)}
				break
			}
		}
	}
	return t
}

// lookup returns s's level index, or false when s is not a level.
func (t *levelTable) lookup(s string) (int32, bool) {
	if t.slots == nil {
		return 0, false
	}
	a, b := levelWords(s)
	n := len(s)
	for i := levelHash(a, b, n) & t.mask; ; i = (i + 1) & t.mask {
		e := &t.slots[i]
		if e.idx == 0 {
			return 0, false
		}
		if e.a == a && e.b == b && len(e.key) == n && (n <= 16 || e.key == s) {
			return e.idx, true
		}
	}
}

// levelHash mixes a string's length with its levelWords.
func levelHash(a, b uint64, n int) uint64 {
	hi, lo := bits.Mul64(a^0x9e3779b97f4a7c15, b^uint64(n)<<56^0xd6e8feb86659fd93)
	return hi ^ lo
}

// levelWords returns the first and last eight bytes of s (for shorter
// strings, overlapping 4-byte words or three single bytes), which together
// hold every byte of a string of up to 16. Longer levels that differ only
// in the middle share them and are told apart by the string comparison.
func levelWords(s string) (a, b uint64) {
	n := len(s)
	if n > 0 {
		// A read-only view of the string's bytes: no copy, no allocation.
		p := unsafe.Slice(unsafe.StringData(s), n)
		switch {
		case n >= 8:
			a = binary.LittleEndian.Uint64(p)
			b = binary.LittleEndian.Uint64(p[n-8:])
		case n >= 4:
			a = uint64(binary.LittleEndian.Uint32(p))
			b = uint64(binary.LittleEndian.Uint32(p[n-4:]))
		default:
			a = uint64(p[0])<<16 | uint64(p[n>>1])<<8 | uint64(p[n-1])
		}
	}
	return a, b
}
