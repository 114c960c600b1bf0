package connect

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	fsasl "github.com/twmb/franz-go/pkg/sasl"
	fscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/fraudstream/fraudstream/pkg/stream"
)

// Kafka is how a program secures its connections to the brokers: TLS and
// SASL. The zero value (no flags) connects in plaintext without SASL, as
// before. Register adds the flags; Stream builds the stream.Config.
type Kafka struct {
	TLS          bool   // --kafka-tls: TLS, verified against the system's roots unless CAFile
	CAFile       string // --kafka-tls-ca
	CertFile     string // --kafka-tls-cert (client certificate)
	KeyFile      string // --kafka-tls-key
	ServerName   string // --kafka-tls-server-name (default: the broker's host)
	Mechanism    string // --kafka-sasl-mechanism: plain, scram-sha-256 or scram-sha-512
	User         string // --kafka-sasl-user
	PasswordFile string // --kafka-sasl-password-file

	password string // $FRAUDSTREAM_KAFKA_SASL_PASSWORD
	envErr   error  // a malformed $FRAUDSTREAM_KAFKA_TLS
}

// Kafka's environment-only secret.
const KafkaPasswordEnv = EnvPrefix + "KAFKA_SASL_PASSWORD"

// SASL mechanisms, as --kafka-sasl-mechanism takes them.
const (
	Plain       = "plain"
	ScramSHA256 = "scram-sha-256"
	ScramSHA512 = "scram-sha-512"
)

// Register adds the --kafka-tls* and --kafka-sasl-* flags to fs, their
// defaults from the environment, and reads $FRAUDSTREAM_KAFKA_SASL_PASSWORD.
func (k *Kafka) Register(fs *flag.FlagSet) {
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, os.Getenv(envName(name)), usage+" ($"+envName(name)+")")
	}
	tlsDefault := false
	if v := os.Getenv(envName("kafka-tls")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			k.envErr = fmt.Errorf("$%s=%q is not true or false", envName("kafka-tls"), v)
		}
		tlsDefault = b
	}
	fs.BoolVar(&k.TLS, "kafka-tls", tlsDefault, "connect to Kafka over TLS, verifying the brokers against the system's roots (or --kafka-tls-ca); implied by the other --kafka-tls-* flags ($"+envName("kafka-tls")+")")
	str(&k.CAFile, "kafka-tls-ca", "PEM file of the CA certificates that verify the Kafka brokers (implies TLS)")
	str(&k.CertFile, "kafka-tls-cert", "PEM client certificate for Kafka, with --kafka-tls-key (implies TLS)")
	str(&k.KeyFile, "kafka-tls-key", "PEM private key of --kafka-tls-cert")
	str(&k.ServerName, "kafka-tls-server-name", "name the brokers' certificates must carry (default: the host in --brokers)")
	str(&k.Mechanism, "kafka-sasl-mechanism", "SASL authentication to Kafka: plain, scram-sha-256 or scram-sha-512 (empty: none)")
	str(&k.User, "kafka-sasl-user", "SASL user name")
	str(&k.PasswordFile, "kafka-sasl-password-file", "file holding the SASL password (or put the password itself in $"+KafkaPasswordEnv+"; never on the command line)")
	k.password = os.Getenv(KafkaPasswordEnv)
}

func (k *Kafka) tlsFiles() tlsFiles {
	return tlsFiles{prefix: "kafka", ca: k.CAFile, cert: k.CertFile, key: k.KeyFile, serverName: k.ServerName}
}

// usesTLS: --kafka-tls, or any file or name that only TLS uses.
func (k *Kafka) usesTLS() bool { return k.TLS || k.tlsFiles().any() }

func (k *Kafka) mechanism() string { return strings.ToLower(strings.TrimSpace(k.Mechanism)) }

// Validate reports settings that cannot work, naming the flag. It reads
// no file.
func (k *Kafka) Validate() error {
	if k.envErr != nil {
		return k.envErr
	}
	if err := k.tlsFiles().validate(); err != nil {
		return err
	}
	hasPassword := k.PasswordFile != "" || k.password != ""
	switch m := k.mechanism(); m {
	case "":
		if k.User != "" || hasPassword {
			return errors.New("--kafka-sasl-user and a SASL password need --kafka-sasl-mechanism (plain, scram-sha-256 or scram-sha-512)")
		}
		return nil
	case Plain, ScramSHA256, ScramSHA512:
	default:
		return fmt.Errorf("--kafka-sasl-mechanism %q: not plain, scram-sha-256 or scram-sha-512", k.Mechanism)
	}
	if k.User == "" {
		return fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-user", k.mechanism())
	}
	if !hasPassword {
		return fmt.Errorf("--kafka-sasl-mechanism %s needs a password: --kafka-sasl-password-file FILE or $%s", k.mechanism(), KafkaPasswordEnv)
	}
	if k.PasswordFile != "" && k.password != "" {
		return fmt.Errorf("both --kafka-sasl-password-file and $%s are set: give one", KafkaPasswordEnv)
	}
	return nil
}

