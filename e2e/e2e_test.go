// Package e2e runs the real programs against real Kafka and Redis, talking
// to the topics with kcat, a client this project did not write. It runs
// when KAFKA_BROKERS and REDIS_ADDR are set and kcat is installed (.ci/run
// provides all three).
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/internal/proctest"
	"github.com/fraudstream/fraudstream/pkg/generator"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

type env struct {
	t       *testing.T
	dir     string
	brokers string
	redis   string
	bin     map[string]string
	sfx     string
}

func setup(t *testing.T) *env {
	brokers, redis := os.Getenv("KAFKA_BROKERS"), os.Getenv("REDIS_ADDR")
	if brokers == "" || redis == "" {
		t.Skip("KAFKA_BROKERS and REDIS_ADDR are not set (.ci/run sets them)")
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	e := &env{t: t, dir: t.TempDir(), brokers: brokers, redis: redis, bin: map[string]string{}, sfx: fmt.Sprint(time.Now().UnixNano())}
	for _, name := range []string{"trainer", "scorer", "generator"} {
		out := filepath.Join(e.dir, name)
		cmd := exec.Command("go", "build", "-o", out, "../cmd/"+name)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, b)
		}
		e.bin[name] = out
	}
	return e
}

func (e *env) topic(name string) string { return name + "-" + e.sfx }

// start runs a program in the background, its output in a log file.
func (e *env) start(name, logName string, args ...string) *exec.Cmd {
	e.t.Helper()
	logDir := e.dir
	if d := os.Getenv("E2E_LOG_DIR"); d != "" {
		logDir = d // kept after the test, for diagnosis
	}
	f, err := os.Create(filepath.Join(logDir, logName+".log"))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(e.bin[name], args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if e.t.Failed() {
			cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump in the log, for diagnosis
		} else {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		cmd.Wait()
		f.Close()
		if e.t.Failed() {
			b, _ := os.ReadFile(f.Name())
			e.t.Logf("--- %s log (last 3000 bytes):\n%s", logName, tail(b, 3000))
		}
	})
	return cmd
}

func tail(b []byte, n int) []byte { return proctest.Tail(b, n) }

