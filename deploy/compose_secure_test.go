package deploy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraudstream/fraudstream/internal/proctest"
	"github.com/fraudstream/fraudstream/pkg/model"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"gopkg.in/yaml.v3"
)

// stack is docker-compose.yml with what the secured stack needs: each
// service's environment and secrets, and the top-level secrets' files.
type stack struct {
	Services map[string]struct {
		Build       string            `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []secretRef       `yaml:"secrets"`
		Ports       []string          `yaml:"ports"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// secretRef is a service's secret: a name (mounted at /run/secrets/NAME)
// or {source, target}.
type secretRef struct{ Source, Target string }

func (s *secretRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		s.Source = n.Value
		return nil
	}
	var v struct{ Source, Target string }
	if err := n.Decode(&v); err != nil {
		return err
	}
	s.Source, s.Target = v.Source, v.Target
	return nil
}

// TestComposeSecuredStack makes the compose secrets with
// scripts/compose-secrets.sh and runs the compose stack's security without
// Docker: a real Apache Kafka configured from the kafka service's
// environment the way the apache/kafka image turns it into
// server.properties, a real redis-server with the redis service's command,
// each reading the files mounted as its secrets; then the generator, the
// trainer and a scorer with their compose commands and environments (only
// hosts, ports and mount paths rewritten; run bounds appended). The
// generator produces over SASL_SSL, the trainer trains and stores a model
// signed with the compose signing key as the ACL user over TLS, and the
// scorer loads it with the compose verify key and decides every
// transaction. Around that: every secret a service mounts is made by the
// script and every secret path a service names is mounted in it; Redis
// refuses plaintext, the default user and keys outside fraudstream:;
// Kafka refuses plaintext and a wrong password.
func TestComposeSecuredStack(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("E2E_SECURE") == "required" { // .ci/run: a missing tool must not pass unnoticed
		skip = t.Fatalf
	}
	for _, tool := range []string{"java", "mvn", "openssl", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("%s is not installed (the secured compose check needs java, mvn, openssl and redis-server)", tool)
		}
	}
	if testing.Short() {
		t.Skip("starts Kafka and Redis")
	}
	work := t.TempDir()
	secretsDir := filepath.Join(work, "secrets")
	if out, err := exec.Command("../scripts/compose-secrets.sh", secretsDir).CombinedOutput(); err != nil {
		t.Fatalf("compose-secrets.sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c stack
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}

	// Where each service's mounted secrets are on this machine.
	mounts := map[string]map[string]string{} // service → container path → file here
	secretPath := regexp.MustCompile(`/(?:run|etc/kafka)/secrets/[A-Za-z0-9_.-]+`)
	for name, s := range c.Services {
		m := map[string]string{}
		for _, ref := range s.Secrets {
			top, ok := c.Secrets[ref.Source]
			if !ok {
				t.Fatalf("%s mounts secret %q, which the top-level secrets do not define", name, ref.Source)
			}
			rel, ok := strings.CutPrefix(top.File, "./deploy/secrets/")
			if !ok {
				t.Fatalf("secret %s: file %s is not under ./deploy/secrets/ (what compose-secrets.sh makes)", ref.Source, top.File)
			}
			local := filepath.Join(secretsDir, rel)
			if _, err := os.Stat(local); err != nil {
				t.Fatalf("secret %s: compose-secrets.sh did not make %s", ref.Source, rel)
			}
			target := ref.Target
			if target == "" {
				target = "/run/secrets/" + ref.Source
			}
			m[target] = local
		}
		mounts[name] = m
		// Every secret path the service names is mounted in it.
		texts := append([]string{}, s.Command...)
		for _, v := range s.Environment {
			texts = append(texts, v)
		}
		for _, text := range texts {
			for _, p := range secretPath.FindAllString(text, -1) {
				if _, ok := m[p]; !ok {
					t.Errorf("%s names %s, which it does not mount", name, p)
				}
			}
		}
	}
	// The image derives the keystore's path from its file name.
	if kf := c.Services["kafka"].Environment["KAFKA_SSL_KEYSTORE_FILENAME"]; mounts["kafka"]["/etc/kafka/secrets/"+kf] == "" {
		t.Errorf("kafka: keystore %q is not mounted in /etc/kafka/secrets", kf)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Redis, as the compose service runs it.
	rport := proctest.FreePort(t)
	redisArgs := rewriteAll(c.Services["redis"].Command[1:], mounts["redis"], nil)
	for i, a := range redisArgs {
		if a == "6379" && i > 0 && redisArgs[i-1] == "--tls-port" {
			redisArgs[i] = strconv.Itoa(rport)
		}
	}
	redisArgs = append(redisArgs, "--bind", "127.0.0.1", "--dir", work, "--save", "")
	proctest.Start(t, work, "redis", nil, "redis-server", redisArgs...)
	waitPort(t, rport, 10*time.Second)

	// Kafka, as the apache/kafka image configures it.
	libs := filepath.Join(work, "kafka")
	if out, err := exec.Command("../scripts/kafka.sh", "libs", libs).CombinedOutput(); err != nil {
		t.Fatalf("kafka.sh libs: %v\n%s", err, out)
	}
	kport, cport := proctest.FreePort(t), proctest.FreePort(t)
	hosts := map[string]string{"kafka:9092": fmt.Sprintf("127.0.0.1:%d", kport), "kafka:9093": fmt.Sprintf("127.0.0.1:%d", cport),
		":9092": fmt.Sprintf("127.0.0.1:%d", kport), ":9093": fmt.Sprintf("127.0.0.1:%d", cport), "redis:6379": fmt.Sprintf("127.0.0.1:%d", rport)}
	props, jvm := imageProperties(t, c.Services["kafka"].Environment, mounts["kafka"], hosts)
	props["log.dirs"] = filepath.Join(work, "kafka", "data") // the image's default is /tmp/kraft-combined-logs
	var pf strings.Builder
	for k, v := range props {
		fmt.Fprintf(&pf, "%s=%s\n", k, v)
	}
	propsFile := filepath.Join(work, "server.properties")
	if err := os.WriteFile(propsFile, []byte(pf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	java := append(jvm, "-Xms256m", "-Xmx512m", "-cp", filepath.Join(libs, "libs", "*"))
	uuid, err := exec.Command("java", append(java, "kafka.tools.StorageTool", "random-uuid")...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("java", append(java, "kafka.tools.StorageTool", "format", "-t", strings.TrimSpace(string(uuid)), "-c", propsFile)...).CombinedOutput(); err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	proctest.Start(t, work, "kafka", nil, "java", append(java, "kafka.Kafka", propsFile)...)
	waitPort(t, kport, 90*time.Second)

	// The programs, as compose runs them.
	bins := buildBinaries(t, work, "generator", "trainer", "scorer")
	program := func(service string, extra ...string) (string, []string, []string) {
		s := c.Services[service]
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "FRAUDSTREAM_") {
				env = append(env, kv)
			}
		}
		for k, v := range s.Environment {
			env = append(env, k+"="+rewrite(v, mounts[service], hosts))
		}
		return bins[s.Command[0]], append(rewriteAll(s.Command[1:], mounts[service], hosts), extra...), env
	}
	const n = 3000
	bin, args, env := program("generator", "--count", strconv.Itoa(n), "--rate", "0")
	if out, code := proctest.Run(t, 2*time.Minute, env, bin, args...); code != 0 {
		t.Fatalf("generator exited %d:\n%s", code, out)
	}
	bin, args, env = program("trainer", "--once", "--min-rows", "2000", "--epochs", "3", "--metrics-addr", "")
	if out, code := proctest.Run(t, 3*time.Minute, env, bin, args...); code != 0 {
		t.Fatalf("trainer exited %d:\n%s", code, out)
	}
	bin, _, env = program("trainer")
	verify, err := model.LoadKeyring([]string{mounts["scorer-1"]["/run/secrets/model_verify_key"]})
	if err != nil {
		t.Fatal(err)
	}
	out, code := proctest.Run(t, time.Minute, env, bin, "models", "list")
	if code != 0 || !strings.Contains(out, verify.IDs()[0].String()) {
		t.Fatalf("trainer models list (exit %d) shows no model signed by the compose key %s:\n%s", code, verify.IDs()[0], out)
	}
	mport := proctest.FreePort(t)
	bin, args, env = program("scorer-1", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport))
	log := proctest.Start(t, work, "scorer", env, bin, args...)
	deadline := time.Now().Add(2 * time.Minute)
	var decided float64
	for ; time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		m := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
		decided = m[`fraudstream_records_total{outcome="scored"}`] + m[`fraudstream_records_total{outcome="alert"}`]
		if m["fraudstream_model_loaded"] == 1 && decided >= n {
			for reason, v := range m {
				if strings.HasPrefix(reason, "fraudstream_model_rejected_total") && v != 0 {
					t.Errorf("%s = %v: the scorer refused a model the trainer signed", reason, v)
				}
			}
			break
		}
	}
	if decided < n {
		b, _ := os.ReadFile(log)
		t.Fatalf("the scorer decided %.0f of %d transactions in 2 minutes; its log:\n%s", decided, n, proctest.Tail(b, 3000))
	}
	t.Logf("compose stack: %d transactions produced over SASL_SSL, a signed model trained and stored as the Redis ACL user over TLS, %d decided by a verifying scorer", n, int(decided))

	// What the stack refuses.
	ca := x509.NewCertPool()
	pem, _ := os.ReadFile(mounts["scorer-1"]["/run/secrets/tls_ca"])
	ca.AppendCertsFromPEM(pem)
	password := func(service, secret string) string {
		b, err := os.ReadFile(mounts[service]["/run/secrets/"+secret])
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raddr := fmt.Sprintf("127.0.0.1:%d", rport)
	tlsConf := &tls.Config{RootCAs: ca, ServerName: "redis"}
	rc := func(o *redis.Options) *redis.Client {
		o.Addr, o.DialTimeout, o.ReadTimeout, o.MaxRetries = raddr, 3*time.Second, 3*time.Second, -1
		return redis.NewClient(o)
	}
	if err := rc(&redis.Options{}).Ping(ctx).Err(); err == nil {
		t.Error("Redis answered a plaintext connection")
	}
	if err := rc(&redis.Options{TLSConfig: tlsConf}).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("Redis's default user: got %v, want NOAUTH", err)
	}
	user := rc(&redis.Options{TLSConfig: tlsConf, Username: "fraudstream", Password: password("scorer-1", "redis_password")})
	if err := user.Set(ctx, "fraudstream:compose-test", "1", time.Minute).Err(); err != nil {
		t.Errorf("the ACL user cannot write its own keys: %v", err)
	}
	if err := user.Set(ctx, "other:compose-test", "1", time.Minute).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("the ACL user writing outside fraudstream: got %v, want NOPERM", err)
	}
	if err := user.Do(ctx, "CONFIG", "SET", "aclfile", "/tmp/x").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("the ACL user running CONFIG SET: got %v, want NOPERM", err)
	}
	kaddr := fmt.Sprintf("127.0.0.1:%d", kport)
	plainDialer := &kafka.Dialer{Timeout: 5 * time.Second}
	if conn, err := plainDialer.DialContext(ctx, "tcp", kaddr); err == nil {
		_, err = conn.ReadPartitions("transactions")
		conn.Close()
		if err == nil {
			t.Error("Kafka answered a plaintext client")
		}
	}
	wrong := &kafka.Dialer{Timeout: 5 * time.Second, TLS: &tls.Config{RootCAs: ca, ServerName: "kafka"},
		SASLMechanism: plain.Mechanism{Username: "fraudstream", Password: "not-the-password"}}
	if conn, err := wrong.DialContext(ctx, "tcp", kaddr); err == nil {
		conn.Close()
		t.Error("Kafka let in a wrong password")
	} else if !strings.Contains(err.Error(), "SASL") {
		t.Errorf("Kafka with a wrong password: %v (want a SASL authentication error)", err)
	}
}

