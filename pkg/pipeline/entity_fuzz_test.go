package pipeline

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/entity"
	"github.com/fraudstream/fraudstream/pkg/model"
)

// FuzzStoredEntity: a value read from Redis under the entity prefix, which
// anything with access to Redis can write, never panics a scorer. A value
// that decodes re-encodes to one that decodes to the same positions and
// state, and stepping it through a model that counts categories (aligning
// its tracks first) neither panics nor changes what was decoded.
func FuzzStoredEntity(f *testing.F) {
	v := catView(f)
	rows := withCategories(entityTxs(200, 5), 5)
	txs := readTxs(v, rows)
	st := stores(f)["miniredis"]("fuzz")
	if _, err := StepEntities(context.Background(), st, v, txs, positions(len(txs)), make([]model.EntityValue, len(txs)*2)); err != nil {
		f.Fatal(err)
	}
	var keys []string
	for _, tx := range txs {
		for _, k := range []string{"card:" + tx.Keys[0], "terminal:" + tx.Keys[1]} {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	vals, err := st.Load(context.Background(), keys)
	if err != nil {
		f.Fatal(err)
	}
	for _, val := range vals {
		if val != nil {
			f.Add(val)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{appliedMarker})
	f.Add([]byte{appliedMarker, 1, 0, 5, 1, 1})
	f.Add([]byte{2, 1})
	f.Add(append([]byte{3, 1}, make([]byte, entity.EncodedSize)...))
	probe := txs[len(txs)-1]
	f.Fuzz(func(t *testing.T, b []byte) {
		var s entity.State
		applied, err := decodeStored(b, &s)
		if err != nil {
			return
		}
		again := appendStored(nil, applied, &s)
		var s2 entity.State
		applied2, err := decodeStored(again, &s2)
		if err != nil {
			t.Fatalf("%x decoded, its re-encoding %x does not: %v", b, again, err)
		}
		if !slices.Equal(applied, applied2) || !bytes.Equal(s.AppendBinary(nil), s2.AppendBinary(nil)) {
			t.Fatalf("%x: the re-encoding decodes to another state", b)
		}
		for e := range v.Part.Fields {
			c := s
			tx := probe
			tx.At = time.UnixMilli(c.Last().UnixMilli() + 1000)
			v.Step(e, &c, &tx)
		}
	})
}
