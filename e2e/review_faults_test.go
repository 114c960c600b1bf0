package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
	"github.com/fraudstream/fraudstream/pkg/stream"
)

// TestReviewFaults runs `review run` on a broker and a redis-server of its
// own and injects the faults its promises are about:
//
//  1. redis-server SIGKILLed while alerts arrive, restarted with its data
//     (append-only file, fsync always): the running service queues every
//     alert once Redis is back. Then redis-server is SIGKILLed again, the
//     service is SIGKILLed while it retries a batch it could not store, and
//     both are restarted: the batch was not committed, so the new process
//     reads it again. Every alert (by transaction id) is queued exactly
//     once, redeliveries included.
//  2. The broker SIGKILLed: labelling answers an error and indexes nothing
//     (the case stays pending); once the broker is back the same label is
//     accepted.
//  3. redis-server SIGKILLed and replaced by an empty one: the leader queues
//     the alerts again from the alerts topic and indexes the labels again
//     from the labels topic (a relabelled case keeps its history, the latest
//     deciding); the unlabelled cases are pending again.
//
// Throughout, the labels topic holds exactly the labels the API answered
// 200 for, each once (read with kcat): a refused label never appears, a
// restore publishes nothing.
func TestReviewFaults(t *testing.T) {
	e := setup(t)
	kafkaDir, kport, rport := e.ownServices(t)
	out := filepath.Join(e.dir, "review")
	if b, err := exec.Command("go", "build", "-o", out, "../cmd/review").CombinedOutput(); err != nil {
		t.Fatalf("build review: %v\n%s", err, b)
	}
	e.bin["review"] = out

	aofDir := filepath.Join(e.dir, "redis-aof")
	redisProc := startRedisDurable(t, aofDir, rport)

	tx, alerts, labelsTopic := e.topic("rftx"), e.topic("rfalerts"), e.topic("rflabels")
	prefix := "rf:" + e.sfx + ":"
	common := []string{"--brokers", e.brokers, "--redis", e.redis, "--registry-prefix", prefix + "model:"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stream.EnsureTopics(ctx, stream.Config{Brokers: []string{e.brokers}}, stream.Topic{Name: alerts, Partitions: 3}); err != nil {
		t.Fatalf("creating the alerts topic: %v", err)
	}

	// A model, so cases are described, embedded and clustered as in
	// production (the registry lives in the same Redis).
	e.run("generator", "--brokers", e.brokers, "--topic", tx, "--count", "2500", "--rate", "0", "--seed", "41")
	e.run("trainer", append([]string{"run", "--once", "--transactions", tx, "--min-rows", "2000", "--epochs", "2"}, common...)...)

	users := filepath.Join(e.dir, "users")
	cmd := exec.Command(out, "passwd", "--user", "ana", "--role", "analyst")
	cmd.Stdin = strings.NewReader("ana-secret-pw\n")
	line, err := cmd.Output()
	if err != nil {
		t.Fatalf("review passwd: %v", err)
	}
	os.WriteFile(users, line, 0o600)
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	reviewArgs := append([]string{"run", "--addr", addr, "--users", users, "--insecure-cookies", "--alerts", alerts,
		"--labels", labelsTopic, "--transactions", "", "--dead-letter", e.topic("rfdead"), "--create-topics",
		"--group", "rf-" + e.sfx, "--prefix", prefix + "review:", "--refit-every", "1s", "--metrics-addr", "",
		"--log-level", "debug"}, common...)
	review := e.start("review", "review-1", reviewArgs...)
	api := &reviewAPI{t: t, base: "http://" + addr}
	api.login()

	feed := alertFeed(t, 600, 43)
	var sent []string               // transaction ids of the alerts on the topic
	labelled := map[string]string{} // transaction id: its latest label
	produce := func(lines []string) {
		t.Helper()
		e.kcatProduce(alerts, lines)
		for _, l := range lines {
			var a pipeline.Alert
			json.Unmarshal([]byte(l[strings.IndexByte(l, '\t')+1:]), &a)
			sent = append(sent, a.TransactionID)
		}
	}
	// queued waits until every alert sent and not labelled is queued
	// once: the queue lists each such transaction once and the pending
	// count is their number. (A rebuild moving cases between cluster lists can make a
	// read count one twice for a moment, so it is read until it settles.)
	queued := func(what string) {
		t.Helper()
		var want []string
		for _, id := range sortedSet(sent) {
			if labelled[id] == "" {
				want = append(want, id)
			}
		}
		settle(t, 90*time.Second, what, func() string {
			pending, ids := api.queue()
			slices.Sort(ids)
			if pending != int64(len(want)) || !slices.Equal(ids, want) {
				return fmt.Sprintf("%d pending, %d listed (%d distinct), want %d (%d records sent); missing %v, unexpected %v",
					pending, len(ids), len(slices.Compact(slices.Clone(ids))), len(want), len(sent), minus(want, ids), minus(ids, want))
			}
			return ""
		})
	}

	// 0. The first alerts are queued.
	produce(feed[:100])
	queued("the first 100 alerts to be queued")

	// 1a. redis-server killed while alerts arrive; restarted with its
	// data; the running service stores what it could not meanwhile.
	t.Log("1a: redis-server SIGKILLed while alerts arrive")
	go func() { time.Sleep(300 * time.Millisecond); redisProc.Process.Signal(syscall.SIGKILL) }()
	for i := 100; i < 200; i += 10 {
		produce(feed[i : i+10])
		time.Sleep(100 * time.Millisecond)
	}
	redisProc.Wait()
	waitLog(t, e, "review-1", 0, "queueing alerts failed")
	redisProc = startRedisDurable(t, aofDir, rport)
	queued("the alerts sent while Redis was down to be queued by the running service")

	// 1b. The service killed while it retries a batch Redis refuses: that
	// batch was not committed, so its replacement reads it again.
	t.Log("1b: redis-server SIGKILLed, then the review service while it retries")
	mark := logSize(e, "review-1")
	redisProc.Process.Signal(syscall.SIGKILL)
	redisProc.Wait()
	produce(feed[200:300])
	waitLog(t, e, "review-1", mark, "queueing alerts failed")
	review.Process.Signal(syscall.SIGKILL)
	review.Wait()
	redisProc = startRedisDurable(t, aofDir, rport)
	produce(feed[300:350])
	produce(feed[:20]) // redelivered alerts are not queued twice
	review = e.start("review", "review-2", reviewArgs...)
	queued("the batch the killed service could not store to be queued by its replacement")

	// 2. Labels while the broker is down.
	t.Log("2: the broker SIGKILLed; labelling")
	victim := sent[0]
	killKafka(t, kafkaDir)
	if code, body := api.label(victim, labels.Fraud, "while the broker is down"); code/100 == 2 {
		t.Fatalf("labelling with the broker down answered %d %s; want an error", code, body)
	}
	if c := api.get(victim); c.Case.Label != nil || len(c.History) != 0 {
		t.Fatalf("a label the labels topic did not take is indexed: %+v, history %+v", c.Case.Label, c.History)
	}
	if _, ids := api.queue(); !slices.Contains(ids, victim) {
		t.Fatalf("%s left the queue though its label was refused", victim)
	}
	startKafka(t, kafkaDir, kport)
	back := time.Now()
	refusedBefore := len(api.refused)
	waitFor(t, time.Minute, "labelling to work after the broker came back", func() bool {
		return api.labelOK(victim, labels.Fraud, "after the broker came back")
	})
	t.Logf("the first label after the broker came back was taken after %s (%d refused before it)",
		time.Since(back).Round(100*time.Millisecond), len(api.refused)-refusedBefore)
	if c := api.get(victim); c.Case.Label == nil || c.Case.Label.Label != labels.Fraud {
		t.Fatalf("%s after labelling: %+v", victim, c.Case.Label)
	}
	labelled[victim] = labels.Fraud
	produce(feed[350:360])
	queued("alerts sent after the broker came back to be queued")
	api.checkLabelsTopic(e.brokers, labelsTopic)
	// The labelled alert delivered again, then a new alert with its key
	// (its partition): once that is queued, the redelivery has been read,
	// and the case stays labelled, out of the queue.
	key := feed[0][:strings.IndexByte(feed[0], '\t')]
	produce([]string{feed[0], key + feed[360][strings.IndexByte(feed[360], '\t'):]})
	queued("an alert after a labelled one delivered again to be queued")
	if c := api.get(victim); c.Case.Label == nil || c.Case.Label.Label != labels.Fraud {
		t.Fatalf("%s delivered again after its label: %+v", victim, c.Case.Label)
	}

	// 3. Redis comes back empty: the leader restores the queue and the
	// labels from the topics.
	t.Log("3: labels, then redis-server SIGKILLed and replaced by an empty one")
	for i, l := range []string{labels.Fraud, labels.Legitimate, labels.Unsure, labels.Fraud} {
		id := sent[1+i]
		if !api.labelOK(id, l, "phase 3") {
			t.Fatalf("labelling %s %s failed", id, l)
		}
		labelled[id] = l
	}
	relabelled := sent[4]
	if !api.labelOK(relabelled, labels.Legitimate, "second thoughts") {
		t.Fatalf("relabelling %s failed", relabelled)
	}
	labelled[relabelled] = labels.Legitimate
	api.checkLabelsTopic(e.brokers, labelsTopic)
	mark = logSize(e, "review-2")
	redisProc.Process.Signal(syscall.SIGKILL)
	redisProc.Wait()
	startRedis(t, e.dir, rport) // empty, no persistence
	waitLog(t, e, "review-2", mark, "review queue restored from the topics")
	api.login() // sessions were in Redis
	all := sortedSet(sent)
	settle(t, time.Minute, "the queue and the labels to be restored from the topics", func() string {
		var bad []string
		pending, ids := api.queue()
		if pending != int64(len(all)-len(labelled)) {
			bad = append(bad, fmt.Sprintf("%d pending, want %d", pending, len(all)-len(labelled)))
		}
		for _, id := range all {
			c := api.get(id)
			lab := ""
			if c.Case.Label != nil {
				lab = c.Case.Label.Label
			}
			if lab != labelled[id] {
				bad = append(bad, fmt.Sprintf("%s is labelled %q, want %q", id, lab, labelled[id]))
			}
			if inQueue := slices.Contains(ids, id); inQueue != (labelled[id] == "") {
				bad = append(bad, fmt.Sprintf("%s (label %q) in the queue: %v", id, labelled[id], inQueue))
			}
		}
		if h := api.get(relabelled).History; len(h) != 2 || h[0].Label != labels.Fraud || h[1].Label != labels.Legitimate {
			bad = append(bad, fmt.Sprintf("the relabelled case's history: %+v, want fraud then legitimate", h))
		}
		return strings.Join(bad, "; ")
	})
	// The restore published nothing.
	api.checkLabelsTopic(e.brokers, labelsTopic)
}

// startRedisDurable starts a redis-server that keeps its data in dir
// through a SIGKILL: an append-only file, fsynced before each reply.
func startRedisDurable(t *testing.T, dir string, port int) *exec.Cmd {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	return startRedisWith(t, dir, port, "--appendonly", "yes", "--appendfsync", "always")
}

// alertFeed makes n alerts as the scorer writes them (key, tab, JSON), for
// generated transactions with distinct ids.
func alertFeed(t *testing.T, n int, seed uint64) []string {
	g := generator.New(generator.Config{Seed: seed})
	now := time.Now()
	lines := make([]string, 0, n)
	seen := map[string]bool{}
	for len(lines) < n {
		tx, _ := g.Next(now)
		if seen[tx.ID] {
			continue
		}
		seen[tx.ID] = true
		i := len(lines)
		a := pipeline.Alert{DecisionID: "d-" + tx.ID, TransactionID: tx.ID, EntityKey: tx.Card, Score: 0.5 + float32(i%97)/50,
			Threshold: 0.5, Policy: "fixed", ModelVersion: "1", Transaction: tx.JSON(),
			Reasons: []pipeline.AlertReason{{Field: "amount", Contribution: 1, Observed: "872.14", Expected: "216"}}}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, tx.Card+"\t"+string(b))
	}
	return lines
}