// imageProperties turns a kafka service environment into server.properties
// and JVM options the way apache/kafka's image does (its configureDefaults
// and configure scripts and its utility's render-properties): KAFKA_* variables but the JVM ones
// become properties (_ → ., __ → _, ___ → -, lower case); with an SSL
// listener the keystore is /etc/kafka/secrets/$KAFKA_SSL_KEYSTORE_FILENAME
// and its passwords the contents of the credentials files named there.
// Container paths are mapped through mounts, host:port through hosts.
func imageProperties(t *testing.T, env, mounts, hosts map[string]string) (map[string]string, []string) {
	t.Helper()
	jvmOnly := map[string]bool{"KAFKA_VERSION": true, "KAFKA_HEAP_OPT": true, "KAFKA_LOG4J_OPTS": true, "KAFKA_OPTS": true,
		"KAFKA_JMX_OPTS": true, "KAFKA_JVM_PERFORMANCE_OPTS": true, "KAFKA_GC_LOG_OPTS": true, "KAFKA_LOG4J_ROOT_LOGLEVEL": true,
		"KAFKA_LOG4J_LOGGERS": true, "KAFKA_TOOLS_LOG4J_LOGLEVEL": true}
	env = maps.Clone(env)
	// The image's configureDefaults: these apply when the service leaves
	// them unset (so a missing KAFKA_INTER_BROKER_LISTENER_NAME means
	// PLAINTEXT, which a SASL_SSL-only broker cannot start with).
	for k, v := range map[string]string{"KAFKA_NODE_ID": "1",
		"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":   "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
		"KAFKA_LISTENERS":                        "PLAINTEXT://localhost:29092,CONTROLLER://localhost:29093,PLAINTEXT_HOST://0.0.0.0:9092",
		"KAFKA_ADVERTISED_LISTENERS":             "PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
		"KAFKA_PROCESS_ROLES": "broker,controller", "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:29093",
		"KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT", "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
		"KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs"} {
		if env[k] == "" {
			env[k] = v
		}
	}
	if strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], "SSL://") {
		read := func(name string) string {
			f := mounts["/etc/kafka/secrets/"+env[name]]
			if f == "" {
				t.Fatalf("kafka: %s=%s is not mounted in /etc/kafka/secrets", name, env[name])
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
		env["KAFKA_SSL_KEYSTORE_LOCATION"] = "/etc/kafka/secrets/" + env["KAFKA_SSL_KEYSTORE_FILENAME"]
		env["KAFKA_SSL_KEY_PASSWORD"] = read("KAFKA_SSL_KEY_CREDENTIALS")
		env["KAFKA_SSL_KEYSTORE_PASSWORD"] = read("KAFKA_SSL_KEYSTORE_CREDENTIALS")
	}
	single := regexp.MustCompile(`[^_]_[^_]`)
	props := map[string]string{}
	for k, v := range env {
		if !strings.HasPrefix(k, "KAFKA_") || jvmOnly[k] {
			continue
		}
		key := single.ReplaceAllStringFunc(k[len("KAFKA_"):], func(s string) string { return strings.ReplaceAll(s, "_", ".") })
		key = strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(key, "___", "-"), "__", "_"))
		props[key] = rewrite(v, mounts, hosts)
	}
	var jvm []string
	if o := env["KAFKA_OPTS"]; o != "" {
		jvm = strings.Fields(rewrite(o, mounts, hosts))
	}
	return props, jvm
}

