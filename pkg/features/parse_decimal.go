package features

import (
	"encoding/binary"
	"math/bits"
)

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal is the fast path for plain decimals ("-123.45"): when the
// digits fit in 2^53 and there are at most 22 decimals, one exact
// division gives the correctly rounded result (Clinger's fast path), the
// same value strconv.ParseFloat returns. Anything else reports !ok.
//
// A value of 1-8 bytes, the usual case, is parsed as one little-endian
// word with no branch on where it ends, its sign or where its dot is (the
// byte loop's mispredictions): each byte is XORed with '0', so digits
// become their values and the bytes past the end 0, trailing zero digits
// that scale the integer and the divisor alike (exact: both stay below
// 2^53 and the quotient is the same rational number, correctly rounded);
// a sign becomes a leading zero digit; the first dot is cut out; one
// check says whether every byte left is a digit; three multiply-shift
// steps make the integer; the sign is the divisor's. Longer values are
// parsed a byte at a time.
func parseDecimal(s string) (float64, bool) {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	n := uint(len(s))
	if n-1 >= 8 {
		return parseDecimalLoop(s)
	}
	keep := ^uint64(0) >> ((64 - 8*n) & 63) // the n value bytes
	v := (load8(s) ^ 0x3030303030303030) & keep
	// s[0] is '-' (0x1d after the XOR) or '+' (0x1b): clear it.
	c := v & 0xff
	neg := (c ^ 0x1d - 1) >> 63 // 1 or 0
	signed := neg | (c^0x1b-1)>>63
	v &^= -signed & 0xff
	// The lowest '.' (0x1e), exact at the lowest one, which is all we use.
	x := v ^ 0x1e1e1e1e1e1e1e1e
	dot := (x - ones) &^ x & highs
	var hasDot uint64
	if dot != 0 {
		hasDot = 1
	}
	// The high bit of the first dot's byte p, or of the first byte past the
	// end when there is none (p = n; 0 when that is past the word).
	stop := dot | highs&^keep
	stop &= -stop
	low := stop>>7 - 1 // the bytes before p
	v = v&low | v>>8&^low
	// Every byte now a digit value (< 10), and at least one digit.
	if (v+0x7676767676767676|v)&highs != 0 || uint64(n)-signed-hasDot == 0 {
		return 0, false
	}
	// Most significant digit in the lowest byte; pairs, quads, then halves.
	v = v*10 + v>>8
	v = ((v&0x000000ff000000ff)*(100+1000000<<32) + (v>>16&0x000000ff000000ff)*(1+10000<<32)) >> 32
	// The word holds the digits times 10^(8-m) for m digits (the sign's
	// zero included), so divide by 10^(decimals+8-m): 10^(8-p). Dividing
	// by -10^k gives exactly the negated quotient, -0 included.
	p := uint64(bits.TrailingZeros64(stop)) / 8
	return float64(int64(v)) / signedPow10[(neg<<4|(8-p))&31], true
}

// signedPow10 holds 10^0..10^8 and, from index 16, their negations.
var signedPow10 = [32]float64{
	1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 0, 0, 0, 0, 0, 0, 0,
	-1, -1e1, -1e2, -1e3, -1e4, -1e5, -1e6, -1e7, -1e8,
}

// parseDecimalLoop is parseDecimal a byte at a time, for values longer
// than one word.
func parseDecimalLoop(s string) (float64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	i, neg := 0, false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		i = 1
	}
	var mant uint64
	digits, frac := 0, -1
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
			if digits > 15 {
				return 0, false
			}
		case c == '.' && frac < 0:
			frac = 0
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	x := float64(mant)
	if frac > 0 {
		x /= pow10[frac]
	}
	if neg {
		x = -x
	}
	return x, true
}

// load8Safe reads the first 8 bytes of s, little-endian, with zeros past
// its end.
func load8Safe(s string) uint64 {
	if len(s) >= 8 {
		return binary.LittleEndian.Uint64([]byte(s[:8]))
	}
	var b [8]byte
	copy(b[:], s)
	return binary.LittleEndian.Uint64(b[:])
}
