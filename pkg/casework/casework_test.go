package casework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/review"
)

var schema = &features.Schema{
	Fields: []features.Field{
		{Name: "tx_id", Kind: features.ID},
		{Name: "card_id", Kind: features.ID},
		{Name: "terminal_id", Kind: features.ID},
		{Name: "amount", Kind: features.Numeric},
		{Name: "merchant", Kind: features.Categorical},
	},
	IDField: "tx_id", KeyField: "card_id",
}

func tx(id, card, term string, amount float64, merchant string) []byte {
	b, _ := json.Marshal(map[string]any{"tx_id": id, "card_id": card, "terminal_id": term, "amount": amount, "merchant": merchant})
	return b
}

var (
	bundleOnce sync.Once
	bundle     *model.Bundle
)

// testModel is fitted once: ordinary amounts 10-40 at merchants m0-m3.
func testModel(t testing.TB) *Model {
	bundleOnce.Do(func() {
		rng := rand.New(rand.NewPCG(1, 1))
		var rows [][]string
		for i := range 4000 {
			m := rng.IntN(4)
			rows = append(rows, []string{fmt.Sprint(i), fmt.Sprintf("c%d", rng.IntN(50)), fmt.Sprintf("t%d", rng.IntN(30)),
				fmt.Sprint(float64(10+10*m) + rng.Float64()), fmt.Sprintf("m%d", m)})
		}
		b, err := model.Fit(schema, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 8, Hidden: 16, Bottleneck: 4}})
		if err != nil {
			panic(err)
		}
		bundle = b
	})
	return &Model{Bundle: bundle, Version: "1", Digest: "digest-1"}
}

// alert makes an alerts-topic record for a transaction.
func alert(id string, score float32, txn []byte) []byte {
	b, _ := json.Marshal(Alert{DecisionID: "transactions/0/" + id + "@digest-1", TransactionID: id, EntityKey: "c",
		Score: score, Threshold: 1, ModelVersion: "1", Reasons: []review.Reason{{Field: "amount", Observed: "1", Expected: "2"}},
		Transaction: txn})
	return b
}

type sink struct {
	mu   sync.Mutex
	got  []labels.Label
	fail error
}

func (s *sink) WriteLabels(_ context.Context, ls []labels.Label) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.got = append(s.got, ls...)
	return nil
}

