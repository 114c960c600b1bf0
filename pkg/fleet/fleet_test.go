package fleet

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/threshold"
)

func clients(t *testing.T) map[string]func() (redis.UniversalClient, func()) {
	out := map[string]func() (redis.UniversalClient, func()){
		"miniredis": func() (redis.UniversalClient, func()) {
			mr := miniredis.RunT(t)
			return redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond}), mr.Close
		},
	}
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		out["redis-server"] = func() (redis.UniversalClient, func()) {
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
			return c, func() { c.Close() }
		}
	}
	return out
}

// TestFleetMeetsOneBudget: four workers each see a random quarter of the
// stream, one of them the riskier quarter (scores ×2). Sharing windows
// through Redis, the fleet alerts on 0.5% of all traffic, and the riskier
// worker raises most of the alerts, as a single global threshold would.
// Halfway, Redis disappears: the workers keep deciding with their last view.
func TestFleetMeetsOneBudget(t *testing.T) {
	for name, mk := range clients(t) {
		t.Run(name, func(t *testing.T) {
			c, stop := mk()
			ctx := context.Background()
			prefix := fmt.Sprintf("test:fleet:%d:", time.Now().UnixNano())
			var xs []*Exchange
			var ws []*Budget
			for i := range 4 {
				e, err := New(Config{Client: c, Prefix: prefix, ID: fmt.Sprint("w", i)})
				if err != nil {
					t.Fatal(err)
				}
				xs = append(xs, e)
				ws = append(ws, e.Attach("m1", threshold.NewBudget(0.005, threshold.WindowConfig{})))
			}
			rng := rand.New(rand.NewPCG(10, 10))
			alerts, byWorker, seen := 0, make([]int, 4), 0
			var windowRates []float64
			winAlerts := 0
			for i := range 1_200_000 {
				w := rng.IntN(4)
				x := math.Exp(rng.NormFloat64())
				if w == 0 {
					x *= 2
				}
				if _, a := ws[w].Decide(x); a && i >= 200_000 {
					alerts++
					byWorker[w]++
					winAlerts++
				}
				if i >= 200_000 {
					seen++
					if seen%100_000 == 0 {
						windowRates = append(windowRates, float64(winAlerts)/100_000)
						winAlerts = 0
					}
				}
				if i%5000 == 4999 {
					if i == 700_000-1 {
						stop() // Redis is gone from here on
					}
					for _, e := range xs {
						e.Sync(ctx)
					}
				}
			}
			for k, r := range windowRates {
				if math.Abs(r-0.005)/0.005 > 0.10 {
					t.Errorf("window %d: fleet alert rate %.4f%%", k, 100*r)
				}
			}
			if share := float64(byWorker[0]) / float64(alerts); share < 0.6 {
				t.Errorf("the riskier worker raised %.0f%% of the alerts: the threshold is not the fleet's", 100*share)
			}
		})
	}
}

// TestPeersOnAnotherModelAreLeftOut: two workers have moved to a model
// whose scores run 4x higher while two are still on the old one. Each pair
// merges only its own model's windows, so each meets the budget on its
// own scale; merging across models would put the old pair's threshold far
// above its traffic (almost no alerts) and the new pair's far below.
func TestPeersOnAnotherModelAreLeftOut(t *testing.T) {
	for name, mk := range clients(t) {
		t.Run(name, func(t *testing.T) {
			c, stop := mk()
			defer stop()
			ctx := context.Background()
			prefix := fmt.Sprintf("test:fleet:%d:", time.Now().UnixNano())
			var xs []*Exchange
			var ws []*Budget
			for i := range 4 {
				e, err := New(Config{Client: c, Prefix: prefix, ID: fmt.Sprint("w", i)})
				if err != nil {
					t.Fatal(err)
				}
				model := "old"
				if i >= 2 {
					model = "new"
				}
				xs = append(xs, e)
				ws = append(ws, e.Attach(model, threshold.NewBudget(0.01, threshold.WindowConfig{})))
			}
			rng := rand.New(rand.NewPCG(3, 3))
			alerts, seen := [2]int{}, [2]int{}
			for i := range 400_000 {
				w := rng.IntN(4)
				x := math.Exp(rng.NormFloat64())
				if w >= 2 {
					x *= 4
				}
				_, a := ws[w].Decide(x)
				if i >= 100_000 {
					seen[w/2]++
					if a {
						alerts[w/2]++
					}
				}
				if i%5000 == 4999 {
					for _, e := range xs {
						if err := e.Sync(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for k, name := range []string{"old", "new"} {
				if r := float64(alerts[k]) / float64(seen[k]); math.Abs(r-0.01)/0.01 > 0.15 {
					t.Errorf("workers on the %s model alert on %.3f%%, want 1%% ±15%%", name, 100*r)
				}
			}
			if n := xs[0].OtherModelPeers(); n != 2 {
				t.Errorf("worker 0 left out %d peers on another model, want 2", n)
			}
		})
	}
}

// BenchmarkSync: one worker's exchange with three peers (publish its window,
// read and merge theirs) on miniredis; it runs once a second.
func BenchmarkSync(b *testing.B) {
	mr := miniredis.RunT(b)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	rng := rand.New(rand.NewPCG(1, 1))
	var ws []*Exchange
	for i := range 4 {
		e, _ := New(Config{Client: c, ID: fmt.Sprint(i)})
		fb := e.Attach("m1", threshold.NewBudget(0.005, threshold.WindowConfig{}))
		for range 50_000 {
			fb.Decide(math.Exp(rng.NormFloat64()))
		}
		ws = append(ws, e)
	}
	ctx := context.Background()
	for _, e := range ws {
		e.Sync(ctx)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ws[0].Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
