// Package reviewweb is the analysts' web page and JSON API over the review
// queue (pkg/casework): server-rendered HTML (html/template, embedded
// assets, a small keyboard script, no build step), signed-in analysts only,
// CSRF tokens on every state change, a read-only viewer role, and every
// label attributed to its analyst.
package reviewweb

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/labels"
)

//go:embed assets
var assets embed.FS

// Config configures the handler.
type Config struct {
	Service *casework.Service // required
	Users   *Users            // required
	// SessionTTL is how long a sign-in lasts. Default 12h.
	SessionTTL time.Duration
	// InsecureCookies drops the Secure attribute, for plain-HTTP use on
	// a trusted network only (the demo on localhost). Default: Secure.
	InsecureCookies bool
	// QueueSize is how many cases the queue page lists. Default 50.
	QueueSize int
	Logger    *slog.Logger
	Now       func() time.Time
}

const (
	sessionCookie = "fraudstream_review"
	loginCookie   = "fraudstream_login"
	csrfHeader    = "X-CSRF-Token"
)

// Server serves the pages and the API.
type Server struct {
	cfg  Config
	svc  *casework.Service
	log  *slog.Logger
	tmpl *template.Template
	mux  *http.ServeMux
}

// New returns the server.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil || cfg.Users == nil {
		return nil, errors.New("reviewweb: a service and users are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, svc: cfg.Service, log: cfg.Logger, tmpl: t, mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "assets")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.loginSubmit)
	s.mux.HandleFunc("POST /logout", s.page(s.logout, true))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/queue", http.StatusSeeOther) })
	s.mux.HandleFunc("GET /queue", s.page(s.queuePage, false))
	s.mux.HandleFunc("GET /cases/{id}", s.page(s.casePage, false))
	s.mux.HandleFunc("POST /cases/{id}/label", s.page(s.labelSubmit, true))
	s.mux.HandleFunc("GET /clusters", s.page(s.clustersPage, false))
	s.mux.HandleFunc("GET /clusters/{c}", s.page(s.clusterPage, false))
	s.mux.HandleFunc("POST /clusters/{c}/label", s.page(s.clusterLabelSubmit, true))

	s.mux.HandleFunc("POST /api/login", s.apiLogin)
	s.mux.HandleFunc("POST /api/logout", s.api(s.apiLogout, true))
	s.mux.HandleFunc("GET /api/queue", s.api(s.apiQueue, false))
	s.mux.HandleFunc("GET /api/cases/{id}", s.api(s.apiCase, false))
	s.mux.HandleFunc("POST /api/cases/{id}/label", s.api(s.apiLabel, true))
	s.mux.HandleFunc("GET /api/clusters", s.api(s.apiClusters, false))
	s.mux.HandleFunc("POST /api/clusters/{c}/label", s.api(s.apiClusterLabel, true))
	s.mux.HandleFunc("GET /api/audit", s.api(s.apiAudit, false))
	return s, nil
}

// ServeHTTP adds the security headers every response carries.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	s.mux.ServeHTTP(w, r)
}

type ctxKey struct{}

// who is the signed-in analyst of a request.
type who struct {
	casework.Session
	token string
}

func (s *Server) session(r *http.Request) (who, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return who{}, casework.ErrNoSession
	}
	sess, err := s.svc.Session(r.Context(), c.Value)
	return who{sess, c.Value}, err
}

func user(r *http.Request) who { return r.Context().Value(ctxKey{}).(who) }

// guard checks the session, and for a state change the CSRF token and
// the role. It writes the refusal and returns false when refused.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, change bool, token func() string, refuse func(int, string)) (who, bool) {
	u, err := s.session(r)
	switch {
	case errors.Is(err, casework.ErrNoSession):
		refuse(http.StatusUnauthorized, "sign in first")
		return u, false
	case err != nil:
		s.log.Error("reading a session failed", "err", err)
		refuse(http.StatusServiceUnavailable, "the session store is unavailable; try again")
		return u, false
	}
	if change {
		if t := token(); t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(u.CSRF)) != 1 {
			s.audit(r.Context(), u.User, "refused", "missing or wrong CSRF token on "+r.Method+" "+r.URL.Path)
			refuse(http.StatusForbidden, "missing or wrong CSRF token")
			return u, false
		}
	}
	return u, true
}

// page wraps an HTML handler: no session sends the browser to sign in.
func (s *Server) page(h http.HandlerFunc, change bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.guard(w, r, change, func() string { return r.PostFormValue("csrf") }, func(code int, msg string) {
			if code == http.StatusUnauthorized && r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, msg, code)
		})
		if ok {
			h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, u)))
		}
	}
}

// api wraps a JSON handler: the CSRF token comes in the X-CSRF-Token header.
func (s *Server) api(h http.HandlerFunc, change bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.guard(w, r, change, func() string { return r.Header.Get(csrfHeader) }, func(code int, msg string) {
			writeJSON(w, code, map[string]string{"error": msg})
		})
		if ok {
			h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, u)))
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

func (s *Server) audit(ctx context.Context, analyst, action, detail string) {
	if err := s.svc.Record(ctx, analyst, action, detail); err != nil {
		s.log.Warn("audit record failed", "analyst", analyst, "action", action, "err", err)
	}
	s.log.Info("audit", "analyst", analyst, "action", action, "detail", detail)
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("rendering failed", "template", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func (s *Server) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: !s.cfg.InsecureCookies, SameSite: http.SameSiteStrictMode}
}

// Sign-in lockout: after maxFails wrong passwords for one name within
// failWindow of the first, that name is refused until the window passes;
// the count is in Redis, so every replica shares it.
const (
	maxFails   = 5
	failWindow = 5 * time.Minute
)

