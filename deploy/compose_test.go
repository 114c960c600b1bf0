// Package deploy holds the production-like stack (docker-compose.yml at the
// repository root, Prometheus and Grafana configuration here). Docker does
// not run on the CI machines, so these tests check the files against the
// code instead: every service command parses with the real binaries' flags,
// Prometheus scrapes the ports the services listen on, and every metric the
// dashboard plots or the alerting rules use is one the code exports
// (alerts_test.go checks and unit-tests the rules with promtool).
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type compose struct {
	Services map[string]struct {
		Image   string   `yaml:"image"`
		Build   string   `yaml:"build"`
		Command []string `yaml:"command"`
	} `yaml:"services"`
}

func load(t *testing.T) compose {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestComposeCommandsParse builds the binaries and runs each service's
// command with -h appended: a flag the binary does not define makes it exit
// with an error before it reaches -h.
func TestComposeCommandsParse(t *testing.T) {
	c := load(t)
	dir := t.TempDir()
	built := map[string]string{}
	ours := 0
	for name, s := range c.Services {
		if s.Build == "" {
			continue
		}
		if len(s.Command) == 0 {
			t.Fatalf("%s: no command", name)
		}
		bin := s.Command[0]
		if _, ok := built[bin]; !ok {
			out := filepath.Join(dir, bin)
			if b, err := exec.Command("go", "build", "-o", out, "../cmd/"+bin).CombinedOutput(); err != nil {
				t.Fatalf("%s: build %s: %v\n%s", name, bin, err, b)
			}
			built[bin] = out
		}
		// -h after the real arguments: flag parsing stops at the first
		// unknown flag with an error, or reaches -h and exits cleanly.
		args := append(append([]string{}, s.Command[1:]...), "-h")
		out, err := exec.Command(built[bin], args...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "flag provided but not defined") {
			t.Errorf("%s: %v does not parse: %v\n%s", name, s.Command, err, out)
		}
		ours++
	}
	if ours < 5 {
		t.Fatalf("only %d services run our binaries", ours)
	}
}

func TestPrometheusScrapesTheServices(t *testing.T) {
	c := load(t)
	prom, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Services {
		if s.Build == "" || len(s.Command) < 2 || s.Command[1] != "run" {
			continue
		}
		port := ""
		for i, a := range s.Command {
			if a == "--metrics-addr" && i+1 < len(s.Command) {
				port = strings.TrimPrefix(s.Command[i+1], ":")
			}
		}
		if port == "" {
			t.Errorf("%s: no --metrics-addr", name)
			continue
		}
		if !strings.Contains(string(prom), `"`+name+":"+port+`"`) {
			t.Errorf("prometheus.yml does not scrape %s:%s", name, port)
		}
	}
}

func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("grafana/dashboards/fraudstream.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	code := exportingCode(t)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				if !exports(code, m) {
					t.Errorf("panel %q plots %s, which no code exports", p.Title, m)
				}
				n++
			}
		}
	}
	if n < 8 {
		t.Fatalf("only %d metric references in the dashboard", n)
	}
}

// metricName matches the project's metric names. Recording rules are named
// fraudstream:…, which it does not match.
var metricName = regexp.MustCompile(`fraudstream_[a-z_]+`)

// exportingCode returns the non-test Go source of the packages that define
// the scorer's and the trainer's metrics and their label values.
func exportingCode(t *testing.T) string {
	t.Helper()
	var code strings.Builder
	for _, dir := range []string{"../pkg/pipeline", "../pkg/trainer", "../cmd/scorer", "../cmd/trainer"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			code.Write(src)
		}
	}
	return code.String()
}

// exports reports whether code names metric m (a histogram's series by
// their base name) as a string literal.
func exports(code, m string) bool {
	base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
	return strings.Contains(code, `"`+base+`"`)
}

// TestAlertRuleMetricsExist: every metric the alerting rules use, in their
// expressions or in the queries and hints of their annotations, is one the
// code exports; every outcome they select is one the code counts; every job
// they select is one prometheus.yml scrapes. A rule on a name nothing
// exports never fires, and its unit tests (which invent their series) do
// not notice.
func TestAlertRuleMetricsExist(t *testing.T) {
	code := exportingCode(t)
	prom, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ScrapeConfigs []struct {
			Job string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(prom, &p); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	jobs := map[string]bool{}
	for _, sc := range p.ScrapeConfigs {
		jobs[sc.Job] = true
	}
	// label="value" or label=~"a|b" (annotations quote their queries, so
	// their matchers read label=\"value\" until unescaped).
	matcher := regexp.MustCompile(`(\w+)\s*(?:=~|=)\s*"([^"]*)"`)
	n := 0
	for _, r := range loadRules(t) {
		name := r.Alert + r.Record
		texts := []string{r.Expr}
		for _, a := range r.Annotations {
			texts = append(texts, strings.ReplaceAll(a, `\"`, `"`))
		}
		for _, text := range texts {
			for _, m := range metricName.FindAllString(text, -1) {
				if !exports(code, m) {
					t.Errorf("rule %s uses %s, which no code exports", name, m)
				}
				n++
			}
			for _, mm := range matcher.FindAllStringSubmatch(text, -1) {
				for _, v := range strings.Split(mm[2], "|") {
					switch mm[1] {
					case "job":
						if !jobs[v] {
							t.Errorf("rule %s selects job %q, which prometheus.yml does not scrape", name, v)
						}
					case "outcome":
						if !strings.Contains(code, `"`+v+`"`) {
							t.Errorf("rule %s selects outcome %q, which no code counts", name, v)
						}
					}
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d metric references in the rules", n)
	}
}
