package features

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"
)

// TestParseDecimalAtPageEnd: a value whose bytes end at a page boundary
// is read without touching the next page (which may be unmapped) and
// parsed like any other; and load8 agrees with load8Safe on the value's
// bytes at every length and alignment.
func TestParseDecimalAtPageEnd(t *testing.T) {
	buf := make([]byte, 3*4096)
	// The start of the last full page in buf: values end where it starts.
	end := int(4096 - uintptr(unsafe.Pointer(&buf[0]))&4095)
	end += 4096
	for _, v := range []string{"7", "-1", "+.5", "12.5", "-0.25", "123.456", "-1234.56", "12345678", "1.2.3", "-", ".", "1x"} {
		for shift := 0; shift < 8; shift++ { // also a little before the boundary
			at := end - len(v) - shift
			copy(buf[at:], v)
			s := unsafe.String(&buf[at], len(v))
			keep := ^uint64(0) >> (64 - 8*len(v))
			if got, want := load8(s)&keep, load8Safe(s)&keep; got != want {
				t.Fatalf("%q %d bytes before a page end: load8 %#x, load8Safe %#x", v, shift, got, want)
			}
			got, ok := parseDecimal(s)
			want, err := strconv.ParseFloat(v, 64)
			if ok != (err == nil) || ok && math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%q at a page end: %v (ok %v), strconv %v (%v)", v, got, ok, want, err)
			}
		}
	}
}

// BenchmarkParseDecimalStream: BenchmarkParseDecimal's values, but 65,536
// of them, too many for a branch predictor to learn where each ends, its
// sign and its dot, as in a stream of transactions (on BenchmarkParseDecimal's
// 1,024 repeating values it learns them).
func BenchmarkParseDecimalStream(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	vals := make([]string, 1<<16)
	for i := range vals {
		vals[i] = strconv.FormatFloat(math.Round(rng.NormFloat64()*3000)/1000, 'f', -1, 64)
	}
	var sum float64
	for i := 0; b.Loop(); i++ {
		x, _ := parseDecimal(vals[i&(1<<16-1)])
		sum += x
	}
	_ = sum
}