// run runs a program to completion.
func (e *env) run(name string, args ...string) string {
	e.t.Helper()
	out, err := exec.Command(e.bin[name], args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// kcatProduce sends each line of lines as a message, key before the first tab.
func (e *env) kcatProduce(topic string, lines []string) {
	e.t.Helper()
	cmd := exec.Command("kcat", "-b", e.brokers, "-P", "-t", topic, "-K", "\t")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("kcat produce: %v\n%s", err, out)
	}
}

// kcatConsume reads a whole topic: one line per message, in format f.
func (e *env) kcatConsume(topic, f string) []string {
	e.t.Helper()
	out, err := exec.Command("kcat", "-b", e.brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", f).Output()
	if err != nil {
		e.t.Fatalf("kcat consume %s: %v", topic, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// transactions returns n transactions of the generator run with seed,
// after its first skip: the cards and merchants of `generator --seed`, the
// next ids. Another seed gives the same card ids other home countries and
// devices, a shift that the trainer's gate may rightly refuse a model for
// (TestPipelineWithRealServices' second model was refused so in one run of
// four).
func transactions(seed uint64, skip, n int) (lines []string, ids []string) {
	g := generator.New(generator.Config{Seed: seed})
	now := time.Now()
	for range skip {
		g.Next(now)
	}
	for range n {
		tx, _ := g.Next(now)
		lines = append(lines, tx.Card+"\t"+string(tx.JSON()))
		ids = append(ids, tx.ID)
	}
	return lines, ids
}

func TestPipelineWithRealServices(t *testing.T) {
	e := setup(t)
	tx, alerts, scores, dead := e.topic("tx"), e.topic("alerts"), e.topic("scores"), e.topic("dead")
	prefix := "e2e:" + e.sfx + ":"
	common := []string{"--brokers", e.brokers, "--redis", e.redis, "--registry-prefix", prefix}

	// Traffic to learn from, produced by our generator; the first model.
	e.run("generator", "--brokers", e.brokers, "--topic", tx, "--count", "8000", "--rate", "0", "--seed", "11")
	e.run("trainer", append([]string{"run", "--once", "--transactions", tx, "--min-rows", "2000", "--epochs", "5"}, common...)...)

	scorerArgs := append([]string{"run", "--transactions", tx, "--alerts", alerts, "--scores", scores, "--dead-letter", dead,
		"--group", "e2e-" + e.sfx, "--metrics-addr", "", "--model-poll", "1s", "--create-topics", "--partitions", "4"}, common...)
	e.start("scorer", "scorer-a", scorerArgs...)
	b := e.start("scorer", "scorer-b", scorerArgs...)

	// Transactions from kcat, with malformed ones among them.
	first, ids1 := transactions(11, 8000, 3000) // the trainer's world, continued
	first = append(first, "bad\t{\"tx_id\": \"broken-1\", \"amount\": ", "bad\tnot json at all", "bad\t[1,2,3]")
	e.kcatProduce(tx, first)

	// A model published mid-stream, then a worker killed without warning
	// and restarted while the second half arrives. The gate's score-shift
	// check is off for it: in a world minutes old the cards' histories grow
	// through the window, so the newest rows score unlike the candidate's
	// validation rows (KS 0.18-0.26 against the current model's 0.07-0.16
	// in five runs), and it refused the candidate in one run of four. That
	// check has its own tests (pkg/trainer's TestGate...); this test is
	// about the swap.
	e.run("trainer", append([]string{"run", "--once", "--transactions", tx, "--min-rows", "2000", "--epochs", "3", "--max-score-shift", "-1"}, common...)...)
	second, ids2 := transactions(11, 11000, 20000)
	go e.kcatProduce(tx, second)
	time.Sleep(300 * time.Millisecond)
	b.Process.Signal(syscall.SIGKILL)
	b.Wait()
	e.start("scorer", "scorer-b2", scorerArgs...)

	// Every transaction gets at least one decision (at-least-once).
	want := append(append([]string{}, ids1...), ids2...)
	var decisions map[string]pipeline.Decision
	deadline := time.Now().Add(2 * time.Minute)
	for {
		decisions = map[string]pipeline.Decision{}
		for _, l := range e.kcatConsume(scores, "%s\n") {
			var d pipeline.Decision
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Fatalf("scores message %q: %v", l, err)
			}
			decisions[d.TransactionID] = d
		}
		missing := 0
		for _, id := range want {
			if _, ok := decisions[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d transactions have no decision", missing, len(want))
		}
		time.Sleep(time.Second)
	}
	versions := map[string]int{}
	for _, id := range ids2 {
		versions[decisions[id].ModelVersion]++
	}
	if versions["2"] == 0 {
		t.Errorf("no decision of the second half came from the model published mid-stream: %v", versions)
	}

	// Alerts are valid JSON with reasons and a model version.
	alertLines := e.kcatConsume(alerts, "%s\n")
	if len(alertLines) == 0 {
		t.Fatal("no alerts")
	}
	for _, l := range alertLines {
		var a pipeline.Alert
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("alert %q: %v", l, err)
		}
		if len(a.Reasons) == 0 || a.ModelVersion == "" || a.TransactionID == "" || !json.Valid(a.Transaction) || a.Score < a.Threshold {
			t.Fatalf("alert %+v", a)
		}
	}

	// The malformed messages are in the dead-letter topic with their origin.
	dl := e.kcatConsume(dead, "%h|%s\n")
	if len(dl) < 3 {
		t.Fatalf("dead letters: %q", dl)
	}
	for _, l := range dl {
		if !strings.Contains(l, "fraudstream-source-topic="+tx) || !strings.Contains(l, "fraudstream-reason=undecodable") {
			t.Fatalf("dead letter %q", l)
		}
	}

	// The registry lists both versions, the second current.
	list := e.run("trainer", append([]string{"models", "list"}, common[2:]...)...)
	current := ""
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == "*" {
			current = f[0]
		}
	}
	if current != "2" {
		t.Fatalf("models list:\n%s", list)
	}
}
