package features

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestLevelTableMatchesMap: the level table gives the same answer as the
// map[string]int32 it replaced, for every level and for strings that are
// not levels, on random vocabularies with short, long, empty and repeated
// levels and levels that differ only in the middle (equal hashes and, past
// 16 bytes, equal first and last words, told apart by the string compare).
func TestLevelTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	word := func() string {
		n := rng.IntN(24)
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab_19 Zé"[rng.IntN(8)]
		}
		return string(b)
	}
	for trial := range 2000 {
		levels := []string{"<MISSING>", "<OTHER>"}
		n := rng.IntN(70)
		if trial%50 == 0 {
			n = 1000
		}
		for range n {
			switch rng.IntN(6) {
			case 0: // same ends, different middle: one hash, many keys
				levels = append(levels, "merchant-"+word()+"-category")
			case 1: // repeated
				if len(levels) > 2 {
					levels = append(levels, levels[2+rng.IntN(len(levels)-2)])
					continue
				}
				levels = append(levels, word())
			default:
				levels = append(levels, word())
			}
		}
		want := make(map[string]int32)
		for j := 2; j < len(levels); j++ {
			want[levels[j]] = int32(j)
		}
		tab := newLevelTable(levels)
		probes := append([]string{"", " ", "<MISSING>", "<OTHER>"}, levels...)
		for range 200 {
			probes = append(probes, word(), "merchant-"+word()+"-category")
		}
		for _, l := range levels {
			probes = append(probes, l+" ", strings.ToUpper(l), l[:len(l)/2])
		}
		for _, p := range probes {
			got, ok := tab.lookup(p)
			w, wok := want[p]
			if got != w || ok != wok {
				t.Fatalf("vocabulary of %d levels: lookup(%q) = %d, %v; the map gives %d, %v", len(levels)-2, p, got, ok, w, wok)
			}
		}
	}
}

// TestLevelTableEmptyVocabulary: a field with only MISSING and OTHER
// finds nothing, without a table.
func TestLevelTableEmptyVocabulary(t *testing.T) {
	tab := newLevelTable([]string{"<MISSING>", "<OTHER>"})
	if l, ok := tab.lookup(""); ok {
		t.Fatalf("lookup in an empty vocabulary found level %d", l)
	}
}

// BenchmarkLevelLookup: the mixed record's vocabularies (4-40 levels named
// like "mcc_17"), looked up through the table and through a map.
func BenchmarkLevelLookup(b *testing.B) {
	levels := []string{"<MISSING>", "<OTHER>"}
	for i := range 40 {
		levels = append(levels, "mcc_"+strconv.Itoa(i))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	probes := make([]string, 1024)
	for i := range probes {
		probes[i] = strings.Clone(levels[2+rng.IntN(40)])
	}
	b.Run("table", func(b *testing.B) {
		tab := newLevelTable(levels)
		var sum int32
		for i := 0; b.Loop(); i++ {
			l, _ := tab.lookup(probes[i&1023])
			sum += l
		}
		_ = sum
	})
	b.Run("map", func(b *testing.B) {
		m := make(map[string]int32)
		for j := 2; j < len(levels); j++ {
			m[levels[j]] = int32(j)
		}
		var sum int32
		for i := 0; b.Loop(); i++ {
			sum += m[probes[i&1023]]
		}
		_ = sum
	})
}
