// Package deploy holds the production-like stack (docker-compose.yml at the
// repository root, Prometheus and Grafana configuration here). Docker does
// not run on the CI machines, so these tests check the files against the
// code instead: every service command parses with the real binaries' flags,
// Prometheus scrapes the ports the services listen on, and every metric the
// dashboard plots is one the code exports.
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
	var code strings.Builder
	for _, f := range []string{"../pkg/pipeline/pipeline.go", "../cmd/scorer/run.go", "../cmd/trainer/run.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		code.Write(src)
	}
	metric := regexp.MustCompile(`fraudstream_[a-z_]+`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
				if !strings.Contains(code.String(), `"`+base+`"`) {
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
