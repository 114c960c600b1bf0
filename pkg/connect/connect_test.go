package connect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	fscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

const secret = "s3cret-Pa55"

// envVars are every variable this package reads.
var envVars = []string{"KAFKA_TLS", "KAFKA_TLS_CA", "KAFKA_TLS_CERT", "KAFKA_TLS_KEY", "KAFKA_TLS_SERVER_NAME",
	"KAFKA_SASL_MECHANISM", "KAFKA_SASL_USER", "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SASL_PASSWORD",
	"REDIS_URL", "REDIS_PASSWORD_FILE", "REDIS_PASSWORD", "REDIS_TLS_CA", "REDIS_TLS_CERT", "REDIS_TLS_KEY"}

// parse registers both sets of flags, with env (NAME without the prefix:
// value) as the environment and nothing else of it, and parses args.
func parse(t *testing.T, env map[string]string, args ...string) (*Kafka, *Redis, error) {
	t.Helper()
	for _, v := range envVars {
		t.Setenv(EnvPrefix+v, env[v])
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var k Kafka
	var r Redis
	k.Register(fs)
	r.Register(fs, "127.0.0.1:6379", "the registry")
	return &k, &r, fs.Parse(args)
}

// noSecret fails if err or s mentions the secret.
func noSecret(t *testing.T, what string, s string) {
	t.Helper()
	if strings.Contains(s, secret) {
		t.Fatalf("%s shows the password: %s", what, s)
	}
}

// TestPasswordsNeverOnTheCommandLine: no flag takes a password; a Redis URL
// with a password is refused on the command line (where every user of the
// machine reads it) but taken from the environment; neither the errors nor
// the descriptions logged show it.
func TestPasswordsNeverOnTheCommandLine(t *testing.T) {
	_, _, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	(&Kafka{}).Register(fs)
	(&Redis{}).Register(fs, "x:1", "x")
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "password") && !strings.HasSuffix(f.Name, "-file") {
			t.Errorf("--%s takes a password on the command line", f.Name)
		}
	})
	if _, _, err := parse(t, nil, "--kafka-sasl-password", secret); err == nil {
		t.Fatal("--kafka-sasl-password was taken")
	}

	url := "redis://app:" + secret + "@127.0.0.1:6379/2"
	_, r, err := parse(t, nil, "--redis-url", url)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Validate()
	if err == nil || !strings.Contains(err.Error(), "--redis-url must not hold a password") {
		t.Fatalf("a password in --redis-url: %v", err)
	}
	noSecret(t, "the error", err.Error())
	noSecret(t, "String", r.String())

	_, r, _ = parse(t, map[string]string{"REDIS_URL": url})
	o, err := r.Options(redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Username != "app" || o.Password != secret || o.DB != 2 {
		t.Fatalf("from $%s: user %q, password taken %v, db %d", RedisURLEnv, o.Username, o.Password == secret, o.DB)
	}
	noSecret(t, "String", r.String())
	if want := "redis://app@127.0.0.1:6379/2"; r.String() != want {
		t.Fatalf("String %q, want %q", r.String(), want)
	}
	// A URL that does not parse is not quoted back.
	_, r, _ = parse(t, map[string]string{"REDIS_URL": "redis://app:" + secret + "@127.0.0.1:port/0"})
	if err := r.Validate(); err == nil {
		t.Fatal("a bad port was taken")
	} else {
		noSecret(t, "the error", err.Error())
	}
}

