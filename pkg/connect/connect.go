// Package connect holds the connection settings for Kafka and Redis that
// every program takes from flags and the environment: TLS (a CA file, a
// client certificate, a server name), SASL for Kafka (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512), Redis URLs with an ACL user and a database, and the
// passwords, which come from files or environment variables and never from
// the command line alone (where every user of the machine can read them).
//
// Each flag has an environment form, FRAUDSTREAM_ and the flag's name in
// capitals with underscores (--kafka-tls-ca: FRAUDSTREAM_KAFKA_TLS_CA); a
// flag given on the command line wins. Errors name the flag, never a secret.
//
// It also says which connection errors retrying cannot cure (Fatal): a
// refused login, a certificate that is not trusted, so that a program
// stops with that error instead of retrying it for ever.
package connect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// EnvPrefix starts the environment form of every flag here.
const EnvPrefix = "FRAUDSTREAM_"

// envName is the environment form of a flag.
func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// maxSecret bounds a password file: anything longer is the wrong file.
const maxSecret = 4 << 10

// readSecret reads a password from path. The line ending an editor or
// `echo pw > FILE` leaves is not part of it; other whitespace is. Errors
// name the flag and the file, never the content.
func readSecret(flagName, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecret+1))
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	if len(b) > maxSecret {
		return "", fmt.Errorf("--%s %s is longer than %d bytes: not a password file", flagName, path, maxSecret)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("--%s %s is empty", flagName, path)
	}
	return s, nil
}

// tlsFiles are one service's TLS flags; prefix is "kafka" or "redis".
type tlsFiles struct {
	prefix                    string
	ca, cert, key, serverName string
}

func (t tlsFiles) any() bool { return t.ca != "" || t.cert != "" || t.key != "" || t.serverName != "" }

func (t tlsFiles) validate() error {
	if (t.cert == "") != (t.key == "") {
		return fmt.Errorf("--%[1]s-tls-cert and --%[1]s-tls-key go together (a client certificate and its private key)", t.prefix)
	}
	return nil
}

// config reads the files into base (nil: a new config). Without a CA file
// the system's roots verify the server.
func (t tlsFiles) config(base *tls.Config) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if t.serverName != "" {
		cfg.ServerName = t.serverName
	}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, fmt.Errorf("--%s-tls-ca: %w", t.prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%s-tls-ca %s holds no PEM certificate", t.prefix, t.ca)
		}
		cfg.RootCAs = pool
	}
	if t.cert != "" {
		c, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, fmt.Errorf("--%[1]s-tls-cert %[2]s, --%[1]s-tls-key %[3]s: %[4]w", t.prefix, t.cert, t.key, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// Fatal reports whether err is a connection error that retrying cannot
// cure: credentials refused (Kafka SASL, Redis AUTH), a server certificate
// that is not trusted or not valid for the address, a server that does
// not speak TLS or refuses the handshake, a SASL mechanism the broker does
// not offer. An unreachable or restarting server is not fatal.
func Fatal(err error) bool {
	if err == nil {
		return false
	}
	return authProblem(err) != "" || tlsProblem(err) != ""
}

// authProblem says what is wrong with the credentials, or "".
func authProblem(err error) string {
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return "SASL authentication failed"
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return "the broker does not offer this SASL mechanism"
	case errors.Is(err, kafka.IllegalSASLState):
		return "the broker did not expect SASL here, perhaps not a SASL listener"
	case redis.HasErrorPrefix(err, "WRONGPASS"):
		return "authentication failed"
	case redis.HasErrorPrefix(err, "NOAUTH"):
		return "the server requires a password"
	}
	return ""
}

// tlsProblem says what is wrong with the TLS handshake, or "".
func tlsProblem(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		host     x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		opErr    *net.OpError
		alertErr tls.AlertError
	)
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is not trusted"
	case errors.As(err, &host):
		return "the server's certificate is not valid for its address"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid"
	case errors.As(err, &verify):
		return "the server's certificate could not be verified"
	case errors.As(err, &header):
		return "the server did not answer TLS (a plaintext port?)"
	case errors.As(err, &alertErr), errors.As(err, &opErr) && opErr.Op == "remote error":
		// crypto/tls reports an alert from the peer as a "remote error".
		return "the server refused the TLS handshake, perhaps for want of a client certificate it trusts"
	}
	return ""
}
