package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	promMetricName = regexp.MustCompile(`\bauthgress_[a-zA-Z0-9_]+`)
	promByLabels   = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	promMatchers   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	promLabelVals  = regexp.MustCompile(`label_values\(\s*(authgress_[a-zA-Z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
	promSample     = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	promSampleKey  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

// grafanaQueries returns every PromQL text of a Grafana dashboard: panel
// targets' expr and the template variables' queries.
func grafanaQueries(v any, key string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			grafanaQueries(c, k, out)
		}
	case []any:
		for _, c := range v {
			grafanaQueries(c, key, out)
		}
	case string:
		if key == "expr" || key == "definition" || key == "query" {
			*out = append(*out, v)
		}
	}
}

// metricLabels reads the Prometheus text format: metric name → label names.
func metricLabels(text string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		m := promSample.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		if out[m[1]] == nil {
			out[m[1]] = map[string]bool{}
		}
		for _, k := range promSampleKey.FindAllStringSubmatch(m[2], -1) {
			out[m[1]][k[1]] = true
		}
	}
	return out
}

// TestGrafanaDashboardQueriesExistingMetrics checks deploy/grafana/authgress.json:
// valid JSON with unique panel ids, and every metric it queries — with every
// label it groups or filters by — is in /metrics of a running authgress that
// has carried traffic of each kind (a token, a retry, a denial, a node, a
// client certificate).
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/authgress.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/authgress.json is not valid JSON: %v", err)
	}
	if dash["uid"] == "" || dash["title"] == "" {
		t.Error("the dashboard has no uid or title")
	}
	panels, _ := dash["panels"].([]any)
	ids := map[float64]bool{}
	queried := 0
	for _, p := range panels {
		pm := p.(map[string]any)
		id, _ := pm["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v is used twice", id)
		}
		ids[id] = true
		if pm["type"] == "row" {
			continue
		}
		targets, _ := pm["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no query", pm["title"])
		}
		queried++
	}
	var queries []string
	grafanaQueries(dash, "", &queries)
	if queried < 10 || len(queries) < 10 {
		t.Fatalf("%d panels, %d queries: the dashboard looks empty", queried, len(queries))
	}

	// Traffic of every kind the dashboard shows.
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/flaky") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		echo(w, r)
	})
	cert, key := issueClient(t, t.TempDir(), "authgress-gateway", nil, nil)
	a := startAuthgress(t, fmt.Sprintf(`[server]
admin = "127.0.0.1:0"

[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.upstream]
ca = "{{CA}}"

[profiles.gateway]
ca = "{{CA}}"
cert = %[3]q
key = %[4]q

[credentials.app]
vault = "local"
id = "app"
token_url = %[1]q
scopes = ["api:read"]

[clusters.dmz]
profile = "upstream"
health_interval = "500ms"
health_timeout = "400ms"
nodes = [{ name = "a1", url = "https://%[2]s" }]

[connections.api]
hosts = [%[2]q]
paths = ["/api"]
credential = "app"
profile = "gateway"

[connections.flaky]
hosts = [%[2]q]
paths = ["/flaky"]
profile = "upstream"
retry = { count = 1, interval = "10ms", on_status = [503] }

[connections.partner]
hosts = ["partner.example"]
via = "dmz"
`, idp.TokenURL(), up.Addr, cert, key))
	if resp, _ := a.Get("http://" + up.Addr + "/api/x"); resp.StatusCode != 200 {
		t.Fatalf("api: %d", resp.StatusCode)
	}
	if resp, _ := a.Get("http://" + up.Addr + "/flaky/x"); resp.StatusCode != 503 {
		t.Fatalf("flaky: %d", resp.StatusCode)
	}
	if resp, _ := a.Get("http://unmatched.example/"); resp.StatusCode != 403 {
		t.Fatalf("unmatched: %d", resp.StatusCode)
	}
	var metrics map[string]map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; {
		metrics = metricLabels(adminGet(t, a.adminAddr(), "/metrics"))
		if metrics["authgress_node_up"] != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, q := range queries {
		names := promMetricName.FindAllString(q, -1)
		var labels []string
		for _, by := range promByLabels.FindAllStringSubmatch(q, -1) {
			for _, l := range strings.Split(by[1], ",") {
				labels = append(labels, strings.TrimSpace(l))
			}
		}
		for _, m := range promMatchers.FindAllStringSubmatch(q, -1) {
			labels = append(labels, m[1])
		}
		for _, lv := range promLabelVals.FindAllStringSubmatch(q, -1) {
			labels = append(labels, lv[2])
		}
		for _, name := range names {
			have, ok := metrics[name]
			if !ok {
				t.Errorf("the dashboard queries %s, which /metrics does not have (query: %s)", name, q)
				continue
			}
			for _, l := range labels {
				if l == "le" && !strings.HasSuffix(name, "_bucket") || l == "" {
					continue
				}
				if !have[l] {
					t.Errorf("the dashboard uses label %q of %s, which has only %v (query: %s)", l, name, slices.Sorted(maps.Keys(have)), q)
				}
			}
		}
	}
}