func newService(t *testing.T, rdb redis.UniversalClient, out LabelSink, m *Model) *Service {
	t.Helper()
	s, err := New(Config{Redis: rdb, Prefix: prefixOf(rdb), Labels: out, Model: func() *Model { return m }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRedis is a client with the key prefix a test's services share.
type testRedis struct {
	redis.UniversalClient
	prefix string
}

func prefixOf(rdb redis.UniversalClient) string {
	if r, ok := rdb.(*testRedis); ok {
		return r.prefix
	}
	return ""
}

// miniRedis is redis-server at $REDIS_ADDR (.ci/run sets it), under a
// prefix of the test's own that is deleted afterwards, else miniredis.
func miniRedis(t *testing.T) redis.UniversalClient {
	prefix := fmt.Sprintf("test:casework:%d:", time.Now().UnixNano())
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() {
			ctx := context.Background()
			if keys, err := rdb.Keys(ctx, prefix+"*").Result(); err == nil && len(keys) > 0 {
				rdb.Del(ctx, keys...)
			}
			rdb.Close()
		})
		return &testRedis{rdb, prefix}
	}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return &testRedis{rdb, prefix}
}

// kinds: 40 huge amounts at m0 (scores 10..), 40 unknown merchants with
// ordinary amounts (scores 5..): two kinds of strangeness, one scoring
// higher than the other.
func ingestKinds(t *testing.T, s *Service) {
	t.Helper()
	var vals [][]byte
	for i := range 40 {
		vals = append(vals, alert(fmt.Sprintf("big%02d", i), float32(10+i), tx(fmt.Sprintf("big%02d", i), fmt.Sprintf("c%d", i), fmt.Sprintf("t%d", i), 5000+float64(i), "m0")))
		vals = append(vals, alert(fmt.Sprintf("odd%02d", i), float32(5+0.1*float64(i)), tx(fmt.Sprintf("odd%02d", i), fmt.Sprintf("c%d", 100+i), fmt.Sprintf("t%d", 100+i), 20, "zz")))
	}
	added, bad, err := s.Ingest(context.Background(), vals)
	if err != nil || len(bad) > 0 || added != 80 {
		t.Fatalf("ingest: added %d, bad %v, err %v", added, bad, err)
	}
}

func TestQueueCoversKindsAndSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	m := testModel(t)
	s := newService(t, rdb, &sink{}, m)
	ingestKinds(t, s)
	// The radius was learned from the first 64: the leader rebuilds.
	if need, _ := s.NeedsRebuild(ctx); !need {
		t.Fatal("no rebuild asked for after the clusters' warm-up")
	}
	if _, err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := s.Queue(ctx, 20)
	if err != nil || len(q) != 20 {
		t.Fatalf("queue: %d cases, %v", len(q), err)
	}
	kinds := map[string]int{}
	for _, c := range q {
		kinds[c.ID()[:3]]++
	}
	// By score alone the first 20 would all be "big".
	if kinds["odd"] == 0 || kinds["big"] == 0 {
		t.Fatalf("first 20 cases cover one kind: %v", kinds)
	}
	if q[0].ID() != "big39" {
		t.Fatalf("first case %s, want the strangest (big39)", q[0].ID())
	}
	// A redelivered alert is not queued twice; a bad record is returned.
	added, bad, err := s.Ingest(ctx, [][]byte{alert("big00", 10, tx("big00", "c0", "t0", 5000, "m0")), []byte(`{"nope":1}`)})
	if err != nil || added != 0 || len(bad) != 1 || !strings.Contains(bad[1].Error(), "transaction_id") {
		t.Fatalf("redelivery: added %d, bad %v, err %v", added, bad, err)
	}
	if n, _ := s.Pending(ctx); n != 80 {
		t.Fatalf("pending %d, want 80", n)
	}
	// Another replica (or a restart) sees the same queue.
	s2 := newService(t, rdb, &sink{}, m)
	q2, err := s2.Queue(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range q {
		if q[i].ID() != q2[i].ID() {
			t.Fatalf("after restart position %d: %s, was %s", i, q2[i].ID(), q[i].ID())
		}
	}
}

func TestLabelIsPublishedIndexedAndKeepsHistory(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	out := &sink{}
	s := newService(t, rdb, out, testModel(t))
	ingestKinds(t, s)
	// The topic refuses: nothing is indexed, the case stays queued.
	out.fail = errors.New("broker down")
	if _, err := s.Label(ctx, labels.Label{TransactionID: "big39", Label: labels.Fraud, Analyst: "ana"}); err == nil || !strings.Contains(err.Error(), "not recorded") {
		t.Fatalf("label with the topic down: %v", err)
	}
	if c, _ := s.Get(ctx, "big39"); !c.Pending() {
		t.Fatal("a label the topic refused was indexed")
	}
	out.fail = nil
	for _, bad := range []labels.Label{{TransactionID: "big39", Label: "maybe", Analyst: "ana"}, {TransactionID: "big39", Label: labels.Fraud}} {
		if _, err := s.Label(ctx, bad); err == nil {
			t.Fatalf("label %+v accepted", bad)
		}
	}
	l, err := s.Label(ctx, labels.Label{TransactionID: "big39", Label: labels.Legitimate, Analyst: "ana", Note: "known customer"})
	if err != nil {
		t.Fatal(err)
	}
	if l.ModelVersion != "1" || l.Source != SourceCase || l.At.IsZero() {
		t.Fatalf("label not completed: %+v", l)
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := s.Label(ctx, labels.Label{TransactionID: "big39", Label: labels.Fraud, Analyst: "bo"}); err != nil {
		t.Fatal(err)
	}
	if len(out.got) != 2 || out.got[0].Label != labels.Legitimate || out.got[1].Analyst != "bo" {
		t.Fatalf("published: %+v", out.got)
	}
	h, err := s.History(ctx, "big39")
	if err != nil || len(h) != 2 || h[0].Note != "known customer" || h[1].Label != labels.Fraud {
		t.Fatalf("history %+v %v", h, err)
	}
	c, _ := s.Get(ctx, "big39")
	if c.Pending() || c.Label.Label != labels.Fraud {
		t.Fatalf("case label %+v", c.Label)
	}
	q, _ := s.Queue(ctx, 100)
	if slices.ContainsFunc(q, func(c *Case) bool { return c.ID() == "big39" }) || len(q) != 79 {
		t.Fatalf("labelled case still queued (%d queued)", len(q))
	}
	// Tallies follow the latest label: t39 has one fraud, no legitimate.
	tl, _ := s.tallies(ctx, []string{"terminal_id=t39"})
	if tl["terminal_id=t39"] != (tally{fraud: 1}) {
		t.Fatalf("tally %+v", tl)
	}
	ci, err := s.Cluster(ctx, c.Cluster, 3)
	if err != nil || ci.Labelled[labels.Fraud] != 1 || ci.Labelled[labels.Legitimate] != 0 {
		t.Fatalf("cluster counts %+v %v", ci.Labelled, err)
	}
}

func TestConfirmedFraudRaisesItsTerminal(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	s := newService(t, rdb, &sink{}, testModel(t))
	ingestKinds(t, s)
	// A low-scoring case at the same terminal as odd00 ...
	if _, _, err := s.Ingest(ctx, [][]byte{alert("late", 1.01, tx("late", "c999", "t100", 21, "m1"))}); err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue(ctx, 100)
	if q[0].ID() == "late" {
		t.Fatal("setup: the low case is first already")
	}
	// ... rises to the top once odd00 is confirmed fraud.
	if _, err := s.Label(ctx, labels.Label{TransactionID: "odd00", Label: labels.Fraud, Analyst: "ana"}); err != nil {
		t.Fatal(err)
	}
	q, _ = s.Queue(ctx, 100)
	c, _ := s.Get(ctx, "late")
	if q[0].ID() != "late" || !strings.Contains(c.Raised, "terminal_id=t100") {
		t.Fatalf("first case %s; late raised %q", q[0].ID(), c.Raised)
	}
	// Two legitimate labels at t100 weigh against the one fraud: the lift
	// falls from 0.5 to 0.25 and late gives way.
	if _, _, err := s.Ingest(ctx, [][]byte{alert("good1", 1.01, tx("good1", "c998", "t100", 21, "m1")), alert("good2", 1.01, tx("good2", "c997", "t100", 21, "m1"))}); err != nil {
		t.Fatal(err)
	}
	before := c.Priority
	for _, id := range []string{"good1", "good2"} {
		if _, err := s.Label(ctx, labels.Label{TransactionID: id, Label: labels.Legitimate, Analyst: "ana"}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ = s.Get(ctx, "late")
	q, _ = s.Queue(ctx, 100)
	if !(c.Priority < before-0.2) || q[0].ID() == "late" {
		t.Fatalf("late's priority %.3f (was %.3f), first case %s", c.Priority, before, q[0].ID())
	}
}

func TestRerankerLearnsFromLabels(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	out := &sink{}
	m := testModel(t)
	s := newService(t, rdb, out, m)
	ingestKinds(t, s)
	if _, ok, _ := s.Retrain(ctx); ok {
		t.Fatal("a re-ranker without labels")
	}
	// Analysts find the odd merchants are fraud and the big amounts not.
	for i := range 8 {
		for _, l := range []labels.Label{{TransactionID: fmt.Sprintf("odd%02d", i), Label: labels.Fraud, Analyst: "ana"},
			{TransactionID: fmt.Sprintf("big%02d", i), Label: labels.Legitimate, Analyst: "ana"}} {
			if _, err := s.Label(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	rr, ok, err := s.Retrain(ctx)
	if err != nil || !ok || rr.Labels != 16 || rr.Frauds != 8 || rr.Digest != m.Digest {
		t.Fatalf("retrain: %+v %v %v", rr, ok, err)
	}
	if _, err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue(ctx, 10)
	// Every other case is raised (they share nothing) or not: the first
	// unraised case must now be an odd one, which score alone put last.
	for _, c := range q {
		if c.Raised != "" {
			continue
		}
		if !strings.HasPrefix(c.ID(), "odd") || c.Prob == nil || *c.Prob < 0.5 {
			t.Fatalf("first unraised case after learning: %s prob %v", c.ID(), c.Prob)
		}
		break
	}
	// Another replica loads the stored re-ranker.
	s2 := newService(t, rdb, out, m)
	if err := s2.Refresh(ctx); err != nil || s2.Reranker() == nil || s2.Reranker().Labels != 16 {
		t.Fatalf("refresh: %+v %v", s2.Reranker(), err)
	}
}

func TestLabelCluster(t *testing.T) {
	ctx := context.Background()
	rdb := miniRedis(t)
	out := &sink{}
	s := newService(t, rdb, out, testModel(t))
	ingestKinds(t, s)
	s.Rebuild(ctx)
	cs, err := s.Clusters(ctx, 5)
	if err != nil || len(cs) < 2 {
		t.Fatalf("clusters %d %v", len(cs), err)
	}
	target := cs[len(cs)-1]
	if len(target.Sample) == 0 || len(target.Reasons) == 0 {
		t.Fatalf("cluster view: %+v", target)
	}
	n, err := s.LabelCluster(ctx, target.ID, labels.Legitimate, "ana", "batch of refunds")
	if err != nil || int64(n) != target.Pending {
		t.Fatalf("labelled %d of %d: %v", n, target.Pending, err)
	}
	for _, l := range out.got {
		if l.Source != SourceCluster || l.Note != "batch of refunds" {
			t.Fatalf("cluster label %+v", l)
		}
	}
	after, _ := s.Cluster(ctx, target.ID, 5)
	if after.Pending != 0 || after.Labelled[labels.Legitimate] != int64(n) {
		t.Fatalf("after: %+v", after)
	}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	s := newService(t, miniRedis(t), &sink{}, nil)
	tok, err := s.StartSession(ctx, Session{User: "ana", Role: "analyst"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, tok)
	if err != nil || got.User != "ana" || len(got.CSRF) < 40 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := s.Session(ctx, tok+"x"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a wrong token: %v", err)
	}
	s.EndSession(ctx, tok)
	if _, err := s.Session(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after sign-out: %v", err)
	}
}

func TestRestoreFromTopics(t *testing.T) {
	ctx := context.Background()
	s := newService(t, miniRedis(t), &sink{}, testModel(t))
	alerts := [][]byte{alert("r1", 5, tx("r1", "c1", "t1", 5000, "m0")), alert("r2", 4, tx("r2", "c2", "t1", 6000, "m0")), []byte("junk")}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	lab := func(l labels.Label) []byte { b, _ := json.Marshal(l); return b }
	// Out of order on the topic: the later label wins, the history is in time order.
	ls := [][]byte{
		lab(labels.Label{TransactionID: "r1", Label: labels.Fraud, Analyst: "bo", At: at.Add(time.Hour), Source: "case"}),
		lab(labels.Label{TransactionID: "r1", Label: labels.Legitimate, Analyst: "ana", At: at, Source: "case"}),
		[]byte(`{"label":"fraud"}`),
	}
	queued, labelled, skipped, err := s.Restore(ctx, alerts, ls)
	if err != nil || queued != 2 || labelled != 1 || skipped != 2 {
		t.Fatalf("restore: queued %d labelled %d skipped %d: %v", queued, labelled, skipped, err)
	}
	c, _ := s.Get(ctx, "r1")
	h, _ := s.History(ctx, "r1")
	if c.Label == nil || c.Label.Label != labels.Fraud || len(h) != 2 || h[0].Analyst != "ana" || h[1].Analyst != "bo" {
		t.Fatalf("r1 after restore: %+v, history %+v", c.Label, h)
	}
	if n, _ := s.Pending(ctx); n != 1 {
		t.Fatalf("%d pending, want 1 (r2)", n)
	}
	// Restoring again changes nothing.
	if _, labelled, _, _ := s.Restore(ctx, alerts, ls); labelled != 0 {
		t.Fatalf("a second restore indexed %d labels again", labelled)
	}
	if h, _ := s.History(ctx, "r1"); len(h) != 2 {
		t.Fatalf("history after a second restore: %d", len(h))
	}
}
