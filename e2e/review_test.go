package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fraudstream/fraudstream/internal/proctest"
	"github.com/fraudstream/fraudstream/pkg/labels"
)

// browser finds a Chromium; without one the test is skipped, unless
// E2E_BROWSER=required (.ci/run installs Debian's chromium and sets it).
func browser(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("E2E_BROWSER") == "required" {
		t.Fatal("no chromium installed (apt-get install chromium) and E2E_BROWSER=required")
	}
	t.Skip("no chromium installed (apt-get install chromium)")
	return ""
}

// selfSigned writes a certificate and key for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "review-e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

// TestReviewInBrowser: the real pipeline makes alerts (generator, trainer,
// scorer), `review run` queues them, and headless Chromium signs in,
// labels one case from the queue and one from its case page with the
// keyboard; the labels are read back from the labels topic with kcat.
// Requests without a session or without the CSRF token are refused.
func TestReviewInBrowser(t *testing.T) {
	e := setup(t)
	chrome := browser(t)
	out := filepath.Join(e.dir, "review")
	if b, err := exec.Command("go", "build", "-o", out, "../cmd/review").CombinedOutput(); err != nil {
		t.Fatalf("build review: %v\n%s", err, b)
	}
	e.bin["review"] = out
	tx, alerts, labelsTopic := e.topic("rtx"), e.topic("ralerts"), e.topic("labels")
	prefix := "e2e-review:" + e.sfx + ":"
	common := []string{"--brokers", e.brokers, "--redis", e.redis, "--registry-prefix", prefix + "model:"}

	e.run("generator", "--brokers", e.brokers, "--topic", tx, "--count", "6000", "--rate", "0", "--seed", "31", "--fraud-rate", "0.02")
	e.run("trainer", append([]string{"run", "--once", "--transactions", tx, "--min-rows", "2000", "--epochs", "4"}, common...)...)
	e.start("scorer", "review-scorer", append([]string{"run", "--transactions", tx, "--alerts", alerts, "--scores", "",
		"--dead-letter", e.topic("rdead"), "--group", "e2e-review-" + e.sfx, "--metrics-addr", "", "--create-topics",
		"--partitions", "2", "--budget", "0.02"}, common...)...)

	// The users file, written by `review passwd`.
	users := filepath.Join(e.dir, "users")
	var lines []string
	for _, u := range [][2]string{{"ana", "analyst"}, {"val", "viewer"}} {
		cmd := exec.Command(out, "passwd", "--user", u[0], "--role", u[1])
		cmd.Stdin = strings.NewReader(u[0] + "-secret-pw\n")
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("review passwd: %v", err)
		}
		lines = append(lines, strings.TrimSpace(string(b)))
	}
	os.WriteFile(users, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	cert, key := selfSigned(t, e.dir)
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	e.start("review", "review", append([]string{"run", "--addr", addr, "--users", users, "--tls-cert", cert, "--tls-key", key,
		"--alerts", alerts, "--labels", labelsTopic, "--transactions", tx, "--dead-letter", e.topic("rdl"), "--create-topics",
		"--group", "e2e-review-" + e.sfx, "--prefix", prefix + "review:", "--refit-every", "1s", "--metrics-addr", ""}, common...)...)
	base := "https://" + addr

	// More traffic, so the scorer (on the trained model) raises alerts.
	e.run("generator", "--brokers", e.brokers, "--topic", tx, "--count", "3000", "--rate", "0", "--seed", "32", "--fraud-rate", "0.02")

	// A plain client: the API shows the queue once alerts arrive.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := hc.Post(base+"/api/login", "application/json", strings.NewReader(`{"user":"val","password":"val-secret-pw"}`))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				r2, err := hc.Get(base + "/api/queue?n=5")
				if err == nil {
					var q struct{ Pending int }
					json.NewDecoder(r2.Body).Decode(&q)
					r2.Body.Close()
					if q.Pending >= 3 {
						break
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alerts queued within 90s (last error %v)", err)
		}
		time.Sleep(time.Second)
	}

	// Refusals: no session; a session but no CSRF token; a viewer.
	anon := &http.Client{Timeout: 10 * time.Second, Transport: hc.Transport, CheckRedirect: hc.CheckRedirect}
	if res, err := anon.PostForm(base+"/cases/x/label", url.Values{"label": {"fraud"}}); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("label without a session: %v %v", res.StatusCode, err)
	}
	if res, err := anon.Get(base + "/api/queue"); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a session: %v %v", res.StatusCode, err)
	}
	if res, err := hc.PostForm(base+"/cases/x/label", url.Values{"label": {"fraud"}}); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("label without the CSRF token: %v %v", res.StatusCode, err)
	}

	// The browser.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.Flag("ignore-certificate-errors", true),
		chromedp.NoSandbox, chromedp.WindowSize(1366, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	shots := os.Getenv("REVIEW_SCREENSHOTS") // a folder: the README's screenshots
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("browser, %s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("browser, %s: %v", what, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		// What a laptop screen shows (1366x900), as PNG.
		png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if shots != "" {
			os.WriteFile(filepath.Join(shots, name), png, 0o644)
		}
	}
	step("sign in", chromedp.Navigate(base+"/queue"), chromedp.WaitVisible("#user"),
		chromedp.SendKeys("#user", "ana"), chromedp.SendKeys("#password", "ana-secret-pw"), chromedp.Click("#signin"),
		chromedp.WaitVisible("#queue"))
	attr, err := chromedp.Run(bctx, chromedp.AttributeValue("#queue tbody tr.sel", "data-id"))
	if err != nil || attr.Value == "" {
		t.Fatalf("browser, the selected case: %+v %v", attr, err)
	}
	first := attr.Value
	shot("review-queue.png")
	// f labels the selected (first) case fraud and returns to the queue.
	step("label with f", chromedp.KeyEvent("f"), chromedp.Sleep(300*time.Millisecond), chromedp.WaitVisible("#queue"))
	if loc := get("location", chromedp.Location()); !strings.Contains(loc, "labelled=") {
		t.Fatalf("after f on %q the page is %s", first, loc)
	}
	// j moves to the next case, o opens it; l labels it legitimate there.
	step("open with j, o", chromedp.KeyEvent("j"), chromedp.KeyEvent("o"), chromedp.WaitVisible("#label-form"))
	loc := get("location", chromedp.Location())
	caseID, _ := url.PathUnescape(loc[strings.LastIndex(loc, "/")+1:])
	shot("review-case.png")
	step("label with l", chromedp.KeyEvent("l"), chromedp.Sleep(500*time.Millisecond))
	if after := get("location", chromedp.Location()); after == loc {
		t.Fatalf("l on the case page did not move on from %s", loc)
	}

	// Both labels are on the labels topic, attributed, keyed by transaction.
	if caseID == first || caseID == "" {
		t.Fatalf("the case page opened %q after labelling %q", caseID, first)
	}
	want := map[string]string{first: labels.Fraud, caseID: labels.Legitimate}
	deadline = time.Now().Add(30 * time.Second)
	for {
		got := map[string]labels.Label{}
		for _, l := range e.kcatConsume(labelsTopic, "%k\t%s\n") {
			k, v, _ := strings.Cut(l, "\t")
			lb, err := labels.Parse([]byte(v))
			if err != nil || lb.TransactionID != k {
				t.Fatalf("labels topic record %q: %v", l, err)
			}
			got[k] = lb
		}
		ok := true
		for id, lab := range want {
			g, found := got[id]
			if !found {
				ok = false
				continue
			}
			if g.Label != lab || g.Analyst != "ana" || g.Source != "case" || g.ModelVersion == "" {
				t.Fatalf("label of %s: %+v, want %s by ana", id, g, lab)
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("labels topic has %v, want %v", got, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The viewer may not label.
	req, _ := http.NewRequest("POST", base+"/api/cases/"+url.PathEscape(first)+"/label", strings.NewReader(`{"label":"legitimate"}`))
	res, err := hc.Post(base+"/api/login", "application/json", strings.NewReader(`{"user":"val","password":"val-secret-pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		CSRFToken string `json:"csrf_token"`
	}
	json.NewDecoder(res.Body).Decode(&login)
	res.Body.Close()
	req.Header.Set("X-CSRF-Token", login.CSRFToken)
	if res, err := hc.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer label: %v %v", res.StatusCode, err)
	}
}
