package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

const testPassword = "s3cret-Pa55"

// TestRefusedCredentialsStopTheTrainer: a wrong Redis or Kafka password
// ends `trainer run` at startup with an error that says so, where the
// daemon used to retry its rounds for ever; `trainer models` says so too.
// Neither the error nor the log shows the password.
func TestRefusedCredentialsStopTheTrainer(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "trainer", testPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	plain, err := stream.StartEmbedded(0)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	mr := miniredis.RunT(t)
	mr.RequireUserAuth("fraudstream", testPassword)
	dir := t.TempDir()
	wrong, right := filepath.Join(dir, "wrong"), filepath.Join(dir, "right")
	os.WriteFile(wrong, []byte("not-"+testPassword+"\n"), 0o600)
	os.WriteFile(right, []byte(testPassword+"\n"), 0o600)
	redisURL := "redis://fraudstream@" + mr.Addr()

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--metrics-addr", "", "--brokers", strings.Join(plain.Addrs(), ","), "--redis-url", redisURL, "--redis-password-file", wrong},
			`authentication failed for user "fraudstream"; check the user in --redis-url and the password in --redis-password-file`},
		{[]string{"run", "--metrics-addr", "", "--brokers", strings.Join(cluster.ListenAddrs(), ","), "--redis-url", redisURL, "--redis-password-file", right,
			"--kafka-sasl-mechanism", "scram-sha-256", "--kafka-sasl-user", "trainer", "--kafka-sasl-password-file", wrong},
			`kafka: SASL authentication failed for user "trainer" with SCRAM-SHA-256`},
		{[]string{"models", "list", "--redis-url", redisURL, "--redis-password-file", wrong},
			`authentication failed for user "fraudstream"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var errb syncBuffer
		start := time.Now()
		code := run(ctx, tc.args, nil, io.Discard, &errb)
		cancel()
		if code != 1 || !strings.Contains(errb.String(), tc.want) || time.Since(start) > 30*time.Second {
			t.Fatalf("%v: exit %d after %s, want 1 saying %q:\n%s", tc.args, code, time.Since(start), tc.want, errb.String())
		}
		if strings.Contains(errb.String(), testPassword) {
			t.Fatalf("%v: the password shows:\n%s", tc.args, errb.String())
		}
	}
	// With the right passwords the checks pass and the round runs: it stops
	// at the missing topic.
	var errb syncBuffer
	code := run(context.Background(), []string{"run", "--once", "--metrics-addr", "", "--brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--redis-url", redisURL, "--redis-password-file", right,
		"--kafka-sasl-mechanism", "scram-sha-256", "--kafka-sasl-user", "trainer", "--kafka-sasl-password-file", right}, nil, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "topic transactions does not exist") || strings.Contains(errb.String(), "authentication") {
		t.Fatalf("with the right passwords: exit %d:\n%s", code, errb.String())
	}
}
