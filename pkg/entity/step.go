package entity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Step writes the features of a transaction from the state before it into
// out, then adds the transaction to the state: the one step the offline
// replay and the scorers share, so both compute the same values for the
// same sequence of transactions.
func (s *State) Step(windows []time.Duration, feats []Feature, at time.Time, amount float64, out []float64) {
	s.Features(windows, feats, at, amount, out)
	s.Update(windows, at, amount)
}

// EncodedSize is the length of an encoded State that counts no
// categorical field; each one counted adds CategoryEncodedSize.
const EncodedSize = 2 + 8 + 12*MaxWindows

// CategoryEncodedSize is what one counted categorical field adds to an
// encoded State (with the count byte: 1 + 88 bytes for the first).
const CategoryEncodedSize = catTrackSize

// stateVersion is the first byte of an encoded State; tagVersion that of
// one that counts categorical fields (a count byte and the tracks follow,
// each with its field's tag). catVersion's tracks, written before tags
// existed, lack the tag; they are still read.
const (
	stateVersion = 1
	catVersion   = 2
	tagVersion   = 3
)

// AppendBinary appends the state's encoding to b (for a shared store such
// as Redis): EncodedSize bytes, as before categorical counts existed, for
// a state without them, else the count of categorical fields and their
// tracks after them. The exact bits, so a state read back steps exactly as
// the one written.
func (s *State) AppendBinary(b []byte) []byte {
	var flags byte
	if s.seen {
		flags = 1
	}
	version := byte(stateVersion)
	if s.ncat > 0 {
		version = tagVersion
	}
	b = append(b, version, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.last))
	for _, a := range s.agg {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(a.n))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(a.s))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(a.ss))
	}
	if s.ncat > 0 {
		b = append(b, s.ncat)
		for c := range s.ncat {
			b = s.cats[c].appendBinary(b)
		}
	}
	return b
}

// ErrNewerState is returned (wrapped) by UnmarshalBinary for a state
// whose version is newer than this build knows: one written by a later
// version, which must be left as it is rather than replaced.
var ErrNewerState = errors.New("entity: the state was written by a newer version")

// UnmarshalBinary decodes what AppendBinary wrote, and the untagged
// tracks of states written before tags existed.
func (s *State) UnmarshalBinary(b []byte) error {
	if len(b) > 0 && b[0] > tagVersion {
		return fmt.Errorf("%w (version %d; this build reads up to %d)", ErrNewerState, b[0], tagVersion)
	}
	ncat, size := 0, catTrackSize
	if len(b) > EncodedSize && (b[0] == catVersion || b[0] == tagVersion) {
		ncat = int(b[EncodedSize])
	}
	if len(b) > 0 && b[0] == catVersion {
		size = catTrackSize - 4
	}
	want := EncodedSize
	if ncat > 0 {
		want += 1 + ncat*size
	}
	if len(b) < 2 || len(b) != want || b[0] < stateVersion || b[0] > tagVersion || b[1] > 1 ||
		(b[0] != stateVersion) != (ncat > 0) || ncat > MaxCategories {
		return fmt.Errorf("entity: an encoded state is %d bytes with version %d, or %d bytes and %d per categorical field (at most %d) with version %d; got %d bytes, version %d",
			EncodedSize, stateVersion, EncodedSize+1, catTrackSize, MaxCategories, tagVersion, len(b), first(b))
	}
	*s = State{ncat: uint8(ncat)}
	for c := range ncat {
		s.cats[c].unmarshal(b[EncodedSize+1+c*size:], b[0] == tagVersion)
	}
	s.seen = b[1] == 1
	s.last = int64(binary.LittleEndian.Uint64(b[2:]))
	p := b[10:]
	for i := range s.agg {
		s.agg[i].n = math.Float32frombits(binary.LittleEndian.Uint32(p))
		s.agg[i].s = math.Float32frombits(binary.LittleEndian.Uint32(p[4:]))
		s.agg[i].ss = math.Float32frombits(binary.LittleEndian.Uint32(p[8:]))
		p = p[12:]
	}
	return nil
}

// EncodedLast reads the latest event time (Unix ms) of an encoded State
// without decoding the rest.
func EncodedLast(b []byte) (int64, bool) {
	if len(b) < EncodedSize || b[0] < stateVersion || b[0] > tagVersion {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b[2:])), true
}

func first(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// Join puts a DAE score and an entity score's log tail probability lp on
// the DAE's scale: the DAE score when it is the stranger of the two (the
// smaller tail probability on daeTail), else the DAE score that would be
// as rare as the entity score. Ranking by the result ranks by the smaller
// of the two tail probabilities, and a model's thresholds keep their scale.
func Join(daeTail Tail, score, lp float64) float64 {
	if math.IsNaN(score) || lp >= daeTail.LogProb(score) {
		return score
	}
	return math.Max(score, daeTail.Quantile(lp))
}
