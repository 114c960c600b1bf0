package fleet

import (
	"context"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
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

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// TestFleetMeetsOneBudget: four workers each see a random quarter of the
// stream, one of them the riskier quarter (scores ×2). Sharing windows
// through Redis, authenticated with a shared secret, the fleet alerts on
// 0.5% of all traffic, and the riskier worker raises most of the alerts, as
// a single global threshold would; no honest window is rejected. Halfway,
// Redis disappears: the workers keep deciding with their last view.
func TestFleetMeetsOneBudget(t *testing.T) {
	for name, mk := range clients(t) {
		t.Run(name, func(t *testing.T) {
			c, stop := mk()
			ctx := context.Background()
			prefix := fmt.Sprintf("test:fleet:%d:", time.Now().UnixNano())
			var xs []*Exchange
			var ws []*Budget
			for i := range 4 {
				e, err := New(Config{Client: c, Prefix: prefix, ID: fmt.Sprint("w", i), Secret: testSecret})
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
			for i, e := range xs {
				for r, n := range e.Rejected() {
					if n != 0 {
						t.Errorf("worker %d rejected %d honest windows as %s", i, n, r)
					}
				}
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

// forgedSketch is the 28-byte sketch: 1e18 zeros.
func forgedSketch() []byte {
	b := binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.01))
	b = binary.LittleEndian.AppendUint64(b, 1e18)
	b = binary.LittleEndian.AppendUint64(b, 0)
	return binary.LittleEndian.AppendUint32(b, 0)
}

// sketchOf is a window of n scores, all x.
func sketchOf(x float64, n uint64) []byte {
	s := threshold.NewSketch(0.01)
	s.AddN(x, n)
	b, _ := s.MarshalBinary()
	return b
}

// fleetThresholds runs two honest workers (cfg with IDs w0, w1) on a
// lognormal stream, syncing every 5,000 scores and calling plant after each
// round, and returns their thresholds at the end and their exchanges.
func fleetThresholds(t *testing.T, c redis.UniversalClient, cfg Config, plant func(prefix string)) ([]float64, []*Exchange) {
	ctx := context.Background()
	cfg.Client, cfg.Prefix = c, fmt.Sprintf("test:fleet:%d:", time.Now().UnixNano())
	var xs []*Exchange
	var ws []*Budget
	for i := range 2 {
		cfg.ID = fmt.Sprint("w", i)
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		xs = append(xs, e)
		ws = append(ws, e.Attach("m1", threshold.NewBudget(0.01, threshold.WindowConfig{})))
	}
	rng := rand.New(rand.NewPCG(5, 5))
	thr := make([]float64, 2)
	for i := range 60_000 {
		thr[i%2], _ = ws[i%2].Decide(math.Exp(rng.NormFloat64()))
		if i%5000 == 4999 {
			for _, e := range xs {
				if err := e.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
			plant(cfg.Prefix)
		}
	}
	return thr, xs
}

// TestForgedWindowsMoveNoThreshold: a writer to Redis plants windows (the
// issue's SADD + SET of a sketch of 1e18 zeros, in the old and the current
// format; a window just over what a worker's window holds; with a secret,
// an unsigned window, one signed with another secret, an honest worker's
// window replayed under another member's name, and the windows of a worker
// running without the secret). The honest workers end with exactly the
// thresholds they reach with no forgery, and each forgery is counted.
func TestForgedWindowsMoveNoThreshold(t *testing.T) {
	for name, mk := range clients(t) {
		t.Run(name, func(t *testing.T) {
			c, stop := mk()
			defer stop()
			ctx := context.Background()
			set := func(prefix, id string, v []byte) {
				c.SAdd(ctx, prefix+"members", id)
				c.Set(ctx, prefix+"w:"+id, v, 0)
			}
			plain := func(model string, sk []byte) []byte {
				return append(append([]byte{formatPlain, byte(len(model))}, model...), sk...)
			}
			high := sketchOf(1e9, 50_000) // within the bound: would put the threshold at 1e9

			t.Run("without a secret", func(t *testing.T) {
				clean, _ := fleetThresholds(t, c, Config{}, func(string) {})
				got, xs := fleetThresholds(t, c, Config{}, func(p string) {
					set(p, "x", append([]byte{2, 'm', '1'}, forgedSketch()...)) // the format
					set(p, "y", plain("m1", forgedSketch()))
					set(p, "z", plain("m1", sketchOf(1e9, DefaultMaxCount+1)))
				})
				if got[0] != clean[0] || got[1] != clean[1] || math.IsInf(got[0], 0) || got[0] == 0 {
					t.Errorf("forged windows moved the thresholds to %v; without them %v", got, clean)
				}
				// Planted after the first sync, read at the 11 others.
				if r := xs[0].Rejected(); r[RejectOverBound] != 2*11 || r[RejectMalformed] != 11 {
					t.Errorf("rejected %v; want 2 windows over the bound and 1 malformed at each of 11 syncs", r)
				}
			})

			t.Run("with a secret", func(t *testing.T) {
				cfg := Config{Secret: testSecret}
				clean, _ := fleetThresholds(t, c, cfg, func(string) {})
				var outsider *Exchange
				forged := ""
				got, xs := fleetThresholds(t, c, cfg, func(p string) {
					forged = p
					set(p, "y", plain("m1", forgedSketch()))
					set(p, "u", plain("m1", high))
					other, _ := New(Config{Client: c, Prefix: p, ID: "o", Secret: []byte("another secret, 32 bytes long..")})
					set(p, "o", other.encodeWindow("o", "m1", high))
					w1, _ := c.Get(ctx, p+"w:w1").Bytes()
					set(p, "r", w1) // replayed under another name
					if outsider == nil {
						// A worker without the secret, on scores 1e9 times higher.
						outsider, _ = New(Config{Client: c, Prefix: p, ID: "nosecret"})
						b := outsider.Attach("m1", threshold.NewBudget(0.01, threshold.WindowConfig{}))
						for range 20_000 {
							b.Decide(1e9)
						}
					}
					if err := outsider.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				})
				if got[0] != clean[0] || got[1] != clean[1] {
					t.Errorf("forged windows moved the thresholds to %v; without them %v", got, clean)
				}
				// Planted after the first sync, read at the 11 others.
				r := xs[0].Rejected()
				if r[RejectUnsigned] != 3*11 || r[RejectBadMAC] != 2*11 || r[RejectOverBound] != 0 || r[RejectMalformed] != 0 {
					t.Errorf("rejected %v; want 3 unsigned windows and 2 with a bad MAC at each of 11 syncs", r)
				}
				// The forgeries are potent: a worker without the secret, on
				// the honest workers' traffic, merges them and its threshold
				// goes up to theirs.
				probe, _ := New(Config{Client: c, Prefix: forged, ID: "probe"})
				b := probe.Attach("m1", threshold.NewBudget(0.01, threshold.WindowConfig{}))
				rng := rand.New(rand.NewPCG(6, 6))
				for range 1000 {
					b.Decide(math.Exp(rng.NormFloat64()))
				}
				if err := probe.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if thr, _ := b.Decide(1); !(thr > 1e8) {
					t.Errorf("the unauthenticated worker's threshold is %v: the test's forgeries do nothing", thr)
				}
			})
		})
	}
}

// TestDefaultMaxCountHoldsAWindow: the window of a budget as the scorer
// makes it (threshold defaults, seeded with pkg/pipeline's 20,000 from a
// calibration) counts up to DefaultMaxCount and never more, so the bound
// rejects no honest worker and is no looser than it must be.
func TestDefaultMaxCountHoldsAWindow(t *testing.T) {
	b := threshold.NewBudget(0.005, threshold.WindowConfig{})
	b.Seed([]float64{0, 0.5, 0.99, 1}, []float64{0.1, 1, 5, 20}, 20000)
	rng := rand.New(rand.NewPCG(8, 8))
	most := uint64(0)
	for range 200_000 {
		b.Decide(math.Exp(rng.NormFloat64()))
		most = max(most, b.Window().Sketch().Count())
	}
	if most > DefaultMaxCount || most < DefaultMaxCount-1 {
		t.Errorf("the window counted up to %d scores; DefaultMaxCount is %d", most, DefaultMaxCount)
	}
}

// TestHostileMembers: what a writer to Redis can list costs a worker a
// bounded read and no sync: a giant value and a key of another type are
// rejected as malformed, an expired member is removed, and more members
// than MaxPeers make the sync keep its last view instead of reading them all.
func TestHostileMembers(t *testing.T) {
	for name, mk := range clients(t) {
		t.Run(name, func(t *testing.T) {
			c, stop := mk()
			defer stop()
			ctx := context.Background()
			prefix := fmt.Sprintf("test:fleet:%d:", time.Now().UnixNano())
			e, _ := New(Config{Client: c, Prefix: prefix, ID: "w0", MaxPeers: 4})
			b := e.Attach("m1", threshold.NewBudget(0.01, threshold.WindowConfig{}))
			for range 1000 {
				b.Decide(1)
			}
			c.SAdd(ctx, prefix+"members", "giant", "list", "gone")
			c.Set(ctx, prefix+"w:giant", make([]byte, 8<<20), 0)
			c.RPush(ctx, prefix+"w:list", "x")
			if err := e.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if r := e.Rejected(); r[RejectMalformed] != 2 {
				t.Errorf("rejected %v; want the giant value and the list as malformed", r)
			}
			if ok, _ := c.SIsMember(ctx, prefix+"members", "gone").Result(); ok {
				t.Error("a member without a window was not removed")
			}
			for i := range 3 {
				c.SAdd(ctx, prefix+"members", fmt.Sprint("p", i))
				c.Set(ctx, prefix+"w:"+fmt.Sprint("p", i), []byte("junk"), 0)
			}
			if err := e.Sync(ctx); err == nil || !strings.Contains(err.Error(), "more than 4") {
				t.Errorf("sync with 5 peers listed and MaxPeers 4: %v", err)
			}
		})
	}
}

// BenchmarkSync: one worker's exchange with three peers (publish its
// window, read, verify and merge theirs) on miniredis, with and without
// HMAC; it runs once a second.
func BenchmarkSync(b *testing.B) {
	for _, mode := range []struct {
		name   string
		secret []byte
	}{{"plain", nil}, {"hmac", testSecret}} {
		b.Run(mode.name, func(b *testing.B) {
			mr := miniredis.RunT(b)
			c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			ws := syncWorkers(b, c, mode.secret)
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
			if r := ws[0].Rejected(); r[RejectBadMAC]+r[RejectUnsigned] != 0 {
				b.Fatalf("rejected %v", r)
			}
		})
	}
}

// BenchmarkSyncHMAC: the HMAC work of one sync alone: signing the
// worker's window and verifying three peers' MACs (windows of 50,000
// scores).
func BenchmarkSyncHMAC(b *testing.B) {
	ws := syncWorkers(b, nil, testSecret)
	var blobs [][]byte
	ids := []string{"0", "1", "2", "3"}
	for i, e := range ws {
		sk, _ := e.Current().b.Window().Sketch().MarshalBinary()
		blobs = append(blobs, e.encodeWindow(ids[i], "m1", sk))
	}
	b.SetBytes(int64(len(blobs[0]) * 4))
	b.ReportAllocs()
	for b.Loop() {
		ws[0].mac("0", blobs[0][:len(blobs[0])-32])
		for i := 1; i < 4; i++ {
			body, mac := blobs[i][:len(blobs[i])-32], blobs[i][len(blobs[i])-32:]
			if !hmac.Equal(mac, ws[0].mac(ids[i], body)) {
				b.Fatal("a MAC does not verify")
			}
		}
	}
}

// syncWorkers: four exchanges whose windows hold 50,000 lognormal scores.
func syncWorkers(b *testing.B, c redis.UniversalClient, secret []byte) []*Exchange {
	if c == nil {
		c = redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var ws []*Exchange
	for i := range 4 {
		e, _ := New(Config{Client: c, ID: fmt.Sprint(i), Secret: secret})
		// The scorers' accuracy (pkg/pipeline's budgetAlpha).
		fb := e.Attach("m1", threshold.NewBudget(0.005, threshold.WindowConfig{Alpha: 0.001}))
		for range 50_000 {
			fb.Decide(math.Exp(rng.NormFloat64()))
		}
		ws = append(ws, e)
	}
	return ws
}
