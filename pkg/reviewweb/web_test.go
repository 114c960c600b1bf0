package reviewweb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/review"
)

type sink struct {
	mu  sync.Mutex
	got []labels.Label
}

func (s *sink) WriteLabels(_ context.Context, ls []labels.Label) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, ls...)
	return nil
}

func (s *sink) all() []labels.Label {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]labels.Label(nil), s.got...)
}

func testUsers(t *testing.T) *Users {
	var lines []string
	for _, u := range [][2]string{{"ana", RoleAnalyst}, {"val", RoleViewer}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[0]+"-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u[0]+":"+u[1]+":"+string(h))
	}
	us, err := ParseUsers(strings.NewReader("# analysts\n" + strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return us
}

// testServer serves a queue with two cases (no model: queued by score).
func testServer(t *testing.T) (*httptest.Server, *sink) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	out := &sink{}
	svc, err := casework.New(casework.Config{Redis: rdb, Labels: out})
	if err != nil {
		t.Fatal(err)
	}
	p := func(x float32) *float32 { return &x }
	var vals [][]byte
	for i, id := range []string{"tx-1", "tx-2"} {
		a, _ := json.Marshal(casework.Alert{TransactionID: id, Score: float32(5 - i), Threshold: 1, ModelVersion: "3",
			Reasons: []review.Reason{{Field: "country", Observed: "BR", Expected: "<OTHER>", Probability: p(0.001)},
				{Field: "amount", Observed: "872.14", Expected: "216.4"}},
			Transaction: json.RawMessage(fmt.Sprintf(`{"tx_id":%q,"amount":872.14,"country":"BR","note":"<script>alert(1)</script>"}`, id))})
		vals = append(vals, a)
	}
	if _, bad, err := svc.Ingest(context.Background(), vals); err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	srv, err := New(Config{Service: svc, Users: testUsers(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv)
	t.Cleanup(ts.Close)
	return ts, out
}

func client(t *testing.T, ts *httptest.Server) *http.Client {
	c := ts.Client()
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in through the page and returns the session's CSRF token.
func signIn(t *testing.T, ts *httptest.Server, c *http.Client, name string) string {
	t.Helper()
	res, err := c.Get(ts.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	m := csrfField.FindStringSubmatch(body(t, res))
	if m == nil {
		t.Fatal("no CSRF token on the sign-in page")
	}
	res, err = c.PostForm(ts.URL+"/login", url.Values{"csrf": {m[1]}, "user": {name}, "password": {name + "-password"}, "next": {"/queue"}})
	if err != nil {
		t.Fatal(err)
	}
	body(t, res)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/queue" {
		t.Fatalf("sign-in: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	set := strings.Join(res.Header.Values("Set-Cookie"), "\n")
	if !regexp.MustCompile(`fraudstream_review=[^;\n]+;[^\n]*HttpOnly; Secure; SameSite=Strict`).MatchString(set) {
		t.Fatalf("session cookie not Secure, HttpOnly and SameSite: %s", set)
	}
	res, _ = c.Get(ts.URL + "/queue")
	m = csrfField.FindStringSubmatch(body(t, res))
	if m == nil {
		t.Fatal("no CSRF token on the queue page")
	}
	return m[1]
}

func TestNoAnonymousAccess(t *testing.T) {
	ts, out := testServer(t)
	c := client(t, ts)
	for _, path := range []string{"/queue", "/cases/tx-1", "/clusters"} {
		res, err := c.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body(t, res)
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without a session: %d %q", path, res.StatusCode, res.Header.Get("Location"))
		}
	}
	for _, path := range []string{"/api/queue", "/api/cases/tx-1", "/api/clusters", "/api/audit"} {
		res, _ := c.Get(ts.URL + path)
		if body(t, res); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d", path, res.StatusCode)
		}
	}
	res, _ := c.PostForm(ts.URL+"/cases/tx-1/label", url.Values{"label": {"fraud"}})
	if body(t, res); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("label without a session: %d", res.StatusCode)
	}
	// Signing in needs the sign-in page's token (login CSRF).
	res, _ = c.PostForm(ts.URL+"/login", url.Values{"user": {"ana"}, "password": {"ana-password"}})
	if body(t, res); res.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without the form's token: %d", res.StatusCode)
	}
	if len(out.all()) != 0 {
		t.Fatal("a label was published without a session")
	}
}

func TestLabelThroughThePage(t *testing.T) {
	ts, out := testServer(t)
	c := client(t, ts)
	csrf := signIn(t, ts, c, "ana")
	// The case page says why in plain words, escapes the transaction.
	res, _ := c.Get(ts.URL + "/cases/tx-1")
	page := body(t, res)
	for _, want := range []string{"amount 872.14 where about 216 is typical", "country BR, a value the model gave 0.1% here (a rarer value expected)", "&lt;script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("case page lacks %q", want)
		}
	}
	if strings.Contains(page, "&lt;OTHER&gt;") || strings.Contains(page, "<script>alert") {
		t.Error("case page shows a raw <OTHER> or unescaped input")
	}
	// Without the CSRF token: refused, nothing published.
	res, _ = c.PostForm(ts.URL+"/cases/tx-1/label", url.Values{"label": {"fraud"}})
	if body(t, res); res.StatusCode != http.StatusForbidden || len(out.all()) != 0 {
		t.Fatalf("label without CSRF: %d, %d published", res.StatusCode, len(out.all()))
	}
	res, _ = c.PostForm(ts.URL+"/cases/tx-1/label", url.Values{"label": {"fraud"}, "csrf": {csrf}, "note": {"card tested"}, "next": {"tx-2"}})
	body(t, res)
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/cases/tx-2") {
		t.Fatalf("label: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	got := out.all()
	if len(got) != 1 || got[0].Analyst != "ana" || got[0].Label != labels.Fraud || got[0].Note != "card tested" || got[0].ModelVersion != "3" || got[0].Source != "case" {
		t.Fatalf("published %+v", got)
	}
	// Signed out, the session is gone.
	res, _ = c.PostForm(ts.URL+"/logout", url.Values{"csrf": {csrf}})
	body(t, res)
	res, _ = c.Get(ts.URL + "/queue")
	if body(t, res); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", res.StatusCode)
	}
}

func TestViewerMayNotLabel(t *testing.T) {
	ts, out := testServer(t)
	c := client(t, ts)
	csrf := signIn(t, ts, c, "val")
	res, _ := c.PostForm(ts.URL+"/cases/tx-1/label", url.Values{"label": {"fraud"}, "csrf": {csrf}})
	if body(t, res); res.StatusCode != http.StatusForbidden || len(out.all()) != 0 {
		t.Fatalf("viewer label: %d", res.StatusCode)
	}
	res, _ = c.Get(ts.URL + "/queue")
	if page := body(t, res); res.StatusCode != 200 || !strings.Contains(page, "tx-1") {
		t.Fatalf("viewer cannot read the queue: %d", res.StatusCode)
	}
}

func TestAPI(t *testing.T) {
	ts, out := testServer(t)
	c := client(t, ts)
	res, _ := c.Post(ts.URL+"/api/login", "application/json", strings.NewReader(`{"user":"ana","password":"wrong"}`))
	if body(t, res); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", res.StatusCode)
	}
	res, _ = c.Post(ts.URL+"/api/login", "application/json", strings.NewReader(`{"user":"ana","password":"ana-password"}`))
	var login struct {
		CSRFToken string `json:"csrf_token"`
	}
	json.Unmarshal([]byte(body(t, res)), &login)
	if res.StatusCode != 200 || login.CSRFToken == "" {
		t.Fatalf("api login %d", res.StatusCode)
	}
	res, _ = c.Get(ts.URL + "/api/queue")
	var q struct {
		Pending int
		Cases   []struct {
			ID      string
			Reasons []struct{ Text string }
		}
	}
	json.Unmarshal([]byte(body(t, res)), &q)
	if q.Pending != 2 || len(q.Cases) != 2 || q.Cases[0].ID != "tx-1" || q.Cases[0].Reasons[1].Text != "amount 872.14 where about 216 is typical" {
		t.Fatalf("api queue %+v", q)
	}
	post := func(token, payload string) int {
		req, _ := http.NewRequest("POST", ts.URL+"/api/cases/tx-2/label", strings.NewReader(payload))
		if token != "" {
			req.Header.Set("X-CSRF-Token", token)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body(t, res)
		return res.StatusCode
	}
	if code := post("", `{"label":"legitimate"}`); code != http.StatusForbidden {
		t.Fatalf("api label without the CSRF header: %d", code)
	}
	if code := post(login.CSRFToken, `{"label":"maybe"}`); code != http.StatusBadRequest {
		t.Fatalf("api label 'maybe': %d", code)
	}
	if code := post(login.CSRFToken, `{"label":"legitimate"}`); code != 200 || len(out.all()) != 1 || out.all()[0].TransactionID != "tx-2" {
		t.Fatalf("api label: %d %+v", code, out.all())
	}
	res, _ = c.Get(ts.URL + "/api/audit")
	if a := body(t, res); !strings.Contains(a, `"action": "label"`) && !strings.Contains(a, `"action":"label"`) {
		t.Fatalf("audit lacks the label: %s", a)
	}
}

// TestSignInLockout: five wrong passwords lock a name on every replica
// (the count is in Redis) until the window passes.
func TestSignInLockout(t *testing.T) {
	mr := miniredis.RunT(t)
	replica := func() *httptest.Server {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { rdb.Close() })
		svc, err := casework.New(casework.Config{Redis: rdb, Labels: &sink{}})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Config{Service: svc, Users: testUsers(t)})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewTLSServer(srv)
		t.Cleanup(ts.Close)
		return ts
	}
	a, b := replica(), replica()
	try := func(ts *httptest.Server, pw string) int {
		res, err := client(t, ts).Post(ts.URL+"/api/login", "application/json", strings.NewReader(`{"user":"ana","password":"`+pw+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		body(t, res)
		return res.StatusCode
	}
	for range maxFails {
		if code := try(a, "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if code := try(b, "ana-password"); code != http.StatusTooManyRequests {
		t.Fatalf("right password on another replica after %d failures: %d, want 429", maxFails, code)
	}
	if code := try(a, "ana-password"); code != http.StatusTooManyRequests {
		t.Fatalf("right password after %d failures: %d, want 429", maxFails, code)
	}
	mr.FastForward(failWindow + time.Second)
	if code := try(b, "ana-password"); code != http.StatusOK {
		t.Fatalf("after the window: %d", code)
	}
}

func TestParseUsers(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "nobody",
		"ana:analyst":         "name:role:bcrypt-hash",
		"ana:boss:$2a$04$xx":  `role "boss"`,
		"ana:analyst:plain":   "not bcrypt",
		"a b:analyst:$2a$04$": "without spaces",
	} {
		if _, err := ParseUsers(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	line, err := Line("ana", RoleAnalyst, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParseUsers(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Check("ana", "correct horse"); !ok {
		t.Fatal("the password Line hashed does not check")
	}
	if _, ok := u.Check("ana", "wrong"); ok {
		t.Fatal("a wrong password checks")
	}
	if _, err := Line("ana", RoleAnalyst, "short"); err == nil {
		t.Fatal("a short password accepted")
	}
}

func TestLoadUsersRefusesWritableFile(t *testing.T) {
	line, _ := Line("ana", RoleAnalyst, "correct horse")
	path := t.TempDir() + "/users"
	if err := os.WriteFile(path, []byte(line+"\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	if _, err := LoadUsers(path); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("a world-writable users file: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadUsers(path); err != nil {
		t.Fatalf("mode 644: %v", err)
	}
}
