package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

// TestFaults streams transactions through two scorers and a trainer on a
// broker and a Redis of its own, and injects the faults a deployment meets:
// a scorer SIGKILLed and replaced, the broker SIGKILLed for 30 s and
// restarted, redis-server SIGKILLed and restarted empty, and malformed
// messages (not JSON, wrong types, {}, an oversized value). Afterwards
// every transaction the broker holds has a decision on the scores topic,
// every malformed message is on the dead-letter topic with its reason, the
// scorers that were not killed are still the original processes and are
// live and ready, and each fault's recovery time is within its bound.
// Transactions are produced and every topic is read with kcat.
func TestFaults(t *testing.T) {
	e := setup(t)
	kafkaDir, kport, rport := e.ownServices(t)
	redisProc := startRedis(t, e.dir, rport)

	tx, alerts, scores, dead := e.topic("tx"), e.topic("alerts"), e.topic("scores"), e.topic("dead")
	prefix := "faults:" + e.sfx + ":"
	common := []string{"--brokers", e.brokers, "--redis", e.redis, "--registry-prefix", prefix}
	metricsAddr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)) }
	scorerArgs := func(addr string) []string {
		return append([]string{"run", "--transactions", tx, "--alerts", alerts, "--scores", scores, "--dead-letter", dead,
			"--group", "faults-" + e.sfx, "--metrics-addr", addr, "--model-poll", "2s",
			"--create-topics", "--partitions", "4", "--log-level", "debug"}, common...)
	}
	addrA, addrB := metricsAddr(), metricsAddr()
	scorerA := e.start("scorer", "scorer-a", scorerArgs(addrA)...)
	waitPartitions(t, e.brokers, tx, 4)
	scorerB := e.start("scorer", "scorer-b", scorerArgs(addrB)...)
	e.start("trainer", "trainer", append([]string{"run", "--transactions", tx, "--every", "20s", "--window", "1h",
		"--min-rows", "3000", "--epochs", "3", "--metrics-addr", ""}, common...)...)

	// Decisions, as the scorers write them, read continuously with kcat.
	watch := startWatch(t, e.brokers, scores)
	prod := startProducer(t, e.brokers, tx)
	stopStream := prod.stream(2000)

	waitFor(t, 3*time.Minute, "the first model and decisions", func() bool { return watch.count() > 2000 })
	t.Logf("first decisions after %s", time.Since(prod.started).Round(time.Second))
	faults := map[string]time.Duration{}

	// a) A scorer SIGKILLed, another started in its place.
	time.Sleep(3 * time.Second)
	at := time.Now()
	t.Logf("%s scorer-b killed", at.Format("15:04:05.000"))
	scorerB.Process.Signal(syscall.SIGKILL)
	scorerB.Wait()
	addrC := metricsAddr()
	e.start("scorer", "scorer-c", scorerArgs(addrC)...)
	faults["scorer SIGKILL"] = watch.recovery(t, at, 4)

	// Malformed messages among the traffic.
	malformed := []string{
		"bad-1\tnot json at all",
		"bad-2\t{\"tx_id\": \"broken\", \"amount\": ",
		`bad-3` + "\t" + `{"tx_id":12345,"card_id":["x"],"amount":"lots","event_time":true,"country":7}`,
		"bad-4\t{}",
		"bad-5\t{\"tx_id\":\"huge\",\"note\":\"" + strings.Repeat("x", 200_000) + "\"}",
	}
	prod.send(malformed...)

	// b) The broker SIGKILLed, down for 30 s, restarted.
	time.Sleep(5 * time.Second)
	killKafka(t, kafkaDir)
	t.Logf("%s broker killed", time.Now().Format("15:04:05.000"))
	time.Sleep(30 * time.Second)
	startKafka(t, kafkaDir, kport)
	at = time.Now()
	t.Logf("%s broker back", at.Format("15:04:05.000"))
	faults["broker restart"] = watch.recovery(t, at, 4)

	// c) redis-server SIGKILLed and restarted empty: the scorers keep
	// deciding with the model they hold; the trainer's next round
	// publishes a new "version 1", which they must load although they
	// hold a version 1 already.
	time.Sleep(5 * time.Second)
	digestsBefore := watch.digests()
	at = time.Now()
	t.Logf("%s redis-server killed", at.Format("15:04:05.000"))
	redisProc.Process.Signal(syscall.SIGKILL)
	redisProc.Wait()
	redisProc = startRedis(t, e.dir, rport)
	faults["redis restart"] = watch.recovery(t, at, 4)
	waitFor(t, 2*time.Minute, "a model trained after Redis came back to be used", func() bool {
		for d := range watch.digests() {
			if !digestsBefore[d] {
				return true
			}
		}
		return false
	})

	time.Sleep(5 * time.Second)
	stopStream()
	produced := prod.close(t)

	// Every transaction the broker holds has a decision; malformed ones
	// are dead letters.
	held := readTopic(t, e.brokers, tx)
	var want []string
	bad := map[string]bool{}
	for _, m := range held {
		if strings.HasPrefix(m.key, "bad-") {
			bad[m.part+"/"+m.off] = true
			continue
		}
		var v struct {
			ID string `json:"tx_id"`
		}
		if err := json.Unmarshal([]byte(m.value), &v); err != nil || v.ID == "" {
			t.Fatalf("transaction %s/%s does not parse: %v", m.part, m.off, err)
		}
		want = append(want, v.ID)
	}
	if len(bad) != len(malformed) {
		t.Fatalf("the broker holds %d malformed messages, %d were sent", len(bad), len(malformed))
	}
	var missing []string
	waitFor(t, 2*time.Minute, "every transaction to be decided", func() bool {
		got := watch.byID()
		missing = missing[:0]
		for _, id := range want {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	decisions, dups := 0, 0
	for _, n := range watch.byID() {
		decisions += n
		dups += n - 1
	}

	dl := readTopic(t, e.brokers, dead)
	for _, m := range dl {
		src := m.headers["fraudstream-source-partition"] + "/" + m.headers["fraudstream-source-offset"]
		if bad[src] && m.headers["fraudstream-reason"] != "" {
			delete(bad, src)
		}
	}
	if len(bad) > 0 {
		t.Errorf("malformed messages not dead-lettered with a reason: %v (dead letters: %d)", bad, len(dl))
	}

	// The scorers that were not killed are the original processes, live and ready.
	if err := scorerA.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("scorer-a is gone: %v", err)
	}
	for _, addr := range []string{addrA, addrC} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := httpGet(addr + path); code != 200 {
				t.Errorf("%s%s: %d %s", addr, path, code, body)
			}
		}
	}
	names := make([]string, 0, len(faults))
	for k := range faults {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("recovery after %s: %s", k, faults[k].Round(100*time.Millisecond))
		if faults[k] > 10*time.Second {
			t.Errorf("decisions resumed %s after the %s, want within 10s", faults[k].Round(100*time.Millisecond), k)
		}
	}
	// kcat retries what the broker wrote but could not acknowledge before it
	// died, so the topic can hold a transaction twice; each copy is decided.
	t.Logf("lines sent to kcat %d (%d malformed); transactions held by the broker %d (%d distinct); decisions %d; missing %d; decisions beyond one per transaction %d (%.3f%%)",
		produced, len(malformed), len(want), len(distinct(want)), decisions, len(missing), dups, 100*float64(dups)/float64(max(decisions, 1)))
}