// TestKafkaSettings: the flags and their environment forms make the
// stream.Config (TLS verified by the CA file, the SASL mechanism and its
// credentials); a flag wins over the environment.
func TestKafkaSettings(t *testing.T) {
	ca := newTestCA(t, "ca")
	pwFile := writeFile(t, "pw", secret+"\n")
	k, _, err := parse(t, map[string]string{"KAFKA_TLS_CA": ca.caFile, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USER": "env-user",
		"KAFKA_SASL_PASSWORD_FILE": pwFile}, "--kafka-sasl-user", "flag-user", "--kafka-tls-server-name", "kafka.internal")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := k.Stream([]string{"b:9093"}, "id")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs == nil || !cfg.TLS.RootCAs.Equal(ca.pool()) || cfg.TLS.ServerName != "kafka.internal" {
		t.Fatalf("TLS %+v", cfg.TLS)
	}
	_, ir, err := cfg.SASL.Start(context.Background())
	if err != nil || cfg.SASL.Name() != "PLAIN" || string(ir) != "\x00flag-user\x00"+secret {
		t.Fatalf("SASL %s %q %v (the file's newline is not part of the password; the flag's user wins)", cfg.SASL.Name(), ir, err)
	}
	noSecret(t, "String", k.String())
	if want := "TLS (CA " + ca.caFile + "), SASL PLAIN as flag-user"; k.String() != want {
		t.Fatalf("String %q, want %q", k.String(), want)
	}

	for _, m := range []string{"scram-sha-256", "scram-sha-512"} {
		k, _, _ := parse(t, map[string]string{"KAFKA_SASL_PASSWORD": secret}, "--kafka-sasl-mechanism", m, "--kafka-sasl-user", "u")
		cfg, err := k.Stream([]string{"b:9092"}, "id")
		if err != nil || cfg.SASL.Name() != strings.ToUpper(m) || cfg.TLS != nil {
			t.Fatalf("%s: %v %+v", m, err, cfg)
		}
		if k.Warning() != "" {
			t.Fatalf("%s warns: %s", m, k.Warning())
		}
	}
	// TLS with the system's roots, from the environment.
	k, _, _ = parse(t, map[string]string{"KAFKA_TLS": "true"})
	if cfg, err := k.Stream([]string{"b:9093"}, "id"); err != nil || cfg.TLS == nil || cfg.TLS.RootCAs != nil || cfg.SASL != nil {
		t.Fatalf("$FRAUDSTREAM_KAFKA_TLS=true: %v %+v", err, cfg)
	}
	// Nothing set: plaintext, as before.
	k, _, _ = parse(t, nil)
	if cfg, err := k.Stream([]string{"b:9092"}, "id"); err != nil || cfg.TLS != nil || cfg.SASL != nil {
		t.Fatalf("no flags: %v %+v", err, cfg)
	}
	// PLAIN without TLS works, with a warning.
	k, _, _ = parse(t, map[string]string{"KAFKA_SASL_PASSWORD": secret}, "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "u")
	if _, err := k.Stream([]string{"b:9092"}, "id"); err != nil || !strings.Contains(k.Warning(), "in clear") {
		t.Fatalf("PLAIN without TLS: %v, warning %q", err, k.Warning())
	}
}

// TestSettingsErrorsNameTheFlag: settings that cannot work are refused
// before any connection, each error naming the flag and never the password.
func TestSettingsErrorsNameTheFlag(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key, _ := ca.issue(t, true)
	pw := writeFile(t, "pw", secret)
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--kafka-sasl-mechanism", "gssapi", "--kafka-sasl-user", "u"}, `--kafka-sasl-mechanism "gssapi"`},
		{map[string]string{"KAFKA_SASL_PASSWORD": secret}, []string{"--kafka-sasl-mechanism", "plain"}, "needs --kafka-sasl-user"},
		{nil, []string{"--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-user", "u"}, "needs a password: --kafka-sasl-password-file"},
		{map[string]string{"KAFKA_SASL_PASSWORD": secret}, []string{"--kafka-sasl-user", "u"}, "need --kafka-sasl-mechanism"},
		{map[string]string{"KAFKA_SASL_PASSWORD": secret}, []string{"--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "u", "--kafka-sasl-password-file", pw},
			"both --kafka-sasl-password-file and $FRAUDSTREAM_KAFKA_SASL_PASSWORD"},
		{nil, []string{"--kafka-tls-cert", cert}, "--kafka-tls-cert and --kafka-tls-key go together"},
		{map[string]string{"KAFKA_TLS": "yes please"}, nil, "$FRAUDSTREAM_KAFKA_TLS"},
		{nil, []string{"--kafka-tls-ca", key}, "--kafka-tls-ca " + key + " holds no PEM certificate"},
		{nil, []string{"--kafka-tls-cert", key, "--kafka-tls-key", cert}, "--kafka-tls-cert " + key},
		{nil, []string{"--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "u", "--kafka-sasl-password-file", "/nonexistent/pw"}, "--kafka-sasl-password-file: open /nonexistent/pw"},
		{nil, []string{"--redis", "127.0.0.1"}, `--redis "127.0.0.1"`},
		{nil, []string{"--redis", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:2"}, "--redis and --redis-url"},
		{nil, []string{"--redis-url", "redis://127.0.0.1:2", "--redis-tls-ca", ca.caFile}, "use a rediss:// URL"},
		{nil, []string{"--redis-url", "http://127.0.0.1:2"}, `--redis-url: scheme "http"`},
		{nil, []string{"--redis-url", "redis://127.0.0.1:2/0?dial_timeout=1s"}, "--redis-url: query parameters"},
		{nil, []string{"--redis-url", "redis://127.0.0.1:2/x"}, "--redis-url: redis: invalid database number"},
		{map[string]string{"REDIS_URL": "redis://u:" + secret + "@127.0.0.1:2", "REDIS_PASSWORD": secret}, nil, "more than one Redis password"},
		{map[string]string{"REDIS_PASSWORD": secret}, []string{"--redis-password-file", pw}, "more than one Redis password"},
		{nil, []string{"--redis-tls-key", key}, "--redis-tls-cert and --redis-tls-key go together"},
		{nil, []string{"--redis-password-file", writeFile(t, "empty", "\n")}, "--redis-password-file " + os.TempDir()},
	} {
		k, r, err := parse(t, c.env, c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		_, kerr := k.Stream([]string{"b:1"}, "id")
		_, rerr := r.Options(redis.Options{})
		err = errors.Join(kerr, rerr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%v %v: %v, want %q", c.env, c.args, err, c.want)
		}
		noSecret(t, "the error", err.Error())
	}
}

// TestPasswordFiles: a password file's final line ending is not part of the
// password, other whitespace is; an empty or oversized file is refused by
// name, without its content.
func TestPasswordFiles(t *testing.T) {
	for content, want := range map[string]string{secret + "\n": secret, secret + "\r\n": secret, " " + secret + " \n": " " + secret + " "} {
		got, err := readSecret("f", writeFile(t, "pw", content))
		if err != nil || got != want {
			t.Fatalf("%q: %q %v, want %q", content, got, err, want)
		}
	}
	long := strings.Repeat(secret, maxSecret/len(secret)+1)
	path := writeFile(t, "big", long)
	_, err := readSecret("redis-password-file", path)
	if err == nil || !strings.Contains(err.Error(), "--redis-password-file "+path+" is longer than") {
		t.Fatalf("oversized: %v", err)
	}
	noSecret(t, "the error", err.Error())
}

// TestRedisSettings: --redis host:port as before; --redis-url with an ACL
// user, a database and TLS; a password from a file; the program's
// timeouts kept.
func TestRedisSettings(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key, _ := ca.issue(t, true)
	pw := writeFile(t, "pw", secret+"\n")
	base := redis.Options{DialTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ContextTimeoutEnabled: true}

	_, r, _ := parse(t, nil)
	o, err := r.Options(base)
	if err != nil || o.Addr != "127.0.0.1:6379" || o.Password != "" || o.Username != "" || o.TLSConfig != nil || o.DialTimeout != base.DialTimeout {
		t.Fatalf("defaults: %v %+v", err, o)
	}
	_, r, _ = parse(t, nil, "--redis", "10.0.0.5:6380", "--redis-password-file", pw, "--redis-tls-ca", ca.caFile)
	o, err = r.Options(base)
	if err != nil || o.Addr != "10.0.0.5:6380" || o.Password != secret || o.TLSConfig == nil || o.TLSConfig.ServerName != "10.0.0.5" ||
		!o.TLSConfig.RootCAs.Equal(ca.pool()) {
		t.Fatalf("--redis with a password file and a CA: %v %+v", err, o)
	}
	_, r, _ = parse(t, map[string]string{"REDIS_TLS_CA": ca.caFile, "REDIS_TLS_CERT": cert, "REDIS_TLS_KEY": key, "REDIS_PASSWORD": secret},
		"--redis-url", "rediss://fraudstream@redis.internal:6390/4")
	o, err = r.Options(base)
	if err != nil || o.Addr != "redis.internal:6390" || o.Username != "fraudstream" || o.Password != secret || o.DB != 4 ||
		o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.internal" || len(o.TLSConfig.Certificates) != 1 || o.TLSConfig.MinVersion != tls.VersionTLS12 ||
		o.ReadTimeout != base.ReadTimeout || !o.ContextTimeoutEnabled {
		t.Fatalf("rediss:// with an ACL user: %v %+v", err, o)
	}
	if want := "rediss://fraudstream@redis.internal:6390/4"; r.String() != want {
		t.Fatalf("String %q, want %q", r.String(), want)
	}
	// rediss:// without a CA file: the system's roots.
	_, r, _ = parse(t, nil, "--redis-url", "rediss://cache.example:6380")
	if o, err = r.Options(base); err != nil || o.TLSConfig == nil || o.TLSConfig.RootCAs != nil {
		t.Fatalf("rediss:// without a CA: %v %+v", err, o)
	}
}

// TestScramRFC7677: the SCRAM adapter runs the RFC 7677 exchange
// (SCRAM-SHA-256, user "user", password "pencil") byte for byte, and
// refuses a server whose final signature is wrong (one that does not know
// the password).
func TestScramRFC7677(t *testing.T) {
	nonce, err := base64.StdEncoding.DecodeString("rOprNGfwEbeRWgbNEkqO")
	if err != nil {
		t.Fatal(err)
	}
	start := func() (*scram, []byte, scramSession) {
		m := newScram(ScramSHA256, fscram.Auth{User: "user", Pass: "pencil", Nonce: nonce})
		sm, first, err := m.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return &m, first, sm.(scramSession)
	}
	m, first, sess := start()
	if m.Name() != "SCRAM-SHA-256" || string(first) != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
		t.Fatalf("%s first message %q", m.Name(), first)
	}
	serverFirst := "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	done, final, err := sess.Next(context.Background(), []byte(serverFirst))
	want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if err != nil || done || string(final) != want {
		t.Fatalf("client final %q %v %v, want %q", final, done, err, want)
	}
	if done, _, err := sess.Next(context.Background(), []byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); err != nil || !done {
		t.Fatalf("server final: %v %v", done, err)
	}
	_, _, sess = start()
	sess.Next(context.Background(), []byte(serverFirst))
	if done, _, err := sess.Next(context.Background(), []byte("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); err == nil || done {
		t.Fatal("a wrong server signature was accepted")
	}
}

// TestFatal: refused credentials and certificate problems are fatal; an
// unreachable server, a timeout or a broker error that passes are not.
func TestFatal(t *testing.T) {
	for _, c := range []struct {
		err   error
		fatal bool
	}{
		{fmt.Errorf("dial: %w", kafka.SASLAuthenticationFailed), true},
		{fmt.Errorf("handshake: %w", kafka.UnsupportedSASLMechanism), true},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, true},
		{fmt.Errorf("x: %w", x509.HostnameError{Host: "h", Certificate: &x509.Certificate{}}), true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{context.DeadlineExceeded, false},
		{io.EOF, false},
		{fmt.Errorf("metadata: %w", kafka.LeaderNotAvailable), false},
		{nil, false},
	} {
		if got := Fatal(c.err); got != c.fatal {
			t.Errorf("Fatal(%v) = %v", c.err, got)
		}
	}
}

// TestKafkaCheck against a broker with TLS and SASL (franz-go's kfake):
// each mechanism logs in; a wrong password and an untrusted certificate
// fail at once with errors that say so, name the flags and are fatal; a
// broker that is not there is not fatal.
func TestKafkaCheck(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other")
	_, _, serverCert := ca.issue(t, false)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}}), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", secret), kfake.Superuser("SCRAM-SHA-256", "scram256", secret), kfake.Superuser("SCRAM-SHA-512", "scram512", secret))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	check := func(caFile, mechanism, user, password string) error {
		t.Helper()
		k, _, _ := parse(t, map[string]string{"KAFKA_SASL_PASSWORD": password}, "--kafka-tls-ca", caFile, "--kafka-sasl-mechanism", mechanism, "--kafka-sasl-user", user)
		cfg, err := k.Stream(brokers, "test")
		if err != nil {
			t.Fatal(err)
		}
		return k.Check(context.Background(), cfg)
	}
	for m, user := range map[string]string{Plain: "plain-user", ScramSHA256: "scram256", ScramSHA512: "scram512"} {
		if err := check(ca.caFile, m, user, secret); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	err = check(ca.caFile, ScramSHA512, "scram512", "wrong")
	if !Fatal(err) || !strings.Contains(err.Error(), "SASL authentication failed") || !strings.Contains(err.Error(), "--kafka-sasl-password-file") {
		t.Fatalf("wrong password: %v", err)
	}
	err = check(other.caFile, ScramSHA512, "scram512", secret)
	if !Fatal(err) || !strings.Contains(err.Error(), "certificate signed by unknown authority") || !strings.Contains(err.Error(), "--kafka-tls-ca") {
		t.Fatalf("untrusted CA: %v", err)
	}
	noSecret(t, "the error", err.Error())

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := l.Addr().String()
	l.Close()
	k, _, _ := parse(t, nil)
	if err := k.Check(context.Background(), stream.Config{Brokers: []string{gone}}); err == nil || Fatal(err) {
		t.Fatalf("no broker: %v", err)
	}
}

// TestRedisCheck against a Redis with TLS and an ACL user (miniredis): the
// user logs in; a wrong password and an untrusted certificate fail with
// errors that say so and are fatal; a Redis that is not there is not.
func TestRedisCheck(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other")
	_, _, serverCert := ca.issue(t, false)
	m, err := miniredis.RunTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.RequireUserAuth("fraudstream", secret)
	check := func(caFile, password string) error {
		t.Helper()
		_, r, _ := parse(t, map[string]string{"REDIS_PASSWORD": password}, "--redis-url", "rediss://fraudstream@"+m.Addr()+"/0", "--redis-tls-ca", caFile)
		o, err := r.Options(redis.Options{DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(o)
		defer c.Close()
		return r.Check(context.Background(), c)
	}
	if err := check(ca.caFile, secret); err != nil {
		t.Fatal(err)
	}
	err = check(ca.caFile, "wrong")
	if !Fatal(err) || !strings.Contains(err.Error(), "authentication failed for user \"fraudstream\"") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
	err = check(other.caFile, secret)
	if !Fatal(err) || !strings.Contains(err.Error(), "certificate signed by unknown authority") || !strings.Contains(err.Error(), "--redis-tls-ca") {
		t.Fatalf("untrusted CA: %v", err)
	}
	noSecret(t, "the error", err.Error())

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := l.Addr().String()
	l.Close()
	_, r, _ := parse(t, nil, "--redis", gone)
	o, _ := r.Options(redis.Options{DialTimeout: time.Second})
	c := redis.NewClient(o)
	defer c.Close()
	if err := r.Check(context.Background(), c); err == nil || Fatal(err) {
		t.Fatalf("no Redis: %v", err)
	}
}
