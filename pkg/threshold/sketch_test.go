package threshold

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// sketchBlob builds a blob by hand: header fields, then counts.
func sketchBlob(alpha float64, zeros uint64, offset int64, n uint32, counts ...uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, math.Float64bits(alpha))
	b = binary.LittleEndian.AppendUint64(b, zeros)
	b = binary.LittleEndian.AppendUint64(b, uint64(offset))
	b = binary.LittleEndian.AppendUint32(b, n)
	for _, c := range counts {
		b = binary.AppendUvarint(b, c)
	}
	return b
}

// TestUnmarshalSketchRefusesHostileBlobs: the blobs a writer to Redis could
// plant are refused with an error that names the problem, among them the
// 28-byte sketch of 1e18 zeros that moved every fleet threshold, and counts
// that wrap a uint64 around to a small total.
func TestUnmarshalSketchRefusesHostileBlobs(t *testing.T) {
	cases := map[string]struct {
		blob  []byte
		count bool // refused as ErrSketchCount
	}{
		"1e18 zeros":               {sketchBlob(0.01, 1e18, 0, 0), true},
		"2^53+1 zeros":             {sketchBlob(0.01, MaxSketchCount+1, 0, 0), true},
		"counts wrapping around":   {sketchBlob(0.01, 5, 0, 2, 1<<63, 1<<63), true},
		"counts past 2^53":         {sketchBlob(0.01, 0, 0, 2, MaxSketchCount, 1), true},
		"NaN accuracy":             {sketchBlob(math.NaN(), 1, 0, 0), false},
		"negative accuracy":        {sketchBlob(-0.01, 1, 0, 0), false},
		"accuracy 1e-300":          {sketchBlob(1e-300, 0, 0, 1, 1), false},
		"offset past the top":      {sketchBlob(0.01, 0, math.MaxInt64, 1, 1), false},
		"buckets past the top":     {sketchBlob(0.01, 0, 35000, 1000, make([]uint64, 1000)...), false},
		"offset below minPositive": {sketchBlob(0.01, 0, -5000, 1, 1), false},
		"4097 buckets":             {sketchBlob(0.01, 0, 0, 4097, make([]uint64, 4097)...), false},
		"4096 buckets, no counts":  {sketchBlob(0.01, 0, 0, 4096), false},
	}
	for name, tc := range cases {
		_, err := UnmarshalSketch(tc.blob)
		if err == nil {
			t.Errorf("%s: decoded", name)
		} else if errors.Is(err, ErrSketchCount) != tc.count {
			t.Errorf("%s: %v (a count error: %v)", name, err, errors.Is(err, ErrSketchCount))
		}
	}
	// Legitimate extremes still decode: every bucket a positive float64
	// can reach, at the top and the bottom, and the largest total.
	s := NewSketch(0.01)
	for _, x := range []float64{minPositive * 1.0000001, 1, math.MaxFloat64, math.Inf(1)} {
		s.Add(x)
	}
	s.AddN(0, MaxSketchCount-s.Count())
	blob, _ := s.MarshalBinary()
	back, err := UnmarshalSketch(blob)
	if err != nil || back.Count() != MaxSketchCount {
		t.Fatalf("extreme sketch: %v", err)
	}
}

// TestUnmarshalSketchAllocationIsBounded: a 28-byte header that claims the
// most buckets allocates nothing for them; it used to allocate 32 KiB.
func TestUnmarshalSketchAllocationIsBounded(t *testing.T) {
	blob := sketchBlob(0.01, 0, 0, maxBuckets)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := UnmarshalSketch(blob); err == nil {
			t.Fatal("decoded a header without its counts")
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 100<<10 {
		t.Errorf("100 decodes of a 28-byte blob allocated %d KiB", n>>10)
	}
}

// TestSketchInfinity: an infinite score lands in the top bucket; it made
// grow panic (int(+Inf) is undefined), which would have taken a scorer down.
func TestSketchInfinity(t *testing.T) {
	s := NewSketch(0.01)
	s.Add(1)
	s.Add(math.Inf(1))
	if s.Count() != 2 || s.Above(1e300) != 1 || math.IsInf(s.Quantile(1), 0) || !(s.Quantile(1) > 1e300) {
		t.Fatalf("count %d, above 1e300 %d, max %v", s.Count(), s.Above(1e300), s.Quantile(1))
	}
}

// FuzzSketch: whatever the bytes, UnmarshalSketch either refuses them or
// returns a sketch within its bounds that re-encodes to the same sketch and
// that merges, subtracts and answers quantiles without panicking.
// Seeds: testdata/fuzz/FuzzSketch and those added here.
func FuzzSketch(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	w := NewSketch(0.01)
	for range 50_000 {
		w.Add(math.Exp(rng.NormFloat64()))
	}
	blob, _ := w.MarshalBinary()
	f.Add(blob)
	f.Add(sketchBlob(0.01, 1e18, 0, 0))
	f.Add(sketchBlob(0.01, 5, 0, 2, 1<<63, 1<<63))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalSketch(b)
		if err != nil {
			return
		}
		if s.Count() > MaxSketchCount || len(s.counts) > maxBuckets {
			t.Fatalf("decoded %d values in %d buckets", s.Count(), len(s.counts))
		}
		again, _ := s.MarshalBinary()
		back, err := UnmarshalSketch(again)
		if err != nil {
			t.Fatalf("re-encoded sketch does not decode: %v", err)
		}
		if back.Count() != s.Count() || back.zeros != s.zeros || len(back.counts) != len(s.counts) {
			t.Fatalf("round trip: %d values, %d zeros, %d buckets; want %d, %d, %d",
				back.Count(), back.zeros, len(back.counts), s.Count(), s.zeros, len(s.counts))
		}
		for k, c := range s.counts {
			if back.counts[k] != c || back.offset != s.offset {
				t.Fatalf("round trip: bucket %d", k)
			}
		}
		m := NewSketch(s.Alpha())
		if err := m.Merge(s); err != nil || m.Count() != s.Count() {
			t.Fatalf("merged into an empty sketch: %d values of %d, %v", m.Count(), s.Count(), err)
		}
		if s.Count() > 0 && math.IsNaN(m.Quantile(0.995)) {
			t.Fatal("NaN quantile of a non-empty sketch")
		}
		_ = m.Above(1)
		if m.Subtract(s); m.Count() != 0 {
			t.Fatalf("subtracting the merged sketch left %d values", m.Count())
		}
	})
}

// TestSketchGrowsDownInPlace: a reset sketch refilled with ever smaller
// values (its lowest bucket moving down, shifted within the capacity it
// kept) counts as a fresh one does, without allocating once it has room.
func TestSketchGrowsDownInPlace(t *testing.T) {
	s := NewSketch(0.001)
	for x := 100.0; x > 0.5; x *= 0.97 {
		s.Add(x)
	}
	fresh := NewSketch(0.001)
	allocs := testing.AllocsPerRun(3, func() {
		s.Reset()
		for x := 90.0; x > 0.6; x *= 0.98 {
			s.Add(x)
		}
	})
	for x := 90.0; x > 0.6; x *= 0.98 {
		fresh.Add(x)
	}
	if allocs != 0 {
		t.Errorf("%v allocations refilling a reset sketch", allocs)
	}
	a, _ := s.MarshalBinary()
	b, _ := fresh.MarshalBinary()
	if string(a) != string(b) {
		t.Fatalf("refilled sketch differs from a fresh one:\n%x\n%x", a, b)
	}
}