func (s *Server) lockedOut(ctx context.Context, name string) (bool, error) {
	n, err := s.svc.SignInFailures(ctx, name)
	return n >= maxFails, err
}

// signIn checks a name and password and starts a session.
func (s *Server) signIn(ctx context.Context, name, password string) (token string, sess casework.Session, code int, err error) {
	locked, err := s.lockedOut(ctx, name)
	if err != nil {
		s.log.Error("reading sign-in failures failed", "err", err)
		return "", sess, http.StatusServiceUnavailable, errors.New("the session store is unavailable; try again")
	}
	if locked {
		s.audit(ctx, name, "refused", "sign-in locked out after repeated failures")
		return "", sess, http.StatusTooManyRequests, errors.New("too many failed sign-ins; wait a few minutes")
	}
	u, ok := s.cfg.Users.Check(name, password)
	if !ok {
		if err := s.svc.SignInFailed(ctx, name, failWindow); err != nil {
			s.log.Warn("counting a failed sign-in failed", "err", err)
		}
		s.audit(ctx, name, "refused", "wrong name or password")
		return "", sess, http.StatusUnauthorized, errors.New("wrong name or password")
	}
	sess = casework.Session{User: u.Name, Role: u.Role, CSRF: casework.NewToken()}
	token, err = s.svc.StartSession(ctx, sess, s.cfg.SessionTTL)
	if err != nil {
		s.log.Error("starting a session failed", "err", err)
		return "", sess, http.StatusServiceUnavailable, errors.New("the session store is unavailable; try again")
	}
	s.audit(ctx, u.Name, "sign-in", "")
	return token, sess, http.StatusOK, nil
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	// Login CSRF: the form carries a token that must match a cookie.
	tok := casework.NewToken()
	http.SetCookie(w, s.cookie(loginCookie, tok, 3600))
	s.render(w, "login.html", map[string]any{"CSRF": tok, "Next": safeNext(r.URL.Query().Get("next")), "Error": r.URL.Query().Get("error")})
}

// safeNext keeps a post-sign-in destination on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/queue"
	}
	return next
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCookie)
	form := r.PostFormValue("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 {
		http.Error(w, "missing or wrong CSRF token: reload the sign-in page", http.StatusForbidden)
		return
	}
	token, _, code, err := s.signIn(r.Context(), r.PostFormValue("user"), r.PostFormValue("password"))
	next := safeNext(r.PostFormValue("next"))
	if err != nil {
		if code == http.StatusServiceUnavailable {
			http.Error(w, err.Error(), code)
			return
		}
		http.Redirect(w, r, "/login?error="+url.QueryEscape(err.Error())+"&next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	http.SetCookie(w, s.cookie(loginCookie, "", -1))
	http.SetCookie(w, s.cookie(sessionCookie, token, int(s.cfg.SessionTTL.Seconds())))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	u := user(r)
	if err := s.svc.EndSession(r.Context(), u.token); err != nil {
		http.Error(w, "sign-out failed; try again", http.StatusServiceUnavailable)
		return
	}
	s.audit(r.Context(), u.User, "sign-out", "")
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	var in struct{ User, Password string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON {\"user\",\"password\"}"})
		return
	}
	token, sess, code, err := s.signIn(r.Context(), in.User, in.Password)
	if err != nil {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	http.SetCookie(w, s.cookie(sessionCookie, token, int(s.cfg.SessionTTL.Seconds())))
	writeJSON(w, http.StatusOK, map[string]string{"user": sess.User, "role": sess.Role, "csrf_token": sess.CSRF})
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	u := user(r)
	if err := s.svc.EndSession(r.Context(), u.token); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	s.audit(r.Context(), u.User, "sign-out", "")
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	writeJSON(w, http.StatusOK, map[string]string{})
}

// label applies an analyst's label; it is the one path for the page and
// the API.
func (s *Server) label(ctx context.Context, u who, id, label, note string) (labels.Label, int, error) {
	if u.Role != RoleAnalyst {
		s.audit(ctx, u.User, "refused", "viewer may not label "+id)
		return labels.Label{}, http.StatusForbidden, errors.New("your role (" + u.Role + ") may not label")
	}
	l, err := s.svc.Label(ctx, labels.Label{TransactionID: id, Label: label, Analyst: u.User, Note: strings.TrimSpace(note)})
	switch {
	case err == nil:
		return l, http.StatusOK, nil
	case strings.Contains(err.Error(), "not recorded") || strings.Contains(err.Error(), "index"):
		s.log.Error("labelling failed", "transaction_id", id, "err", err)
		return l, http.StatusServiceUnavailable, err
	default:
		return l, http.StatusBadRequest, err
	}
}

func (s *Server) clusterLabel(ctx context.Context, u who, c, label, note string) (int, int, error) {
	if u.Role != RoleAnalyst {
		s.audit(ctx, u.User, "refused", "viewer may not label cluster "+c)
		return 0, http.StatusForbidden, errors.New("your role (" + u.Role + ") may not label")
	}
	id, err := strconv.Atoi(c)
	if err != nil {
		return 0, http.StatusNotFound, fmt.Errorf("no cluster %q", c)
	}
	n, err := s.svc.LabelCluster(ctx, id, label, u.User, strings.TrimSpace(note))
	if err != nil {
		return n, http.StatusServiceUnavailable, err
	}
	s.audit(ctx, u.User, "label-cluster", fmt.Sprintf("cluster %d: %d cases %s", id, n, label))
	return n, http.StatusOK, nil
}