func sortedSet(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return out
}

// settle waits until check finds nothing wrong (""), and fails with what
// it found last when that takes longer than limit.
func settle(t *testing.T, limit time.Duration, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		bad := check()
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", limit, what, bad)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func logPath(e *env, logName string) string {
	dir := e.dir
	if d := os.Getenv("E2E_LOG_DIR"); d != "" {
		dir = d
	}
	return filepath.Join(dir, logName+".log")
}

func logSize(e *env, logName string) int64 {
	st, err := os.Stat(logPath(e, logName))
	if err != nil {
		return 0
	}
	return st.Size()
}

// waitLog waits until the program's log holds substr after its first
// from bytes.
func waitLog(t *testing.T, e *env, logName string, from int64, substr string) {
	t.Helper()
	waitFor(t, time.Minute, fmt.Sprintf("%q in %s's log", substr, logName), func() bool {
		b, _ := os.ReadFile(logPath(e, logName))
		return int64(len(b)) > from && strings.Contains(string(b[from:]), substr)
	})
}

// reviewAPI is an analyst on the JSON API. It remembers every label
// attempt and its answer.
type reviewAPI struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
	// acked: the label records the API answered 200 for (by note);
	// refused: the notes of the attempts it answered otherwise.
	acked   []labels.Label
	refused map[string]bool
}

