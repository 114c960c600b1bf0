package stream

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// settledGoroutines waits (up to 10s) for the goroutine count to fall to at
// most limit, giving connections closed by the test time to wind down, and
// returns the last count.
func settledGoroutines(limit int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 200 && n > limit; i++ {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// steadyGoroutines returns the goroutine count once it stops changing
// (bounded wait), so that goroutines of earlier tests do not count.
func steadyGoroutines() int {
	n := runtime.NumGoroutine()
	for range 40 {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

func TestGroupLagKeepsOneClient(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			topic := unique(t, "tx")
			if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			produce(t, ctx, c, topic, 30, 7)
			const slack = 5

			// The package-level call, as every scrape made it: today each
			// call left its transport's goroutines and connections behind.
			before := steadyGoroutines()
			for range 20 {
				if lag, err := GroupLag(ctx, c, "scorers", topic); err != nil || lag[0]+lag[1]+lag[2] != 30 {
					t.Fatalf("lag %v, %v", lag, err)
				}
			}
			if n := settledGoroutines(before + slack); n > before+slack {
				t.Fatalf("20 GroupLag calls: %d goroutines, %d before", n, before)
			}

			// One Admin for many calls: its goroutines are a constant.
			before = steadyGoroutines()
			a, err := NewAdmin(c)
			if err != nil {
				t.Fatal(err)
			}
			// The first calls open the connections that later calls reuse
			// (a few per broker: offsets are asked per partition in parallel).
			for range 5 {
				if _, err := a.GroupLag(ctx, "scorers", topic); err != nil {
					t.Fatal(err)
				}
			}
			warm := steadyGoroutines()
			for range 50 {
				if lag, err := a.GroupLag(ctx, "scorers", topic); err != nil || len(lag) != 3 {
					t.Fatalf("lag %v, %v", lag, err)
				}
			}
			// A few more connections may open when requests happen to
			// overlap more than before (each holds goroutines here and, for
			// the embedded broker, on the broker's side); today's code left
			// about 13 goroutines per call, 650 for these 50.
			if n := settledGoroutines(warm + 4*slack); n > warm+4*slack {
				t.Fatalf("50 calls on one Admin: %d goroutines, %d after the first 5", n, warm)
			}
			open := runtime.NumGoroutine()
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			n := settledGoroutines(before + slack)
			t.Logf("goroutines: %d before NewAdmin, %d after 5 calls, %d after 55, %d after Close", before, warm, open, n)
			if n > before+slack {
				t.Fatalf("after Close: %d goroutines, %d before NewAdmin (%d while open)", n, before, warm)
			}
		})
	}
}

func TestEnsureTopicsSettings(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			a := newAdmin(t, c)
			topic, existing := unique(t, "alerts"), unique(t, "transactions")
			if err := a.EnsureTopics(ctx, Topic{Name: existing, Partitions: 2}); err != nil {
				t.Fatal(err)
			}
			// Existing topics keep their partitions; missing ones get what was asked.
			if err := a.EnsureTopics(ctx, Topic{Name: existing, Partitions: 6}, Topic{Name: topic, Partitions: 4, MinISR: 2}); err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]int{existing: 2, topic: 4} {
				if ids, err := a.Partitions(ctx, name); err != nil || len(ids) != want {
					t.Fatalf("%s: partitions %v, %v; want %d", name, ids, err, want)
				}
			}
			res, err := a.cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
				{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"min.insync.replicas"}}}})
			if err != nil {
				t.Fatal(err)
			}
			var minISR string
			for _, r := range res.Resources {
				for _, e := range r.ConfigEntries {
					if e.ConfigName == "min.insync.replicas" {
						minISR = e.ConfigValue
					}
				}
			}
			if minISR != "2" {
				t.Fatalf("min.insync.replicas of a topic created with MinISR 2: %q (%+v)", minISR, res.Resources)
			}
			if err := a.EnsureTopics(ctx, Topic{Name: unique(t, "x"), Replication: 1, MinISR: 2}); err == nil || !strings.Contains(err.Error(), "min.insync.replicas 2 exceeds") {
				t.Fatalf("min ISR above the replication factor: %v", err)
			}
		})
	}
}