// rewrite maps container paths to the files here and compose host:port
// pairs to the local services.
func rewrite(s string, mounts, hosts map[string]string) string {
	for from, to := range mounts {
		s = strings.ReplaceAll(s, from, to)
	}
	for _, h := range composeHosts {
		if to, ok := hosts[h.from]; ok {
			s = h.re.ReplaceAllString(s, "${1}"+to)
		}
	}
	return s
}

// hostRule rewrites one of the compose file's host:port forms.
type hostRule struct {
	from string
	re   *regexp.Regexp
}

// composeHosts are the compose file's host:port forms, longest first, so
// "kafka:9092" is replaced before ":9092".
var composeHosts = func() []hostRule {
	var out []hostRule
	for _, from := range []string{"kafka:9092", "kafka:9093", "redis:6379", ":9092", ":9093"} {
		out = append(out, hostRule{from, regexp.MustCompile(`(^|[^0-9.:])` + regexp.QuoteMeta(from) + `\b`)})
	}
	return out
}()

func rewriteAll(args []string, mounts, hosts map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = rewrite(a, mounts, hosts)
	}
	return out
}

func waitPort(t *testing.T, port int, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %d after %s", port, limit)
}

func buildBinaries(t *testing.T, dir string, names ...string) map[string]string {
	t.Helper()
	bins := map[string]string{}
	for _, name := range names {
		out := filepath.Join(dir, "bin", name)
		if b, err := exec.Command("go", "build", "-o", out, "../cmd/"+name).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, b)
		}
		bins[name] = out
	}
	return bins
}

// scrape reads a Prometheus text page into series → value (nil on error).
func scrape(url string) map[string]float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}