// login signs in, retrying while the service or its Redis is not there.
func (a *reviewAPI) login() {
	a.t.Helper()
	jar, _ := cookiejar.New(nil)
	a.hc = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	waitFor(a.t, time.Minute, "signing in", func() bool {
		res, err := a.hc.Post(a.base+"/api/login", "application/json", strings.NewReader(`{"user":"ana","password":"ana-secret-pw"}`))
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var in struct {
			CSRF string `json:"csrf_token"`
		}
		json.NewDecoder(res.Body).Decode(&in)
		a.csrf = in.CSRF
		return res.StatusCode == 200 && a.csrf != ""
	})
}

// queue returns the pending count and the ids of the first 500 cases
// (-1 and nil when the API does not answer).
func (a *reviewAPI) queue() (int64, []string) {
	res, err := a.hc.Get(a.base + "/api/queue?n=500")
	if err != nil {
		return -1, nil
	}
	defer res.Body.Close()
	var q struct {
		Pending int64
		Cases   []struct{ ID string }
	}
	if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&q) != nil {
		return -1, nil
	}
	ids := make([]string, len(q.Cases))
	for i, c := range q.Cases {
		ids[i] = c.ID
	}
	return q.Pending, ids
}

type caseDetail struct {
	Case struct {
		ID    string
		Label *labels.Label
	}
	History []labels.Label
}

