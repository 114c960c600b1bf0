package reviewweb

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/review"
)

// benchQueued is the queue length the latency target is stated for.
const benchQueued = 100_000

// benchServer fills a queue of benchQueued alerts (card records of 12
// fields, described under a small model, so they carry features and
// embeddings and fall into clusters) and a recent store of as many
// transactions, on redis-server at $REDIS_ADDR (else miniredis).
func benchServer(b *testing.B) (*Server, string, string) {
	schema := &features.Schema{Fields: []features.Field{
		{Name: "tx_id", Kind: features.ID}, {Name: "card_id", Kind: features.ID}, {Name: "terminal_id", Kind: features.ID},
		{Name: "amount", Kind: features.Numeric}, {Name: "mcc", Kind: features.Categorical}, {Name: "country", Kind: features.Categorical},
		{Name: "channel", Kind: features.Categorical}, {Name: "hour", Kind: features.Numeric},
	}, IDField: "tx_id", KeyField: "card_id"}
	rng := rand.New(rand.NewPCG(7, 7))
	row := func(i int, odd bool) []string {
		amt, country := 20+rng.ExpFloat64()*40, []string{"FR", "DE", "IT"}[rng.IntN(3)]
		if odd {
			amt, country = amt*float64(1+rng.IntN(30)), []string{"BR", "NG", "VN", "US", "FR"}[rng.IntN(5)]
		}
		return []string{fmt.Sprintf("tx-%07d", i), fmt.Sprintf("card-%05d", rng.IntN(20000)), fmt.Sprintf("t-%04d", rng.IntN(3000)),
			fmt.Sprintf("%.2f", amt), []string{"grocery", "fuel", "pharmacy", "travel"}[rng.IntN(4)], country,
			[]string{"pos", "web", "contactless"}[rng.IntN(3)], fmt.Sprint(rng.IntN(24))}
	}
	var rows [][]string
	for i := range 3000 {
		rows = append(rows, row(i, false))
	}
	bundle, err := model.Fit(schema, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 3}})
	if err != nil {
		b.Fatal(err)
	}
	m := &casework.Model{Bundle: bundle, Version: "1", Digest: "bench"}
	var rdb redis.UniversalClient
	prefix := fmt.Sprintf("bench:review:%d:", time.Now().UnixNano())
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: addr})
		b.Cleanup(func() {
			ctx := context.Background()
			iter := rdb.Scan(ctx, 0, prefix+"*", 10000).Iterator()
			var keys []string
			for iter.Next(ctx) {
				if keys = append(keys, iter.Val()); len(keys) == 1000 {
					rdb.Unlink(ctx, keys...)
					keys = keys[:0]
				}
			}
			if len(keys) > 0 {
				rdb.Unlink(ctx, keys...)
			}
			rdb.Close()
		})
	} else {
		mr := miniredis.RunT(b)
		rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
	}
	recent := review.NewRecent(bundle.Model.Bottleneck, benchQueued, 0)
	svc, err := casework.New(casework.Config{Redis: rdb, Prefix: prefix, Labels: &sink{}, Model: func() *casework.Model { return m }, Recent: recent})
	if err != nil {
		b.Fatal(err)
	}
	desc := review.NewDescriber(bundle)
	ctx := context.Background()
	var firstID string
	for from := 0; from < benchQueued; from += 1000 {
		var vals, raws [][]byte
		for i := from; i < from+1000; i++ {
			r := row(i, true)
			tx, _ := json.Marshal(map[string]any{"tx_id": r[0], "card_id": r[1], "terminal_id": r[2], "amount": json.Number(r[3]),
				"mcc": r[4], "country": r[5], "channel": r[6], "hour": json.Number(r[7]), "currency": "EUR", "device": "pos_terminal",
				"entry_mode": "chip", "event_time": "2026-12-04T10:00:00Z"})
			a, _ := json.Marshal(casework.Alert{TransactionID: r[0], Score: float32(2 + rng.Float64()*10), Threshold: 2, ModelVersion: "1",
				Reasons:     []review.Reason{{Field: "amount", Observed: r[3], Expected: "40.1", Contribution: 3}, {Field: "country", Observed: r[5], Expected: "FR", Contribution: 1}},
				Transaction: tx})
			vals, raws = append(vals, a), append(raws, tx)
		}
		if _, _, err := svc.Ingest(ctx, vals); err != nil {
			b.Fatal(err)
		}
		for k, d := range desc.Describe(raws) {
			recent.Add(review.Entry{ID: d.ID, Score: d.Score, Keys: d.Keys, Raw: raws[k]}, d.Embedding)
		}
		if from == 0 {
			firstID = fmt.Sprintf("tx-%07d", 0)
		}
	}
	if _, err := svc.Rebuild(ctx); err != nil {
		b.Fatal(err)
	}
	if n, _ := svc.Pending(ctx); n != benchQueued {
		b.Fatalf("%d queued", n)
	}
	srv, err := New(Config{Service: svc, Users: testUsersB(b)})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := svc.StartSession(ctx, casework.Session{User: "ana", Role: RoleAnalyst}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return srv, tok, firstID
}

func testUsersB(b *testing.B) *Users {
	u, err := ParseUsers(strings.NewReader("ana:analyst:$2a$04$abcdefghijklmnopqrstuu5Cq1b2KfUf/5q8Y5CLz0s1dA3Gk8c9a\n"))
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// BenchmarkPages times the server side of the queue page, the case page
// (similar transactions: exact search over 100k recent ones) and the
// API's queue, with 100k alerts queued:
//
//	REDIS_ADDR=127.0.0.1:6379 go test ./pkg/reviewweb -run '^$' -bench Pages -benchtime 200x -count 5
func BenchmarkPages(b *testing.B) {
	srv, tok, id := benchServer(b)
	for _, path := range []string{"/queue", "/cases/" + id, "/api/queue"} {
		b.Run(strings.Trim(strings.ReplaceAll(path, "/", "_"), "_"), func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: tok})
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
				}
			}
		})
	}
}