func TestCheckTopics(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			have, miss1, miss2 := unique(t, "transactions"), unique(t, "alerts"), unique(t, "dead")
			if err := EnsureTopics(ctx, c, Topic{Name: have}); err != nil {
				t.Fatal(err)
			}
			a := newAdmin(t, c)
			if err := a.CheckTopics(ctx, have); err != nil {
				t.Fatalf("an existing topic: %v", err)
			}
			err := a.CheckTopics(ctx, have, miss1, miss2)
			var missing *MissingTopicsError
			if !errors.As(err, &missing) || !slices.Equal(missing.Topics, []string{miss1, miss2}) ||
				!strings.Contains(err.Error(), "topics "+miss1+", "+miss2+" do not exist") || !strings.Contains(err.Error(), "--create-topics") {
				t.Fatalf("two missing topics: %v", err)
			}
			t.Log(err)
			// Checking created nothing (a fresh client sees fresh metadata).
			if err := newAdmin(t, c).CheckTopics(ctx, miss1); !errors.As(err, &missing) {
				t.Fatalf("CheckTopics created %s: %v", miss1, err)
			}
		})
	}
}

// A principal allowed to describe topics but not to create them (ACLs): with
// its topics in place it starts; a missing topic is named in the error.
func TestEnsureTopicsWithoutCreatePermission(t *testing.T) {
	e, err := StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, e.Config(), Topic{Name: "transactions", Partitions: 3}, Topic{Name: "alerts", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	var creates atomic.Int32
	e.c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		e.c.KeepControl()
		creates.Add(1)
		req := kreq.(*kmsg.CreateTopicsRequest)
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic = t.Topic
			rt.ErrorCode = int16(kafka.TopicAuthorizationFailed)
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	a := newAdmin(t, e.Config())
	if err := a.EnsureTopics(ctx, Topic{Name: "transactions", Partitions: 3}, Topic{Name: "alerts", Partitions: 3}); err != nil {
		t.Fatalf("existing topics without permission to create: %v", err)
	}
	if n := creates.Load(); n != 0 {
		t.Fatalf("%d CreateTopics requests for topics that exist", n)
	}
	err = a.EnsureTopics(ctx, Topic{Name: "transactions"}, Topic{Name: "scores", Partitions: 3})
	if err == nil || !strings.Contains(err.Error(), "create topic scores") || !errors.Is(err, kafka.TopicAuthorizationFailed) {
		t.Fatalf("creating a missing topic without permission: %v", err)
	}
}

// TestMemberLag: a member sees the partitions assigned to it and the
// messages waiting on them; a worker that is not a member has none (a
// scorer left without partitions must not count the group's lag as its
// own).
func TestMemberLag(t *testing.T) {
	for name, cfg := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			topic, group := unique(t, "tx"), unique(t, "group")
			if err := EnsureTopics(ctx, c, Topic{Name: topic, Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			produce(t, ctx, c, topic, 30, 7)
			a, err := NewAdmin(c)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			mc := c
			mc.ClientID = "member-" + group
			cons, err := NewConsumer(mc, topic, group, ConsumerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			msgs, err := cons.FetchBatch(ctx, nil, 10, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if err := cons.Commit(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			var parts []int
			var lag int64
			for deadline := time.Now().Add(30 * time.Second); ; {
				parts, lag, err = a.MemberLag(ctx, group, topic, mc.ClientID)
				if err == nil && len(parts) == 3 || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil || !slices.Equal(parts, []int{0, 1, 2}) || lag != int64(30-len(msgs)) {
				t.Fatalf("member: partitions %v, lag %d (%d fetched and committed), err %v", parts, lag, len(msgs), err)
			}
			parts, lag, err = a.MemberLag(ctx, group, topic, "someone-else")
			if err != nil || len(parts) != 0 || lag != 0 {
				t.Fatalf("not a member: %v %d %v", parts, lag, err)
			}
		})
	}
}

// TestLeaderless: EnsureTopics waits while a created topic is missing from
// the metadata or a partition has no leader (the gap in which writes fail
// with NOT_LEADER_OR_FOLLOWER), and not once every partition has one.
func TestLeaderless(t *testing.T) {
	led := kafka.Broker{ID: 1, Host: "127.0.0.1", Port: 9092}
	md := &kafka.MetadataResponse{Topics: []kafka.Topic{
		{Name: "a", Partitions: []kafka.Partition{{ID: 0, Leader: led}, {ID: 1, Leader: led}}},
		{Name: "b", Partitions: []kafka.Partition{{ID: 0, Leader: led}, {ID: 1, Leader: kafka.Broker{ID: -1}}}},
	}}
	if got := leaderless(md, []string{"a"}); got != "" {
		t.Errorf("topic with leaders: %q", got)
	}
	if got := leaderless(md, []string{"a", "b"}); !strings.Contains(got, "partition 1 of b has no leader") {
		t.Errorf("partition without a leader: %q", got)
	}
	if got := leaderless(md, []string{"c"}); !strings.Contains(got, "c is not in the metadata") {
		t.Errorf("missing topic: %q", got)
	}
	md.Topics[0].Partitions = nil
	if got := leaderless(md, []string{"a"}); got == "" {
		t.Error("a topic without partitions counted as ready")
	}
}
