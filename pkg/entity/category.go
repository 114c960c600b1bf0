package entity

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"time"
)

// MaxCategories bounds the categorical fields an entity's state counts.
const MaxCategories = 2

// CategorySlots is how many of an entity's values a state counts per
// categorical field: its most frequent ones, which for a field that is
// nearly constant per entity (a merchant's category) hold its history.
const CategorySlots = 4

// CategoryKey is a categorical value in a fixed 16 bytes: its length and
// bytes when it fits in 15, else its first 7 bytes and a 64-bit hash. The
// zero key is a missing value.
type CategoryKey [16]byte

// KeyOf is the key of value ("" gives the zero key: missing).
func KeyOf(value string) CategoryKey {
	var k CategoryKey
	if value == "" {
		return k
	}
	if len(value) <= 15 {
		k[0] = byte(len(value))
		copy(k[1:], value)
		return k
	}
	h := fnv.New64a()
	h.Write([]byte(value))
	k[0] = 0xff
	copy(k[1:8], value)
	binary.LittleEndian.PutUint64(k[8:], h.Sum64())
	return k
}

// Missing reports whether k is the zero key.
func (k CategoryKey) Missing() bool { return k == CategoryKey{} }

// String is the value, or its first 7 bytes and "…" for a longer one.
func (k CategoryKey) String() string {
	if k[0] == 0xff {
		return string(k[1:8]) + "…"
	}
	return string(k[1 : 1+min(int(k[0]), 15)])
}

// catTrack counts an entity's values of one categorical field: decayed
// counts of its CategorySlots most frequent ones, and of all its values.
// tag names the field (TagOf; 0 in states encoded before tags existed).
type catTrack struct {
	tag   uint32
	total float32
	keys  [CategorySlots]CategoryKey
	n     [CategorySlots]float32
}

// catTrackSize is an encoded catTrack's length, its tag included.
const catTrackSize = 4 + 4 + CategorySlots*(16+4)

// TagOf names a categorical field in a state (FNV-1a of its name, never 0).
func TagOf(field string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(field))
	return max(h.Sum32(), 1)
}

// Align makes the state count the categorical fields tagged tags (TagOf of
// their names), in that order: a track already counting a field moves to
// its place, a field not counted yet starts empty, and a track of a field
// no longer wanted is dropped. The fields a model's entity score counts can
// change from one training round to the next (another order, one more or
// fewer), and a state stored under the last model must not be read as
// counting another field. A state encoded before tags existed is taken to
// count tags in order, as it was read before, when it counts as many
// fields; counting another number, its tracks cannot be matched and start
// empty. Call it before StepCategories.
func (s *State) Align(tags []uint32) {
	tags = tags[:min(len(tags), MaxCategories)]
	if int(s.ncat) == len(tags) {
		same := true
		for k, t := range tags {
			same = same && s.cats[k].tag == t
		}
		if same {
			return
		}
	}
	legacy := s.ncat > 0
	for _, tr := range s.cats[:s.ncat] {
		legacy = legacy && tr.tag == 0
	}
	var out [MaxCategories]catTrack
	for k, t := range tags {
		switch {
		case legacy:
			if int(s.ncat) == len(tags) {
				out[k] = s.cats[k]
			}
		default:
			for _, tr := range s.cats[:s.ncat] {
				if tr.tag == t {
					out[k] = tr
				}
			}
		}
		out[k].tag = t
	}
	s.cats, s.ncat = out, uint8(len(tags))
}

// CategoryValue is what an entity's history says of a transaction's value
// of one categorical field.
type CategoryValue struct {
	// Share of the entity's decayed history with this value (0: new); NaN
	// without history or without a value.
	Share float64
	// History is the entity's decayed count of transactions with a value.
	History float64
	// Usual is the entity's most frequent value (zero key: none).
	Usual CategoryKey
}

// StepCategories writes into out what the state says of a transaction's
// values (keys[c] for categorical field c; the zero key: missing), then
// counts them, each count decaying by e^-1 every tau of event time. Call
// it before Step for the same transaction: both decay from the state's
// latest event time, which Step moves.
func (s *State) StepCategories(tau time.Duration, at time.Time, keys []CategoryKey, out []CategoryValue) {
	t := at.UnixMilli()
	d, weight := 1.0, 1.0
	if s.seen && t > s.last {
		d = math.Exp(-float64(t-s.last) / float64(tau.Milliseconds()))
	} else if s.seen && t < s.last {
		weight = math.Exp(-float64(s.last-t) / float64(tau.Milliseconds()))
	}
	keys = keys[:min(len(keys), MaxCategories)]
	if int(s.ncat) < len(keys) {
		s.ncat = uint8(len(keys))
	}
	for c, k := range keys {
		tr := &s.cats[c]
		out[c] = CategoryValue{Share: math.NaN(), History: float64(tr.total) * d}
		best := -1
		for i := range tr.n {
			if tr.n[i] > 0 && (best < 0 || tr.n[i] > tr.n[best]) {
				best = i
			}
		}
		if best >= 0 {
			out[c].Usual = tr.keys[best]
		}
		if k.Missing() {
			continue
		}
		if tr.total > 0 {
			out[c].Share = 0
			for i := range tr.keys {
				if tr.keys[i] == k {
					out[c].Share = math.Min(float64(tr.n[i])/float64(tr.total), 1)
				}
			}
		}
		if d != 1 {
			f := float32(d)
			tr.total *= f
			for i := range tr.n {
				tr.n[i] *= f
			}
		}
		w := float32(weight)
		tr.total += w
		// The value's slot, else an empty one, else the least counted's:
		// a new value starts from its own weight, so a rare one reads rare.
		slot := -1
		for i := range tr.keys {
			if tr.keys[i] == k {
				slot = i
				break
			}
		}
		if slot >= 0 {
			tr.n[slot] += w
			continue
		}
		slot = 0
		for i := range tr.n {
			if tr.n[i] < tr.n[slot] {
				slot = i
			}
		}
		tr.keys[slot], tr.n[slot] = k, w
	}
}

func (tr *catTrack) appendBinary(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, tr.tag)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(tr.total))
	for i := range tr.keys {
		b = append(b, tr.keys[i][:]...)
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(tr.n[i]))
	}
	return b
}

// unmarshal reads an encoded track, tagged or (before tags) not.
func (tr *catTrack) unmarshal(p []byte, tagged bool) {
	tr.tag = 0
	if tagged {
		tr.tag = binary.LittleEndian.Uint32(p)
		p = p[4:]
	}
	tr.total = math.Float32frombits(binary.LittleEndian.Uint32(p))
	p = p[4:]
	for i := range tr.keys {
		copy(tr.keys[i][:], p[:16])
		tr.n[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[16:]))
		p = p[20:]
	}
}