func distinct(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// freePorts returns a port p such that p .. p+n-1 are free now.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for k := 1; k < n; k++ {
			l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+k))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports")
	return 0
}

// ownServices gives a fault test a broker and a Redis port of its own,
// skipping the test without Java or redis-server: it starts Apache Kafka
// (stopped at cleanup) and points e at it and at the Redis port, which the
// test starts redis-server on as it needs (startRedis, startRedisDurable).
// It returns what killKafka and startKafka need.
func (e *env) ownServices(t *testing.T) (kafkaDir string, kport, rport int) {
	t.Helper()
	for _, p := range []string{"redis-server", "java"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skip(p + " is not installed")
		}
	}
	kafkaDir = filepath.Join(e.dir, "kafka")
	kport = freePorts(t, 2)
	e.brokers = fmt.Sprintf("127.0.0.1:%d", kport)
	startKafka(t, kafkaDir, kport)
	t.Cleanup(func() { exec.Command("../scripts/kafka.sh", "stop", kafkaDir).Run() })
	rport = freePorts(t, 1)
	e.redis = fmt.Sprintf("127.0.0.1:%d", rport)
	return kafkaDir, kport, rport
}

func startKafka(t *testing.T, dir string, port int) {
	t.Helper()
	out, err := exec.Command("../scripts/kafka.sh", "start", dir, strconv.Itoa(port)).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka.sh start: %v\n%s", err, out)
	}
}

func killKafka(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kafka.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the broker did not die")
}

// startRedis starts an empty redis-server with no persistence.
func startRedis(t *testing.T, dir string, port int) *exec.Cmd {
	t.Helper()
	return startRedisWith(t, dir, port, "--appendonly", "no")
}

