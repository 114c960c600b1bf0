package deploy

import (
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var rs []rule
	for _, g := range f.Groups {
		rs = append(rs, g.Rules...)
	}
	if len(rs) == 0 {
		t.Fatal("alerts.yml holds no rules")
	}
	return rs
}

// promtool runs Prometheus's promtool with args in this directory and fails
// the test with its output when it reports an error. CI installs it
// (Debian's prometheus package, .ci/run); elsewhere the test is skipped.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus); the rules are not checked")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAlertRulesCheck: the rules parse (promtool check rules), and
// prometheus.yml, with the rule files it names, is a valid configuration.
func TestAlertRulesCheck(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yml")
	promtool(t, "check", "config", "prometheus.yml")
}

// TestAlertRulesUnitTests runs the rules' unit tests (alerts_test.yml).
func TestAlertRulesUnitTests(t *testing.T) {
	promtool(t, "test", "rules", "alerts_test.yml")
}

// TestAlertRulesAreComplete holds every alert to what on-call needs (a
// severity, a for: duration, a summary and a description) and to being
// tested both ways: at least one unit test where it fires and one where it
// stays silent. A test naming an alert that does not exist would pass
// silently, so that is an error too.
func TestAlertRulesAreComplete(t *testing.T) {
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		alerts[r.Alert] = true
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
		}
		if r.For == "" {
			t.Errorf("%s: no for: duration (it would fire on one evaluation)", r.Alert)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
	}
	if len(alerts) < 6 {
		t.Fatalf("only %d alerts in alerts.yml", len(alerts))
	}

	b, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert string           `yaml:"alertname"`
				Exp   []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	if len(tests.RuleFiles) != 1 || tests.RuleFiles[0] != "alerts.yml" {
		t.Errorf("alerts_test.yml tests %v, want [alerts.yml]", tests.RuleFiles)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, c := range tc.Cases {
			if !alerts[c.Alert] {
				t.Errorf("test %q checks alert %q, which alerts.yml does not define", tc.Name, c.Alert)
			}
			if len(c.Exp) > 0 {
				fires[c.Alert] = true
			} else {
				silent[c.Alert] = true
			}
		}
	}
	for a := range alerts {
		if !fires[a] {
			t.Errorf("%s: no unit test in which it fires", a)
		}
		if !silent[a] {
			t.Errorf("%s: no unit test in which it stays silent", a)
		}
	}
}

// TestPrometheusLoadsTheRules: every rule file prometheus.yml names is in
// deploy/, and the compose stack mounts it where Prometheus looks for it:
// relative to the configuration file's directory in the container.
func TestPrometheusLoadsTheRules(t *testing.T) {
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(prom.RuleFiles) == 0 {
		t.Fatal("prometheus.yml loads no rule_files")
	}
	b, err = os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	mounts := map[string]string{} // host path -> container path
	for _, v := range c.Services["prometheus"].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounts[path.Clean(parts[0])] = parts[1]
		}
	}
	conf, ok := mounts["deploy/prometheus.yml"]
	if !ok {
		t.Fatalf("the prometheus service does not mount ./deploy/prometheus.yml (volumes: %v)", c.Services["prometheus"].Volumes)
	}
	for _, f := range prom.RuleFiles {
		if path.IsAbs(f) || strings.ContainsAny(f, "*?[") {
			t.Errorf("rule file %q: want a plain path relative to prometheus.yml, so that it resolves both here and in the container", f)
			continue
		}
		if _, err := os.Stat(f); err != nil {
			t.Errorf("prometheus.yml loads %s: %v", f, err)
		}
		want := path.Join(path.Dir(conf), f)
		if got := mounts[path.Join("deploy", f)]; got != want {
			t.Errorf("the prometheus service mounts ./deploy/%s at %q, want %q (next to %s)", f, got, want, conf)
		}
	}
}