func (a *reviewAPI) get(id string) caseDetail {
	a.t.Helper()
	res, err := a.hc.Get(a.base + "/api/cases/" + url.PathEscape(id))
	if err != nil {
		a.t.Fatalf("GET case %s: %v", id, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var d caseDetail
	if res.StatusCode != 200 || json.Unmarshal(b, &d) != nil || d.Case.ID != id {
		a.t.Fatalf("GET case %s: %d %s", id, res.StatusCode, b)
	}
	return d
}

// label posts a label; every attempt carries a note of its own, so the
// labels topic tells which attempts were recorded.
func (a *reviewAPI) label(id, label, note string) (int, string) {
	if a.refused == nil {
		a.refused = map[string]bool{}
	}
	note = fmt.Sprintf("%s #%d", note, len(a.acked)+len(a.refused))
	body, _ := json.Marshal(map[string]string{"label": label, "note": note})
	req, _ := http.NewRequest("POST", a.base+"/api/cases/"+url.PathEscape(id)+"/label", strings.NewReader(string(body)))
	req.Header.Set("X-CSRF-Token", a.csrf)
	req.Header.Set("Content-Type", "application/json")
	res, err := a.hc.Do(req)
	if err != nil {
		a.refused[note] = true
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var l labels.Label
	if res.StatusCode != 200 || json.Unmarshal(b, &l) != nil {
		a.refused[note] = true
		return res.StatusCode, string(b)
	}
	a.acked = append(a.acked, l)
	return res.StatusCode, string(b)
}

func (a *reviewAPI) labelOK(id, label, note string) bool {
	code, body := a.label(id, label, note)
	if code != 200 {
		a.t.Logf("labelling %s %s: %d %s", id, label, code, strings.TrimSpace(body))
	}
	return code == 200
}

// checkLabelsTopic reads the labels topic with kcat: it holds each label
// the API acknowledged exactly once, keyed by its transaction, and none
// it refused.
func (a *reviewAPI) checkLabelsTopic(brokers, topic string) {
	a.t.Helper()
	var got map[string][]message
	waitFor(a.t, 30*time.Second, "the acknowledged labels on the labels topic", func() bool {
		got = map[string][]message{}
		for _, m := range readTopic(a.t, brokers, topic) {
			l, err := labels.Parse([]byte(m.value))
			if err != nil || l.TransactionID != m.key {
				a.t.Fatalf("labels topic record %s/%s %q: %v", m.part, m.off, m.value, err)
			}
			got[l.Note] = append(got[l.Note], m)
		}
		for _, l := range a.acked {
			if len(got[l.Note]) == 0 {
				return false
			}
		}
		return true
	})
	n := 0
	for note, ms := range got {
		n += len(ms)
		if a.refused[note] {
			a.t.Errorf("a label the API refused is on the labels topic: %q at %s/%s", note, ms[0].part, ms[0].off)
		}
		if len(ms) > 1 {
			a.t.Errorf("the label %q is on the labels topic %d times", note, len(ms))
		}
	}
	if n != len(a.acked) {
		a.t.Errorf("the labels topic holds %d labels; the API acknowledged %d", n, len(a.acked))
	}
}
