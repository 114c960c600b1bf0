package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/fraudstream/fraudstream/pkg/registry"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

var testSchema = &features.Schema{
	Fields: []features.Field{
		{Name: "tx_id", Kind: features.ID},
		{Name: "card_id", Kind: features.ID},
		{Name: "amount", Kind: features.Numeric},
		{Name: "merchant", Kind: features.Categorical},
	},
	IDField: "tx_id", KeyField: "card_id",
}

func testTx(rng *rand.Rand, id string) map[string]any {
	m := rng.IntN(4)
	return map[string]any{"tx_id": id, "card_id": fmt.Sprintf("c%d", rng.IntN(40)), "amount": float64(10+10*m) + rng.Float64(), "merchant": fmt.Sprintf("m%d", m)}
}

func testBundle(t *testing.T) []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	var rows [][]string
	for i := range 3000 {
		r := testTx(rng, fmt.Sprint(i))
		rows = append(rows, []string{r["tx_id"].(string), r["card_id"].(string), fmt.Sprint(r["amount"]), r["merchant"].(string)})
	}
	b, err := model.Fit(testSchema, rows, model.FitOptions{AE: ae.Config{Seed: 1, Epochs: 3, Hidden: 8, Bottleneck: 3}})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func status(addr, path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestServeMissingTopics: without --create-topics a missing topic is an
// error that names it, and nothing is created.
func TestServeMissingTopics(t *testing.T) {
	broker, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	mr := miniredis.RunT(t)
	c := testConfig(broker, mr.Addr(), "")
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = serve(ctx, c, &log)
	if err == nil || !strings.Contains(err.Error(), "do not exist") || !strings.Contains(err.Error(), c.Tx) || !strings.Contains(err.Error(), "--create-topics") {
		t.Fatalf("err %v", err)
	}
	a, _ := stream.NewAdmin(broker.Config())
	defer a.Close()
	if err := a.CheckTopics(ctx, c.Tx); err == nil {
		t.Fatal("the check created the topic")
	}
}

func testConfig(broker *stream.Embedded, redisAddr, metrics string) runConfig {
	var c runConfig
	fs := newFlagSet()
	runFlags(fs, &c)
	fs.Parse(nil)
	sfx := fmt.Sprint(time.Now().UnixNano())
	c.Brokers, c.Redis.Addr, c.MetricsAddr = strings.Join(broker.Addrs(), ","), redisAddr, metrics
	c.Tx, c.Alerts, c.Scores, c.Dead, c.Group = "tx-"+sfx, "alerts-"+sfx, "scores-"+sfx, "dead-"+sfx, "g-"+sfx
	c.Poll = 200 * time.Millisecond
	return c
}

// TestServeJoinsOnlyWithAModel: a worker with no model does not join the
// consumer group (it would hold partitions it cannot score); it is live but
// not ready. Once a model is published it joins and decides everything.
func TestServeJoinsOnlyWithAModel(t *testing.T) {
	broker, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	mr := miniredis.RunT(t)
	addr := freeAddr(t)
	c := testConfig(broker, mr.Addr(), addr)
	c.CreateTopics, c.Partitions = true, 3
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log syncBuffer
	var wg sync.WaitGroup
	var serveErr error
	runCtx, stop := context.WithCancel(ctx)
	wg.Go(func() { serveErr = serve(runCtx, c, &log) })

	for status(addr, "/healthz") != 200 {
		time.Sleep(20 * time.Millisecond)
	}
	prod, _ := stream.NewProducer(broker.Config(), stream.ProducerOptions{})
	defer prod.Close()
	rng := rand.New(rand.NewPCG(2, 2))
	var msgs []kafka.Message
	for i := range 100 {
		v, _ := json.Marshal(testTx(rng, fmt.Sprintf("t%d", i)))
		msgs = append(msgs, kafka.Message{Topic: c.Tx, Value: v})
	}
	if err := prod.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	cl := &kafka.Client{Addr: kafka.TCP(broker.Addrs()...), Timeout: 5 * time.Second}
	members := func() int {
		res, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{c.Group}})
		if err != nil || len(res.Groups) == 0 {
			return 0
		}
		return len(res.Groups[0].Members)
	}
	if n := members(); n != 0 {
		t.Fatalf("%d members in the group before any model exists", n)
	}
	if s := status(addr, "/readyz"); s != 503 {
		t.Fatalf("/readyz without a model: %d", s)
	}

	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rc.Close()
	reg, _ := registry.New(registry.Config{Client: rc})
	blob := testBundle(t)
	if _, err := reg.Store(ctx, blob, registry.Info{Digest: model.Digest(blob)}, true); err != nil {
		t.Fatal(err)
	}
	cons, err := stream.NewConsumer(broker.Config(), c.Scores, "check", stream.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for len(seen) < 100 {
		b, err := cons.FetchBatch(ctx, nil, 100, 50*time.Millisecond)
		if err != nil {
			t.Fatalf("%d decisions: %v\n%s", len(seen), err, log.String())
		}
		for _, m := range b {
			var d struct{ ID string }
			json.Unmarshal(m.Value, &d)
			seen[d.ID] = true
		}
	}
	if n := members(); n != 1 {
		t.Fatalf("%d members after the model loaded", n)
	}
	if s := status(addr, "/readyz"); s != 200 {
		t.Fatalf("/readyz with a model: %d", s)
	}
	stop()
	wg.Wait()
	if serveErr != nil {
		t.Fatal(serveErr)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
