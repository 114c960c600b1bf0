package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/internal/proctest"
	"github.com/fraudstream/fraudstream/pkg/pipeline"
)

// TestSecuredServices runs the trainer, a scorer and the generator against
// an Apache Kafka that serves SASL_SSL only (certificates and SCRAM
// credentials made for the run by scripts/kafka.sh start-secure, with
// openssl, keytool and kafka-storage) and a redis-server that takes TLS
// with client certificates only and logs in an ACL user limited to the
// "fraudstream:" keys and channels (scripts/redis-secure.sh). The programs
// take the settings each way they can: the trainer by flags, the scorer by
// FRAUDSTREAM_* variables (the Redis URL with its password among them), the
// generator with the password itself in a variable; kcat produces and
// reads over SASL_SSL too. Every transaction gets a decision. Then each
// program, given a wrong password or a CA that did not sign the server's
// certificate, for Kafka and for Redis, exits at once with an error that
// says so.
func TestSecuredServices(t *testing.T) {
	e := setup(t)
	skip := t.Skipf
	if os.Getenv("E2E_SECURE") == "required" { // .ci/run: a missing tool must not pass unnoticed
		skip = t.Fatalf
	}
	for _, tool := range []string{"java", "keytool", "openssl", "mvn", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("%s is not installed (the secured services need java, keytool, openssl, mvn and redis-server)", tool)
		}
	}
	start := time.Now()
	redisDir, kafkaDir := filepath.Join(e.dir, "redis"), filepath.Join(e.dir, "kafka")
	rport := freePorts(t, 1)
	t.Cleanup(func() { exec.Command("../scripts/redis-secure.sh", "stop", redisDir).Run() })
	rs := startSecure(t, skip, "../scripts/redis-secure.sh", "start", redisDir, strconv.Itoa(rport))
	kport := freePorts(t, 3)
	t.Cleanup(func() { exec.Command("../scripts/kafka.sh", "stop", kafkaDir).Run() })
	ks := startSecure(t, skip, "../scripts/kafka.sh", "start-secure", kafkaDir, strconv.Itoa(kport))
	t.Logf("secured Kafka and Redis up in %s", time.Since(start).Round(time.Millisecond))
	brokers := ks["KAFKA_BROKERS"]
	kafkaPassword := readTrimmed(t, ks["FRAUDSTREAM_KAFKA_SASL_PASSWORD_FILE"])
	redisPassword := readTrimmed(t, rs["FRAUDSTREAM_REDIS_PASSWORD_FILE"])

	// kcat over SASL_SSL (PLAIN), its settings in a file.
	kcatConf := filepath.Join(e.dir, "kcat.conf")
	os.WriteFile(kcatConf, []byte("security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\nsasl.username="+ks["FRAUDSTREAM_KAFKA_SASL_USER"]+
		"\nsasl.password="+kafkaPassword+"\nssl.ca.location="+ks["FRAUDSTREAM_KAFKA_TLS_CA"]+"\n"), 0o600)
	kcat := func(args ...string) *exec.Cmd {
		return exec.Command("kcat", append([]string{"-F", kcatConf, "-b", brokers}, args...)...)
	}

	tx, alerts, scores, dead := e.topic("tx"), e.topic("alerts"), e.topic("scores"), e.topic("dead")
	prefix := "fraudstream:e2e-secure:" + e.sfx + ":" // the ACL user's keys
	// The connection settings as flags.
	connFlags := []string{"--kafka-tls-ca", ks["FRAUDSTREAM_KAFKA_TLS_CA"], "--kafka-sasl-mechanism", "scram-sha-512",
		"--kafka-sasl-user", ks["FRAUDSTREAM_KAFKA_SASL_USER"], "--kafka-sasl-password-file", ks["FRAUDSTREAM_KAFKA_SASL_PASSWORD_FILE"],
		"--redis-url", rs["FRAUDSTREAM_REDIS_URL"], "--redis-password-file", rs["FRAUDSTREAM_REDIS_PASSWORD_FILE"],
		"--redis-tls-ca", rs["FRAUDSTREAM_REDIS_TLS_CA"], "--redis-tls-cert", rs["FRAUDSTREAM_REDIS_TLS_CERT"], "--redis-tls-key", rs["FRAUDSTREAM_REDIS_TLS_KEY"]}
	trainerArgs := append([]string{"run", "--once", "--brokers", brokers, "--registry-prefix", prefix, "--transactions", tx,
		"--min-rows", "2000", "--epochs", "3", "--metrics-addr", ""}, connFlags...)

	// The generator: SASL PLAIN, the password itself in the environment.
	genEnv := cleanEnv("FRAUDSTREAM_KAFKA_TLS_CA="+ks["FRAUDSTREAM_KAFKA_TLS_CA"], "FRAUDSTREAM_KAFKA_SASL_MECHANISM=plain",
		"FRAUDSTREAM_KAFKA_SASL_USER="+ks["FRAUDSTREAM_KAFKA_SASL_USER"], "FRAUDSTREAM_KAFKA_SASL_PASSWORD="+kafkaPassword)
	if out, code := runWith(t, genEnv, time.Minute, e.bin["generator"], "--brokers", brokers, "--topic", tx, "--partitions", "2",
		"--count", "6000", "--rate", "0", "--seed", "31"); code != 0 {
		t.Fatalf("generator: exit %d\n%s", code, out)
	}
	// The trainer: every setting by flag.
	if out, code := runWith(t, cleanEnv(), 2*time.Minute, e.bin["trainer"], trainerArgs...); code != 0 {
		t.Fatalf("trainer: exit %d\n%s", code, out)
	}
	t.Logf("trained over SASL_SSL and TLS at %s", time.Since(start).Round(time.Millisecond))

	// The scorer: every setting from the environment, SCRAM-SHA-256, the
	// Redis password inside the URL.
	redisURL := strings.Replace(rs["FRAUDSTREAM_REDIS_URL"], "fraudstream@", "fraudstream:"+redisPassword+"@", 1)
	scorerEnv := cleanEnv("FRAUDSTREAM_KAFKA_TLS_CA="+ks["FRAUDSTREAM_KAFKA_TLS_CA"], "FRAUDSTREAM_KAFKA_SASL_MECHANISM=scram-sha-256",
		"FRAUDSTREAM_KAFKA_SASL_USER="+ks["FRAUDSTREAM_KAFKA_SASL_USER"], "FRAUDSTREAM_KAFKA_SASL_PASSWORD_FILE="+ks["FRAUDSTREAM_KAFKA_SASL_PASSWORD_FILE"],
		"FRAUDSTREAM_REDIS_URL="+redisURL, "FRAUDSTREAM_REDIS_TLS_CA="+rs["FRAUDSTREAM_REDIS_TLS_CA"],
		"FRAUDSTREAM_REDIS_TLS_CERT="+rs["FRAUDSTREAM_REDIS_TLS_CERT"], "FRAUDSTREAM_REDIS_TLS_KEY="+rs["FRAUDSTREAM_REDIS_TLS_KEY"])
	scorerArgs := []string{"run", "--brokers", brokers, "--registry-prefix", prefix, "--transactions", tx, "--alerts", alerts, "--scores", scores,
		"--dead-letter", dead, "--group", "e2e-secure-" + e.sfx, "--metrics-addr", "", "--model-poll", "1s", "--create-topics", "--partitions", "2", "--log-level", "debug"}
	scorerLog := startWith(t, e.dir, scorerEnv, e.bin["scorer"], "scorer", scorerArgs...)

	// Transactions from kcat; each gets a decision, read back by kcat.
	lines, ids := transactions(32, 0, 1000)
	produce := kcat("-P", "-t", tx, "-K", "\t")
	produce.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce over SASL_SSL: %v\n%s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := kcat("-C", "-t", scores, "-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
		if err != nil && time.Now().After(deadline) { // before, the scorer may not have created the topic yet
			t.Fatalf("kcat consume over SASL_SSL: %v", err)
		}
		// The generator's ids and these repeat each other (both count from
		// 1): every id decided, and a decision for each of the 7,000.
		decided, decisions := map[string]bool{}, 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var d pipeline.Decision
			if json.Unmarshal(sc.Bytes(), &d) == nil {
				decided[d.TransactionID] = true
				decisions++
			}
		}
		missing := 0
		for _, id := range ids {
			if !decided[id] {
				missing++
			}
		}
		if missing == 0 && decisions >= 7000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d transactions from kcat have no decision; %d decisions of 7,000", missing, len(ids), decisions)
		}
		time.Sleep(time.Second)
	}
	t.Logf("every transaction decided over SASL_SSL and TLS at %s", time.Since(start).Round(time.Millisecond))
	// The ACL user may do all the scorer does (the fleet exchange's
	// failures are logged at debug level), and no log line shows a password.
	if b, _ := os.ReadFile(scorerLog); bytes.Contains(b, []byte(redisPassword)) || bytes.Contains(b, []byte(kafkaPassword)) {
		t.Fatal("the scorer's log shows a password")
	} else if bytes.Contains(b, []byte("NOPERM")) {
		t.Fatalf("the ACL user was refused a command:\n%s", tail(b, 3000))
	}

	// Refusals: each program, each service, a wrong password and a CA that
	// did not sign the server's certificate (the other service's CA).
	wrong := filepath.Join(e.dir, "wrong-password")
	os.WriteFile(wrong, []byte("not-the-password\n"), 0o600)
	replace := func(args []string, flag, value string) []string {
		out := append([]string(nil), args...)
		for i := range out {
			if out[i] == flag {
				out[i+1] = value
				return out
			}
		}
		t.Fatalf("no %s in %v", flag, args)
		return nil
	}
	scorerFlags := append(append([]string{}, scorerArgs...), connFlags...)
	for _, c := range []struct {
		name, flag, value, want string
	}{
		{"kafka password", "--kafka-sasl-password-file", wrong, "kafka: SASL authentication failed"},
		{"kafka CA", "--kafka-tls-ca", rs["FRAUDSTREAM_REDIS_TLS_CA"], "certificate signed by unknown authority"},
		{"redis password", "--redis-password-file", wrong, "WRONGPASS"},
		{"redis CA", "--redis-tls-ca", ks["FRAUDSTREAM_KAFKA_TLS_CA"], "certificate signed by unknown authority"},
	} {
		for _, p := range []struct {
			name string
			args []string
		}{{"trainer", trainerArgs}, {"scorer", scorerFlags}} {
			began := time.Now()
			out, code := runWith(t, cleanEnv(), 45*time.Second, e.bin[p.name], replace(p.args, c.flag, c.value)...)
			if code != 1 || !strings.Contains(out, c.want) || !strings.Contains(out, c.flag) {
				t.Fatalf("%s with a wrong %s: exit %d after %s, want 1 and %q naming %s:\n%s", p.name, c.name, code,
					time.Since(began).Round(time.Millisecond), c.want, c.flag, tail([]byte(out), 3000))
			}
			if strings.Contains(out, kafkaPassword) || strings.Contains(out, redisPassword) {
				t.Fatalf("%s with a wrong %s shows a password:\n%s", p.name, c.name, out)
			}
			t.Logf("%s with a wrong %s: exit 1 after %s: %s", p.name, c.name, time.Since(began).Round(time.Millisecond), lastLine(out))
		}
	}
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

// startSecure runs a start script and returns the NAME=VALUE lines it
// prints. A redis-server without TLS (exit 3) skips the test.
func startSecure(t *testing.T, skip func(string, ...any), script string, args ...string) map[string]string {
	t.Helper()
	out, err := exec.Command(script, args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		skip("%s: %s", script, ee.Stderr)
	}
	if err != nil {
		if errors.As(err, &ee) {
			t.Fatalf("%s %v: %v\n%s%s", script, args, err, out, ee.Stderr)
		}
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cleanEnv is this process's environment without FRAUDSTREAM_* variables,
// plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRAUDSTREAM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runWith runs a program to completion (killed after limit) and returns
// its output and exit status (-1: killed).
func runWith(t *testing.T, env []string, limit time.Duration, bin string, args ...string) (string, int) {
	t.Helper()
	return proctest.Run(t, limit, env, bin, args...)
}

// startWith runs a program in the background with env, its output in
// dir/logName.log (returned); stopped when the test ends.
func startWith(t *testing.T, dir string, env []string, bin, logName string, args ...string) string {
	t.Helper()
	return proctest.Start(t, dir, logName, env, bin, args...)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
