package reviewservice

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"golang.org/x/crypto/bcrypt"

	"github.com/fraudstream/fraudstream/internal/proctest"
	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/review"
	"github.com/fraudstream/fraudstream/pkg/reviewweb"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

var schema = &features.Schema{Fields: []features.Field{
	{Name: "tx_id", Kind: features.ID}, {Name: "card_id", Kind: features.ID}, {Name: "terminal_id", Kind: features.ID},
	{Name: "amount", Kind: features.Numeric}, {Name: "merchant", Kind: features.Categorical},
}, IDField: "tx_id", KeyField: "card_id"}

func txJSON(id, card, term string, amount float64, merchant string) []byte {
	b, _ := json.Marshal(map[string]any{"tx_id": id, "card_id": card, "terminal_id": term, "amount": amount, "merchant": merchant})
	return b
}

// TestServiceQueuesLabelsAndSetsAside runs the service on the embedded
// broker and miniredis: alerts are queued (a record that is not an alert
// goes to the dead-letter topic with its reason), the recent store is
// filled from the transactions topic, an analyst labels through the API
// and the label is on the labels topic; a second replica serves the same
// queue; and when Redis loses its data, the queue and the labels come
// back from the topics.
func TestServiceQueuesLabelsAndSetsAside(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	sc := broker.Config()
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	if err := stream.EnsureTopics(ctx, sc, stream.Topic{Name: "tx", Partitions: 2}, stream.Topic{Name: "alerts", Partitions: 2}); err != nil {
		t.Fatal(err)
	}

	// A model in the registry.
	rng := rand.New(rand.NewPCG(3, 3))
	var rows [][]string
	for i := range 3000 {
		m := rng.IntN(4)
		rows = append(rows, []string{fmt.Sprint(i), fmt.Sprintf("c%d", rng.IntN(50)), fmt.Sprintf("t%d", rng.IntN(20)),
			fmt.Sprint(float64(10+10*m) + rng.Float64()), fmt.Sprintf("m%d", m)})
	}
	b, err := model.Fit(schema, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 8, Bottleneck: 3}})
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := b.MarshalBinary()
	reg, _ := registry.New(registry.Config{Client: rc, Prefix: "m:"})
	if _, err := reg.Store(ctx, blob, registry.Info{}, true); err != nil {
		t.Fatal(err)
	}

	// Transactions and their alerts, and one record that is not an alert.
	prod, _ := stream.NewProducer(sc, stream.ProducerOptions{})
	defer prod.Close()
	var txs, alerts []kafka.Message
	for i := range 30 {
		id := fmt.Sprintf("a%02d", i)
		raw := txJSON(id, fmt.Sprintf("c%d", i), "t7", 4000+float64(i), "m1")
		txs = append(txs, kafka.Message{Topic: "tx", Key: []byte(id), Value: raw})
		a, _ := json.Marshal(casework.Alert{TransactionID: id, Score: float32(5 + i), Threshold: 2, ModelVersion: "1",
			Reasons: []review.Reason{{Field: "amount", Observed: fmt.Sprint(4000 + i), Expected: "25"}}, Transaction: raw})
		alerts = append(alerts, kafka.Message{Topic: "alerts", Key: []byte(id), Value: a})
	}
	alerts = append(alerts, kafka.Message{Topic: "alerts", Key: []byte("junk"), Value: []byte(`{"transaction_id":`)})
	if err := prod.Write(ctx, txs...); err != nil {
		t.Fatal(err)
	}
	if err := prod.Write(ctx, alerts...); err != nil {
		t.Fatal(err)
	}

	h, _ := bcrypt.GenerateFromPassword([]byte("ana-password"), bcrypt.MinCost)
	users, err := reviewweb.ParseUsers(strings.NewReader("ana:analyst:" + string(h)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	first := true
	start := func() (string, *casework.Service) {
		ready := make(chan struct{})
		var url string
		var svc *casework.Service
		cfg := Config{Stream: sc, Redis: rc, Alerts: "alerts", Labels: "labels", Transactions: "tx", Dead: "alerts-dead", CreateTopics: true,
			RegistryPrefix: "m:", Users: users, Addr: "127.0.0.1:0", InsecureCookies: true, Recent: 1000, Retention: time.Hour,
			Ready: func(u string, s *casework.Service) { url, svc = u, s; close(ready) }}
		if first {
			cfg.MetricsAddr, first = metricsAddr, false
		}
		wg.Go(func() {
			if err := Run(runCtx, cfg); err != nil {
				t.Error(err)
			}
		})
		select {
		case <-ready:
		case <-ctx.Done():
			t.Fatal("the service did not start")
		}
		return url, svc
	}
	url, svc := start()
	// Every alert is queued and the recent store holds the transactions.
	var c *casework.Case
	for {
		n, _ := svc.Pending(ctx)
		c, _ = svc.Get(ctx, "a29")
		if n == 30 && c != nil && c.Digest != "" {
			if sim, _ := svc.Similar(ctx, c, 3); len(sim) == 3 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%d alerts queued; a29 %+v", n, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h := svc.EntityHistory(c, 5)["terminal_id=t7"]; len(h) != 5 {
		t.Fatalf("terminal t7's recent transactions: %d", len(h))
	}
	dead := readTopic(t, ctx, sc, "alerts-dead", 1)
	if stream.Header(dead[0], stream.HeaderReason) == "" || string(dead[0].Value) != `{"transaction_id":` {
		t.Fatalf("dead letter %+v", dead[0])
	}

	// Sign in and label through the API.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	res, err := hc.Post(url+"/api/login", "application/json", strings.NewReader(`{"user":"ana","password":"ana-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		CSRF string `json:"csrf_token"`
	}
	json.NewDecoder(res.Body).Decode(&login)
	res.Body.Close()
	req, _ := http.NewRequest("POST", url+"/api/cases/a29/label", strings.NewReader(`{"label":"fraud","note":"confirmed with the cardholder"}`))
	req.Header.Set("X-CSRF-Token", login.CSRF)
	res, err = hc.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("label: %v %v", res.StatusCode, err)
	}
	res.Body.Close()
	got := readTopic(t, ctx, sc, "labels", 1)
	l, err := labels.Parse(got[0].Value)
	if err != nil || string(got[0].Key) != "a29" || l.Label != labels.Fraud || l.Analyst != "ana" || l.Note != "confirmed with the cardholder" {
		t.Fatalf("labels topic: %s %s (%v)", got[0].Key, got[0].Value, err)
	}
	// The metrics count what happened.
	res, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"fraudstream_review_alerts_queued_total 30", "fraudstream_review_alerts_dead_lettered_total 1",
		`fraudstream_review_labels_total{label="fraud",source="case"} 1`, "fraudstream_review_pending 29",
		`fraudstream_review_http_request_duration_seconds_count{code="OK",route="POST /api/cases/{id}/label"} 1`} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The other cases at terminal t7 are raised.
	q, _ := svc.Queue(ctx, 5)
	if len(q) == 0 || !strings.Contains(q[0].Raised, "terminal_id=t7") {
		t.Fatalf("first case after the fraud label: %+v", q[0])
	}

	// A second replica serves the same queue.
	_, svc2 := start()
	q2, err := svc2.Queue(ctx, 5)
	if err != nil || len(q2) != len(q) || q2[0].ID() != q[0].ID() {
		t.Fatalf("second replica's queue differs: %v", err)
	}

	// Redis loses its data: the queue comes back from the topics, the
	// labelled case reviewed with its history; sessions are gone.
	mr.FlushAll()
	for {
		n, _ := svc.Pending(ctx)
		c, _ := svc.Get(ctx, "a29")
		if n == 29 && c != nil && c.Label != nil {
			if c.Label.Label != labels.Fraud || c.Label.Analyst != "ana" {
				t.Fatalf("restored label %+v", c.Label)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after Redis lost its data: %d pending, a29 %+v", n, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h, _ := svc.History(ctx, "a29"); len(h) != 1 || h[0].Note != "confirmed with the cardholder" {
		t.Fatalf("restored history %+v", h)
	}
	res, err = hc.Get(url + "/api/queue")
	if err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session after Redis lost its data: %v %v", res.StatusCode, err)
	}
	res.Body.Close()
}

// readTopic reads at least n records of a topic from the beginning.
func readTopic(t *testing.T, ctx context.Context, sc stream.Config, topic string, n int) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	var mu sync.Mutex
	tctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		stream.Tail(tctx, sc, topic, time.Unix(0, 0), func(ms []kafka.Message) {
			mu.Lock()
			out = append(out, ms...)
			mu.Unlock()
		})
	})
	for {
		mu.Lock()
		k := len(out)
		mu.Unlock()
		if k >= n {
			mu.Lock()
			defer mu.Unlock()
			return out
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records, want %d", topic, k, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
