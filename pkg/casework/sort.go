package casework

import (
	"cmp"
	"slices"
)

// sortClusters puts the clusters with the most pending cases first.
func sortClusters(cs []ClusterInfo) {
	slices.SortFunc(cs, func(a, b ClusterInfo) int {
		if c := cmp.Compare(b.Pending, a.Pending); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

func sortByCount(keys []string, m map[string]int) {
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}
