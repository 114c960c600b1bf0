package casework

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Session is a signed-in analyst. Sessions live in Redis so that every
// replica of the review service knows them; the cookie holds a random
// token and Redis only its SHA-256, so a Redis dump reveals no usable
// session.
type Session struct {
	User    string    `json:"user"`
	Role    string    `json:"role"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
}

func (s *Service) kSession(token string) string {
	h := sha256.Sum256([]byte(token))
	return s.p + "session:" + hex.EncodeToString(h[:])
}

// NewToken returns 32 random bytes, URL-safe base64.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// StartSession stores a session for ttl and returns its token.
func (s *Service) StartSession(ctx context.Context, sess Session, ttl time.Duration) (string, error) {
	token := NewToken()
	if sess.CSRF == "" {
		sess.CSRF = NewToken()
	}
	sess.Created = s.cfg.Now().UTC()
	js, err := json.Marshal(sess)
	if err != nil {
		return "", err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return token, s.rdb.Set(ctx, s.kSession(token), js, ttl).Err()
}

// ErrNoSession: the token names no live session.
var ErrNoSession = errors.New("no such session")

// Session returns the session a token names.
func (s *Service) Session(ctx context.Context, token string) (Session, error) {
	var sess Session
	if token == "" {
		return sess, ErrNoSession
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b, err := s.rdb.Get(ctx, s.kSession(token)).Bytes()
	if errors.Is(err, redis.Nil) {
		return sess, ErrNoSession
	}
	if err != nil {
		return sess, err
	}
	return sess, json.Unmarshal(b, &sess)
}

// EndSession forgets a session.
func (s *Service) EndSession(ctx context.Context, token string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.rdb.Del(ctx, s.kSession(token)).Err()
}

// kFails counts a name's failed sign-ins; it expires window after the
// first, so every replica shares one lockout.
func (s *Service) kFails(name string) string {
	h := sha256.Sum256([]byte(name))
	return s.p + "signin-fails:" + hex.EncodeToString(h[:8])
}

// SignInFailures returns a name's failed sign-ins in the current window.
func (s *Service) SignInFailures(ctx context.Context, name string) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.rdb.Get(ctx, s.kFails(name)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// SignInFailed counts a failed sign-in for name; the count lasts window
// from the first failure.
func (s *Service) SignInFailed(ctx context.Context, name string, window time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, s.kFails(name))
		p.ExpireNX(ctx, s.kFails(name), window)
		return nil
	})
	return err
}
