package main

import (
	"context"
	"errors"
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

// TestServeStopsOnRefusedCredentials: a wrong Kafka password or a wrong
// Redis password ends `scorer run` at startup with an error that says so,
// where it used to retry for ever ("Kafka unreachable; retrying", and a
// model loader that never loads); neither the error nor the log shows the
// password.
func TestServeStopsOnRefusedCredentials(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "scorer", testPassword))
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

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"kafka", []string{"--brokers", strings.Join(cluster.ListenAddrs(), ","), "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-user", "scorer",
			"--kafka-sasl-password-file", wrong, "--redis-url", "redis://fraudstream@" + mr.Addr(), "--redis-password-file", right},
			`kafka: SASL authentication failed for user "scorer" with SCRAM-SHA-512`},
		{"redis", []string{"--brokers", strings.Join(plain.Addrs(), ","), "--redis-url", "redis://fraudstream@" + mr.Addr(), "--redis-password-file", wrong},
			`authentication failed for user "fraudstream"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c runConfig
			fs := newFlagSet()
			runFlags(fs, &c)
			if err := fs.Parse(append(tc.args, "--metrics-addr", "", "--create-topics")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var log syncBuffer
			err := serve(ctx, c, &log)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve: %v, want %q\n%s", err, tc.want, log.String())
			}
			if strings.Contains(err.Error()+log.String(), testPassword) {
				t.Fatalf("the password shows:\n%v\n%s", err, log.String())
			}
		})
	}
}
