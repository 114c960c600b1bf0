// Package threshold turns anomaly scores into alert decisions that hold a
// chosen alert budget. It is pure computation: no Kafka, Redis or
// Prometheus; the scorer wires it.
//
// Sketch is a mergeable quantile sketch with bounded relative error in the
// manner of DDSketch (Masson, Rim and Lee, VLDB 2019): a positive value x
// falls in bucket ⌈log_γ x⌉ with γ = (1+α)/(1−α), so every quantile it
// returns is within a factor (1±α) of a true value at that rank. Two
// sketches merge by adding bucket counts, exactly, which is what lets
// workers that each see part of a stream agree on one threshold.
//
// Window keeps a ring of per-interval sketches, so that the threshold
// follows the recent distribution and drift is forgotten after the window.
package threshold

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Sketch counts scores in logarithmic buckets. The zero value is not
// usable; call NewSketch. A Sketch is not safe for concurrent use.
type Sketch struct {
	alpha   float64
	gamma   float64
	invLogG float64
	offset  int      // bucket index of counts[0]
	counts  []uint64 // dense buckets from offset
	zeros   uint64   // values ≤ minPositive (scores are ≥ 0)
	total   uint64
}

// Scores below this count as zero: far below any alert threshold.
const minPositive = 1e-9

// Bucket indexes are bounded so that a hostile or broken score cannot make
// the dense array huge: values above about 1e12 share the top bucket.
const maxBuckets = 4096

// NewSketch returns a sketch with relative accuracy alpha (e.g. 0.01).
func NewSketch(alpha float64) *Sketch {
	if !(alpha > 0 && alpha < 1) {
		panic("threshold: alpha must be in (0, 1)")
	}
	g := (1 + alpha) / (1 - alpha)
	return &Sketch{alpha: alpha, gamma: g, invLogG: 1 / math.Log(g), offset: math.MinInt32}
}

// Alpha returns the relative accuracy.
func (s *Sketch) Alpha() float64 { return s.alpha }

// Count returns the number of values added.
func (s *Sketch) Count() uint64 { return s.total }

func (s *Sketch) index(x float64) int {
	// +Inf shares the top bucket with the largest float: int(±Inf) is
	// undefined and made grow panic.
	return int(math.Ceil(math.Log(min(x, math.MaxFloat64)) * s.invLogG))
}

// Add records a score. NaN is ignored; negative scores count as zero.
func (s *Sketch) Add(x float64) { s.AddN(x, 1) }

// AddN records n copies of a score.
func (s *Sketch) AddN(x float64, n uint64) {
	if x != x || n == 0 {
		return
	}
	s.total += n
	if x <= minPositive {
		s.zeros += n
		return
	}
	s.counts[s.grow(s.index(x))-s.offset] += n
}

// grow makes bucket i addressable and returns the bucket to count in:
// i itself, or the lowest bucket when keeping at most maxBuckets means
// folding the bottom (the upper tail, where thresholds live, keeps its
// accuracy).
func (s *Sketch) grow(i int) int {
	if len(s.counts) == 0 {
		s.offset = i
		s.counts = append(s.counts[:0], 0)
		return i
	}
	if i < s.offset {
		if s.offset+len(s.counts)-i > maxBuckets {
			return s.offset
		}
		n, shift := s.offset-i+len(s.counts), s.offset-i
		if n <= cap(s.counts) {
			// Room in place (a window's sketches are reset and refilled
			// every interval): shift the counts up, no allocation.
			old := len(s.counts)
			s.counts = s.counts[:n]
			copy(s.counts[shift:], s.counts[:old])
			clear(s.counts[:shift])
		} else {
			grown := make([]uint64, n, n+n/4+8)
			copy(grown[shift:], s.counts)
			s.counts = grown
		}
		s.offset = i
	} else if end := s.offset + len(s.counts); i >= end {
		need := i - s.offset + 1
		if need > maxBuckets {
			// Fold the bottom to make room at the top.
			shift := need - maxBuckets
			for k := 1; k <= shift && k < len(s.counts); k++ {
				s.counts[0] += s.counts[k]
			}
			if shift < len(s.counts) {
				s.counts = append(s.counts[:1], s.counts[shift+1:]...)
			} else {
				s.counts = s.counts[:1]
			}
			s.offset += shift
			need = i - s.offset + 1
		}
		if need > cap(s.counts) {
			grown := make([]uint64, len(s.counts), max(2*cap(s.counts), need))
			copy(grown, s.counts)
			s.counts = grown
		}
		s.counts = s.counts[:need]
	}
	return i
}

