package connect

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is how a program reaches Redis: --redis host:port (plaintext, no
// user, as before) or --redis-url redis://[user@]host:port[/db] (rediss://
// for TLS), a password from a file or the environment, and TLS files.
// Register adds the flags; Options builds the client's options.
type Redis struct {
	Addr         string // --redis host:port
	URL          string // --redis-url, or $FRAUDSTREAM_REDIS_URL
	PasswordFile string // --redis-password-file
	CAFile       string // --redis-tls-ca
	CertFile     string // --redis-tls-cert
	KeyFile      string // --redis-tls-key

	addrSet     bool   // --redis given on the command line
	urlFromFlag bool   // URL given on the command line, where a password must not be
	password    string // $FRAUDSTREAM_REDIS_PASSWORD
}

// Environment forms that are not a flag's default: the URL (it may carry a
// password, which -h would print) and the password.
const (
	RedisURLEnv      = EnvPrefix + "REDIS_URL"
	RedisPasswordEnv = EnvPrefix + "REDIS_PASSWORD"
)

// flagValue is a string flag that records whether the command line set it.
type flagValue struct {
	p   *string
	set *bool
}

func (v flagValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v flagValue) Set(s string) error {
	*v.p, *v.set = s, true
	return nil
}

// Register adds --redis (default addr), --redis-url, --redis-password-file
// and --redis-tls-{ca,cert,key} to fs; what says what the Redis holds (for
// --redis's help). Defaults come from the environment.
func (r *Redis) Register(fs *flag.FlagSet, addr, what string) {
	r.Addr = addr
	fs.Var(flagValue{&r.Addr, &r.addrSet}, "redis", "Redis address (host:port) of "+what+"; plaintext without a user: see --redis-url")
	r.URL = os.Getenv(RedisURLEnv)
	fs.Func("redis-url", "Redis to use instead of --redis: redis://[user@]host:port[/db], rediss:// for TLS; a password in it only from $"+RedisURLEnv+
		" (the default), else --redis-password-file or $"+RedisPasswordEnv, func(s string) error {
		r.URL, r.urlFromFlag = s, true
		return nil
	})
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, os.Getenv(envName(name)), usage+" ($"+envName(name)+")")
	}
	str(&r.PasswordFile, "redis-password-file", "file holding the Redis password (of the URL's ACL user, or the default user; or put the password itself in $"+RedisPasswordEnv+")")
	str(&r.CAFile, "redis-tls-ca", "PEM file of the CA certificates that verify Redis (implies TLS)")
	str(&r.CertFile, "redis-tls-cert", "PEM client certificate for Redis, with --redis-tls-key (implies TLS)")
	str(&r.KeyFile, "redis-tls-key", "PEM private key of --redis-tls-cert")
	r.password = os.Getenv(RedisPasswordEnv)
}

func (r *Redis) tlsFiles() tlsFiles {
	return tlsFiles{prefix: "redis", ca: r.CAFile, cert: r.CertFile, key: r.KeyFile}
}

// parseURL parses --redis-url. Its errors never quote the URL, which may
// hold a password.
func (r *Redis) parseURL() (*url.URL, error) {
	u, err := url.Parse(r.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL
		}
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("--redis-url: scheme %q is not redis or rediss", u.Scheme)
	}
	if u.RawQuery != "" {
		return nil, errors.New("--redis-url: query parameters are not taken (timeouts and pools are the program's)")
	}
	return u, nil
}

// Validate reports settings that cannot work, naming the flag. It reads
// no file.
func (r *Redis) Validate() error {
	if err := r.tlsFiles().validate(); err != nil {
		return err
	}
	passwords := 0
	if r.PasswordFile != "" {
		passwords++
	}
	if r.password != "" {
		passwords++
	}
	if r.URL == "" {
		if _, _, err := net.SplitHostPort(r.Addr); err != nil {
			return fmt.Errorf("--redis %q: %w", r.Addr, err)
		}
	} else {
		if r.addrSet {
			return errors.New("--redis and --redis-url (or $" + RedisURLEnv + ") both name the Redis: give one")
		}
		u, err := r.parseURL()
		if err != nil {
			return err
		}
		if p, _ := u.User.Password(); p != "" {
			if r.urlFromFlag {
				return errors.New("--redis-url must not hold a password: the command line is visible to every user of the machine; " +
					"use --redis-password-file, $" + RedisPasswordEnv + ", or the whole URL in $" + RedisURLEnv)
			}
			passwords++
		}
		if u.Scheme == "redis" && r.tlsFiles().any() {
			return errors.New("--redis-tls-* need TLS: use a rediss:// URL")
		}
	}
	if passwords > 1 {
		return errors.New("more than one Redis password (the URL, --redis-password-file, $" + RedisPasswordEnv + "): give one")
	}
	return nil
}

// Options validates the settings, reads the files and returns base (the
// program's timeouts) with the address, user, password, database and TLS
// filled in.
func (r *Redis) Options(base redis.Options) (*redis.Options, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	o := base
	o.Addr = r.Addr
	if r.URL != "" {
		p, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err) // its errors quote the path or database, never the user part
		}
		o.Addr, o.Username, o.Password, o.DB, o.TLSConfig = p.Addr, p.Username, p.Password, p.DB, p.TLSConfig
	}
	switch {
	case r.PasswordFile != "":
		pass, err := readSecret("redis-password-file", r.PasswordFile)
		if err != nil {
			return nil, err
		}
		o.Password = pass
	case r.password != "":
		o.Password = r.password
	}
	if t := r.tlsFiles(); t.any() || o.TLSConfig != nil {
		if o.TLSConfig == nil { // --redis host:port with TLS files
			host, _, _ := net.SplitHostPort(o.Addr)
			t.serverName = host
		}
		cfg, err := t.config(o.TLSConfig)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = cfg
	}
	return &o, nil
}

// String names the Redis for a log line, without the password.
func (r *Redis) String() string {
	if r.URL == "" {
		if r.tlsFiles().any() {
			return r.Addr + " over TLS"
		}
		return r.Addr
	}
	u, err := r.parseURL()
	if err != nil {
		return "(an invalid --redis-url)"
	}
	u.User = userOnly(u.User)
	return u.String()
}

func userOnly(u *url.Userinfo) *url.Userinfo {
	if u == nil {
		return nil
	}
	return url.User(u.Username())
}

// user names the ACL user the settings log in as.
func (r *Redis) user() string {
	if r.URL != "" {
		if u, err := r.parseURL(); err == nil && u.User != nil && u.User.Username() != "" {
			return u.User.Username()
		}
	}
	return "default"
}

// Check sends PING within 5s (dialing, TLS and AUTH included). Its error
// says what failed and which flags to look at (Explain); Fatal tells
// whether retrying could help.
func (r *Redis) Check(ctx context.Context, c redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if Fatal(err) {
			return r.Explain(err)
		}
		return fmt.Errorf("redis %s: %w", r, err)
	}
	return nil
}

// Explain wraps a fatal error (see Fatal) with what it means and the flags
// that fix it; other errors are returned as they are.
func (r *Redis) Explain(err error) error {
	if p := authProblem(err); p != "" {
		return fmt.Errorf("redis %s: %s for user %s; check the user in --redis-url and the password in --redis-password-file, $%s or $%s: %w",
			r, p, strconv.Quote(r.user()), RedisPasswordEnv, RedisURLEnv, err)
	}
	if p := tlsProblem(err); p != "" {
		return fmt.Errorf("redis %s: TLS: %s; check --redis-tls-ca, or --redis-tls-cert and --redis-tls-key: %w", r, p, err)
	}
	return err
}