// startRedisWith starts a redis-server in dir on port with extra
// arguments, and waits until it accepts connections.
func startRedisWith(t *testing.T, dir string, port int, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("redis-server", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 10*time.Second, "redis-server", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			if d, err := time.ParseDuration(os.Getenv("E2E_PAUSE_ON_FAIL")); err == nil {
				t.Logf("%s timed out waiting for %s; pausing %s with everything running, for diagnosis", time.Now().Format("15:04:05"), what, d)
				time.Sleep(d)
			}
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

// producer feeds kcat -P through a pipe; kcat (librdkafka) buffers and
// retries through a broker outage.
type producer struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	mu      sync.Mutex
	n       int
	started time.Time
	stderr  bytes.Buffer
}

func startProducer(t *testing.T, brokers, topic string) *producer {
	t.Helper()
	p := &producer{started: time.Now()}
	// -E: kcat exits on "all brokers down" without it, and the broker's
	// outage is the point here.
	p.cmd = exec.Command("kcat", "-E", "-b", brokers, "-P", "-t", topic, "-K", "\t",
		"-X", "message.timeout.ms=300000", "-X", "linger.ms=5", "-X", "message.max.bytes=1000000")
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *producer) send(lines ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range lines {
		io.WriteString(p.in, l+"\n")
	}
	p.n += len(lines)
}

// stream sends generated transactions at rate per second until stopped.
func (p *producer) stream(rate int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		g := generator.New(generator.Config{Seed: uint64(time.Now().UnixNano())})
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				lines := make([]string, 0, rate/100)
				for range rate / 100 {
					tx, _ := g.Next(now)
					lines = append(lines, tx.Card+"\t"+string(tx.JSON()))
				}
				p.send(lines...)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// close flushes kcat and returns how many lines were sent.
func (p *producer) close(t *testing.T) int {
	p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("kcat producer: %v\n%s", err, p.stderr.String())
	}
	return p.n
}

// watch reads the scores topic as it grows.
type watch struct {
	mu    sync.Mutex
	decs  []watched
	ids   map[string]int
	model map[string]bool
}

type watched struct {
	at        time.Time // when the scorer wrote it (the message timestamp)
	partition int       // source partition of the decided transaction
}

func startWatch(t *testing.T, brokers, topic string) *watch {
	w := &watch{ids: map[string]int{}, model: map[string]bool{}}
	cmd := exec.Command("kcat", "-E", "-b", brokers, "-C", "-t", topic, "-o", "beginning", "-u", "-q", "-f", "%T\t%s\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ts, js, ok := strings.Cut(sc.Text(), "\t")
			if !ok {
				continue
			}
			ms, _ := strconv.ParseInt(ts, 10, 64)
			var d pipeline.Decision
			if json.Unmarshal([]byte(js), &d) != nil {
				continue
			}
			w.mu.Lock()
			w.decs = append(w.decs, watched{at: time.UnixMilli(ms), partition: d.Source.Partition})
			w.ids[d.TransactionID]++
			w.model[d.ModelDigest] = true
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); <-done })
	return w
}

func (w *watch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.decs)
}

func (w *watch) byID() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.ids))
	for k, v := range w.ids {
		out[k] = v
	}
	return out
}

func (w *watch) digests() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for k := range w.model {
		out[k] = true
	}
	return out
}

// recovery waits until every one of the partitions has a decision written
// after at, and returns the longest wait: how long the slowest partition
// went undecided after the fault.
func (w *watch) recovery(t *testing.T, at time.Time, partitions int) time.Duration {
	t.Helper()
	var worst time.Duration
	waitFor(t, 2*time.Minute, "decisions on every partition after the fault", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		first := map[int]time.Time{}
		for _, d := range w.decs {
			if d.at.After(at) {
				if f, ok := first[d.partition]; !ok || d.at.Before(f) {
					first[d.partition] = d.at
				}
			}
		}
		if len(first) < partitions {
			return false
		}
		worst = 0
		for _, f := range first {
			worst = max(worst, f.Sub(at))
		}
		return true
	})
	return worst
}

type message struct {
	key, value, part, off string
	headers               map[string]string
}

// readTopic reads a whole topic with kcat: key, partition, offset, headers
// and value of every message.
func readTopic(t *testing.T, brokers, topic string) []message {
	t.Helper()
	out, err := exec.Command("kcat", "-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", "%k\x1f%p\x1f%o\x1f%h\x1f%s\x1e").Output()
	if err != nil {
		t.Fatalf("kcat consume %s: %v", topic, err)
	}
	var msgs []message
	for _, rec := range bytes.Split(out, []byte{0x1e}) {
		f := strings.SplitN(string(rec), "\x1f", 5)
		if len(f) != 5 {
			continue
		}
		m := message{key: f[0], part: f[1], off: f[2], value: f[4], headers: map[string]string{}}
		for _, h := range strings.Split(f[3], ",") {
			if k, v, ok := strings.Cut(h, "="); ok {
				m.headers[k] = v
			}
		}
		msgs = append(msgs, m)
	}
	return msgs
}
