package e2e

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

// TestEntityRedisEmpty: two `scorer run`s with an entity score on card_id
// and merchant_id (states in redis-server) lose Redis, SIGKILLed, while
// transactions keep arriving, and get back an empty one on the same
// address. While Redis is away the scorers decide nothing (a transaction is
// not scored without its entities' states, and nothing is committed);
// once it is back every transaction is decided, the scorers hold on to the
// model they have although the registry is now empty, and every card's and
// merchant's state counts exactly its transactions that arrived after the
// states were lost: begun afresh, none lost, none counted twice. The
// trainer's next round then gives the entities their history back: after
// it every state counts all of its transactions on the topic, those from
// before the loss included (pipeline.SeedEntities replaces a state whose
// positions its replay covers).
func TestEntityRedisEmpty(t *testing.T) {
	e := setup(t)
	_, _, rport := e.ownServices(t)
	redisProc := startRedis(t, e.dir, rport)

	tx, alerts, scores, dead := e.topic("ertx"), e.topic("eralerts"), e.topic("erscores"), e.topic("erdead")
	prefix := "er:" + e.sfx + ":"
	common := []string{"--brokers", e.brokers, "--redis", e.redis, "--registry-prefix", prefix}
	feed := newEntityFeed(time.Now().Add(-time.Hour))
	publishEntityModel(t, e, feed, common)

	var metrics []string
	for _, name := range []string{"scorer-a", "scorer-b"} {
		addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
		metrics = append(metrics, addr)
		e.start("scorer", name, append([]string{"run", "--transactions", tx, "--alerts", alerts, "--scores", scores, "--dead-letter", dead,
			"--group", "er-" + e.sfx, "--metrics-addr", addr, "--model-poll", "2s",
			"--create-topics", "--partitions", "4", "--batch", "128"}, common...)...)
		waitPartitions(t, e.brokers, scores, 4)
	}
	watch := startWatch(t, e.brokers, scores)
	send := func(n int) (txs []generator.Transaction, ids []string) {
		lines := make([]string, n)
		for i := range lines {
			x := feed.next()
			txs, ids = append(txs, x), append(ids, x.ID)
			lines[i] = x.Card + "\t" + string(x.JSON())
		}
		e.kcatProduce(tx, lines)
		return txs, ids
	}
	decided := func(limit time.Duration, what string, ids []string) {
		t.Helper()
		watch.waitDecided(t, limit, what, ids)
	}

	// Both scorers at work on states in Redis.
	var warm []string
	var warmTxs []generator.Transaction
	for n := 0; n < 10 || !(metricValue(metrics[1], `fraudstream_records_total{outcome="scored"}`) > 0); n++ {
		if n == 200 {
			t.Fatal("scorer-b scored none of the first transactions")
		}
		txs, ids := send(500)
		warm, warmTxs = append(warm, ids...), append(warmTxs, txs...)
		time.Sleep(100 * time.Millisecond)
	}
	decided(2*time.Minute, "the first transactions to be decided", warm)
	rc := redis.NewClient(&redis.Options{Addr: e.redis})
	defer rc.Close()
	entityKeys := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, err := rc.Keys(ctx, prefix+"entity:*").Result()
		if err != nil {
			t.Fatalf("listing the entity states: %v", err)
		}
		return len(keys)
	}
	if n := entityKeys(); n < 300 {
		t.Fatalf("%d entity states in Redis after %d transactions", n, len(warm))
	}

	// Redis SIGKILLed; transactions keep arriving.
	redisProc.Process.Signal(syscall.SIGKILL)
	redisProc.Wait()
	killed := time.Now()
	t.Logf("%s redis-server killed after %d transactions decided", killed.Format("15:04:05.000"), len(warm))
	var after []generator.Transaction
	var afterIDs []string
	for range 10 {
		txs, ids := send(500)
		after, afterIDs = append(after, txs...), append(afterIDs, ids...)
	}
	time.Sleep(time.Until(killed.Add(8 * time.Second)))
	if n := len(afterIDs) - watch.missing(afterIDs); n > 0 {
		t.Errorf("%d of the %d transactions that arrived while Redis was away were decided without their entities' states", n, len(afterIDs))
	}

	// An empty redis-server on the same address.
	startRedis(t, e.dir, rport)
	back := time.Now()
	t.Logf("%s an empty redis-server is back", back.Format("15:04:05.000"))
	decided(2*time.Minute, "the transactions that arrived while Redis was away", afterIDs)
	t.Logf("%s all %d decided, %.1f s after Redis came back", time.Now().Format("15:04:05.000"), len(afterIDs), time.Since(back).Seconds())
	txs, ids := send(2000)
	after, afterIDs = append(after, txs...), append(afterIDs, ids...)
	decided(time.Minute, "the transactions sent after Redis came back", afterIDs)
	for i, addr := range metrics {
		if v := metricValue(addr, `fraudstream_records_total{outcome="scored"}`); !(v > 0) {
			t.Errorf("scorer %d's metrics are gone (%v): it did not outlive the outage", i, v)
		}
	}

	// Each entity's state counts its transactions since the loss.
	times := map[string][]time.Time{}
	for _, x := range after {
		times["card_id:"+x.Card] = append(times["card_id:"+x.Card], x.Time)
		times["merchant_id:"+x.Merchant] = append(times["merchant_id:"+x.Merchant], x.Time)
	}
	keys := make([]string, 0, len(times))
	for k := range times {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	store := &pipeline.RedisEntityStore{Client: rc, Prefix: prefix + "entity:"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored, err := store.Load(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	var miscounted []string
	for i, k := range keys {
		if stored[i] == nil {
			miscounted = append(miscounted, k+": no state stored")
			continue
		}
		_, st, err := decodeEntityValue(stored[i])
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if got, w := storedTxCount(&st), decayedCount(times[k], st.Last()); math.Abs(got-w) > 0.1 {
			miscounted = append(miscounted, fmt.Sprintf("%s counts %.2f transactions, %d arrived after Redis was lost", k, got, len(times[k])))
		}
	}
	t.Logf("%d entity states checked against the %d transactions since Redis was lost", len(keys), len(after))
	if len(miscounted) > 0 {
		t.Errorf("%d of %d entity states do not count exactly the transactions since Redis was lost; first: %s", len(miscounted), len(keys), strings.Join(head(miscounted, 5), "; "))
	}
	if n := entityKeys(); n != len(keys) {
		t.Errorf("%d entity states in the new Redis, %d entities had transactions since", n, len(keys))
	}
	if t.Failed() {
		return
	}

	// The trainer's next round replays the topic, the transactions from
	// before the loss included, and gives each entity its history back:
	// the replay has added every position the young states hold, so it
	// replaces them.
	out := e.run("trainer", append([]string{"run", "--once", "--transactions", tx, "--min-rows", "2000", "--epochs", "3", "--seed", "1"}, common...)...)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "entity states seeded,") {
			t.Logf("%s trainer run: %s", time.Now().Format("15:04:05.000"), strings.TrimSpace(l))
		}
	}
	if !strings.Contains(out, "replaced by the replay's longer history") {
		t.Fatalf("trainer run did not replace the young entity states:\n%s", out)
	}
	all := map[string][]time.Time{}
	for _, x := range append(warmTxs, after...) {
		all["card_id:"+x.Card] = append(all["card_id:"+x.Card], x.Time)
		all["merchant_id:"+x.Merchant] = append(all["merchant_id:"+x.Merchant], x.Time)
	}
	stored, err = store.Load(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	var short []string
	for i, k := range keys {
		applied, st, err := decodeEntityValue(stored[i])
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if got, w := storedTxCount(&st), decayedCount(all[k], st.Last()); math.Abs(got-w) > 0.1 {
			short = append(short, fmt.Sprintf("%s counts %.2f transactions, the topic holds %d (added %v, last %s)", k, got, len(all[k]), applied, st.Last().Format(time.RFC3339Nano)))
		}
	}
	if len(short) > 0 {
		t.Errorf("after the trainer's round, %d of %d entity states do not count all their transactions on the topic; first: %s", len(short), len(keys), strings.Join(head(short, 5), "; "))
	}
}