// Quantile returns the value at rank q in [0, 1] (q = 0.995 is the score
// above which 0.5% of values lie), or NaN for an empty sketch.
func (s *Sketch) Quantile(q float64) float64 {
	if s.total == 0 || q != q {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	rank := uint64(q * float64(s.total-1))
	if rank < s.zeros {
		return 0
	}
	seen := s.zeros
	for k, c := range s.counts {
		seen += c
		if seen > rank {
			return s.value(s.offset + k)
		}
	}
	return s.value(s.offset + len(s.counts) - 1)
}

// value is the representative of bucket i: within (1±α) of every value in
// it. The top bucket's would overflow; it is the largest float64 instead.
func (s *Sketch) value(i int) float64 {
	return min(2*math.Pow(s.gamma, float64(i))/(s.gamma+1), math.MaxFloat64)
}

// Above returns the number of values greater than x (up to bucket accuracy).
func (s *Sketch) Above(x float64) uint64 {
	if x <= minPositive {
		return s.total - s.zeros
	}
	i := s.index(x)
	var n uint64
	for k := max(i+1-s.offset, 0); k < len(s.counts); k++ {
		n += s.counts[k]
	}
	return n
}

// Merge adds o's counts to s. Both must have the same alpha.
func (s *Sketch) Merge(o *Sketch) error {
	if o.alpha != s.alpha {
		return fmt.Errorf("threshold: cannot merge sketches of accuracy %v and %v", s.alpha, o.alpha)
	}
	s.zeros += o.zeros
	s.total += o.zeros
	// Same alpha, same bucket boundaries: counts add index to index.
	for k, c := range o.counts {
		if c > 0 {
			s.counts[s.grow(o.offset+k)-s.offset] += c
			s.total += c
		}
	}
	return nil
}

// Reset empties the sketch, keeping its memory.
func (s *Sketch) Reset() {
	clear(s.counts)
	s.counts = s.counts[:0]
	s.zeros, s.total = 0, 0
}

// Subtract removes o's counts from s, exactly undoing an earlier Merge of
// o (the sliding window relies on it). Counts never go below zero.
func (s *Sketch) Subtract(o *Sketch) error {
	if o.alpha != s.alpha {
		return fmt.Errorf("threshold: cannot subtract sketches of accuracy %v and %v", s.alpha, o.alpha)
	}
	sub := func(have *uint64, n uint64) {
		n = min(n, *have)
		*have -= n
		s.total -= n
	}
	sub(&s.zeros, o.zeros)
	for k, c := range o.counts {
		if c == 0 || len(s.counts) == 0 {
			continue
		}
		i := min(max(o.offset+k, s.offset), s.offset+len(s.counts)-1)
		sub(&s.counts[i-s.offset], c)
	}
	return nil
}

// MarshalBinary encodes the sketch: alpha, zeros, offset, then the counts.
func (s *Sketch) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 32+8*len(s.counts))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.alpha))
	b = binary.LittleEndian.AppendUint64(b, s.zeros)
	b = binary.LittleEndian.AppendUint64(b, uint64(int64(s.offset)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.counts)))
	for _, c := range s.counts {
		b = binary.AppendUvarint(b, c)
	}
	return b, nil
}

// MaxSketchCount bounds the values a decoded sketch may count: 2^53, the
// largest count a float64 (in which Quantile computes ranks) holds
// exactly. Windows count tens of thousands of scores; a caller that knows
// its windows' size bounds them tighter (pkg/fleet does).
const MaxSketchCount = 1 << 53

// MaxSketchBytes is the longest encoding UnmarshalSketch accepts: the
// 28-byte header and maxBuckets counts of at most 10 bytes each.
const MaxSketchBytes = 28 + binary.MaxVarintLen64*maxBuckets

// Decoded accuracies are refused below minAlpha: none is used (0.01 by
// default), and below about 1e-16 γ rounds to 1 and bucket indexes overflow.
const minAlpha = 1e-6

// ErrSketchCount is wrapped by UnmarshalSketch's error for a blob that
// counts more than MaxSketchCount values, or more than a uint64 holds.
var ErrSketchCount = errors.New("threshold: sketch blob counts more values than a sketch can hold")

// UnmarshalSketch decodes MarshalBinary's output. Whatever the input, it
// allocates at most 32 KiB for the buckets (maxBuckets = 4,096 counts of 8
// bytes, and never more counts than the blob has bytes left to encode them)
// plus the Sketch itself, and never copies the blob. It refuses an accuracy
// outside [1e-6, 1) (NaN and negative included), a bucket range outside
// the indexes a positive float64 can reach at that accuracy, and a total
// count above MaxSketchCount (ErrSketchCount; sums are checked, so counts
// cannot wrap around to a small total).
func UnmarshalSketch(b []byte) (*Sketch, error) {
	if len(b) < 28 {
		return nil, errors.New("threshold: sketch blob is truncated")
	}
	alpha := math.Float64frombits(binary.LittleEndian.Uint64(b))
	if !(alpha >= minAlpha && alpha < 1) {
		return nil, fmt.Errorf("threshold: sketch blob has accuracy %v, outside [%v, 1)", alpha, minAlpha)
	}
	s := NewSketch(alpha)
	s.zeros = binary.LittleEndian.Uint64(b[8:])
	if s.zeros > MaxSketchCount {
		return nil, fmt.Errorf("%w (%d zeros)", ErrSketchCount, s.zeros)
	}
	off := int64(binary.LittleEndian.Uint64(b[16:]))
	n := int(binary.LittleEndian.Uint32(b[24:]))
	b = b[28:]
	if n > maxBuckets {
		return nil, errors.New("threshold: sketch blob has too many buckets")
	}
	if n > len(b) {
		return nil, errors.New("threshold: sketch blob is truncated")
	}
	s.total = s.zeros
	if n > 0 {
		// The buckets a value in (minPositive, MaxFloat64] can fall in.
		lo, hi := int64(s.index(minPositive)), int64(s.index(math.MaxFloat64))
		if off < lo || off > hi-int64(n-1) {
			return nil, fmt.Errorf("threshold: sketch blob has %d buckets from %d, outside %d to %d", n, off, lo, hi)
		}
		s.offset, s.counts = int(off), make([]uint64, n)
	}
	for k := range n {
		c, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, errors.New("threshold: sketch blob is truncated")
		}
		if c > MaxSketchCount-s.total {
			return nil, fmt.Errorf("%w (more than %d)", ErrSketchCount, uint64(MaxSketchCount))
		}
		s.counts[k] = c
		s.total += c
		b = b[w:]
	}
	if len(b) != 0 {
		return nil, errors.New("threshold: trailing bytes after the sketch")
	}
	return s, nil
}