// Warning says what is weak in valid settings, or "": a PLAIN password
// sent without TLS can be read off the network.
func (k *Kafka) Warning() string {
	if k.mechanism() == Plain && !k.usesTLS() {
		return "SASL PLAIN without TLS sends the Kafka password in clear over the network: add --kafka-tls or --kafka-tls-ca"
	}
	return ""
}

// String describes the settings for a log line, without secrets.
func (k *Kafka) String() string {
	var parts []string
	if k.usesTLS() {
		t := "TLS"
		if k.CAFile != "" {
			t += " (CA " + k.CAFile + ")"
		}
		if k.CertFile != "" {
			t += " with a client certificate"
		}
		parts = append(parts, t)
	} else {
		parts = append(parts, "plaintext")
	}
	if m := k.mechanism(); m != "" {
		parts = append(parts, "SASL "+strings.ToUpper(m)+" as "+k.User)
	}
	return strings.Join(parts, ", ")
}

// Stream validates the settings, reads the certificate and password files
// and returns the stream.Config for brokers.
func (k *Kafka) Stream(brokers []string, clientID string) (stream.Config, error) {
	cfg := stream.Config{Brokers: brokers, ClientID: clientID}
	if err := k.Validate(); err != nil {
		return cfg, err
	}
	if k.usesTLS() {
		t, err := k.tlsFiles().config(nil)
		if err != nil {
			return cfg, err
		}
		cfg.TLS = t
	}
	if m := k.mechanism(); m != "" {
		pass := k.password
		if k.PasswordFile != "" {
			var err error
			if pass, err = readSecret("kafka-sasl-password-file", k.PasswordFile); err != nil {
				return cfg, err
			}
		}
		switch m {
		case Plain:
			cfg.SASL = plain.Mechanism{Username: k.User, Password: pass}
		default:
			cfg.SASL = newScram(m, fscram.Auth{User: k.User, Pass: pass})
		}
	}
	return cfg, nil
}

// checkTimeout bounds a startup check.
const checkTimeout = 10 * time.Second

// Check connects to the first of cfg's brokers that answers (TLS and SASL
// included) within 10s and closes the connection. Its error says what
// failed and which flags to look at (Explain); Fatal tells whether
// retrying could help.
func (k *Kafka) Check(ctx context.Context, cfg stream.Config) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	d := &kafka.Dialer{ClientID: cfg.ClientID, TLS: cfg.TLS, SASLMechanism: cfg.SASL, Timeout: checkTimeout, DualStack: true}
	var errs []error
	for _, b := range cfg.Brokers {
		c, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			return c.Close()
		}
		if Fatal(err) {
			return k.Explain(err)
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("kafka: no broker answered: %w", errors.Join(errs...))
}

// Explain wraps a fatal error (see Fatal) with what it means and the flags
// that fix it; other errors are returned as they are.
func (k *Kafka) Explain(err error) error {
	if p := authProblem(err); p != "" {
		who := "user " + strconv.Quote(k.User) + " with " + strings.ToUpper(k.mechanism())
		if k.mechanism() == "" {
			who = "no SASL mechanism"
		}
		return fmt.Errorf("kafka: %s for %s; check --kafka-sasl-mechanism, --kafka-sasl-user and the password in --kafka-sasl-password-file or $%s: %w",
			p, who, KafkaPasswordEnv, err)
	}
	if p := tlsProblem(err); p != "" {
		return fmt.Errorf("kafka: TLS: %s; check --kafka-tls-ca and --kafka-tls-server-name, or --kafka-tls-cert and --kafka-tls-key: %w", p, err)
	}
	return err
}

// scram adapts franz-go's SCRAM client (RFC 5802; standard library only)
// to kafka-go's sasl.Mechanism. kafka-go's own sasl/scram would need three
// modules this one does not require.
type scram struct{ m fsasl.Mechanism }

func newScram(mechanism string, a fscram.Auth) scram {
	if mechanism == ScramSHA512 {
		return scram{a.AsSha512Mechanism()}
	}
	return scram{a.AsSha256Mechanism()}
}

func (s scram) Name() string { return s.m.Name() }

func (s scram) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	sess, first, err := s.m.Authenticate(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	return scramSession{sess}, first, nil
}

type scramSession struct{ s fsasl.Session }

func (s scramSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	return s.s.Challenge(challenge)
}
