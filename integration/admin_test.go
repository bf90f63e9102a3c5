package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func adminGet(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	assertNoCanary(t, path, string(b))
	return string(b)
}

// metricValue finds one sample of the Prometheus text format.
func metricValue(t *testing.T, text, name string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if ok {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	t.Fatalf("no sample %s%v in /metrics", name, labels)
	return 0
}

func TestMetricsAndStatus(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n"+config(idp.TokenURL(), up.Addr, ""))
	for i := 0; i < 3; i++ {
		if resp, _ := a.Get("http://" + up.Addr + "/x?secret-query=1"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	a.Get("http://unmatched.example/")
	admin := a.adminAddr()
	m := adminGet(t, admin, "/metrics")

	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"authgress_requests_total", []string{`connection="api"`, `code="200"`}, 3},
		{"authgress_requests_total", []string{`connection=""`, `code="egress_denied"`}, 1},
		{"authgress_request_duration_seconds_count", []string{`connection="api"`}, 3},
		{"authgress_token_fetches_total", []string{`credential="app"`, `result="ok"`}, 1},
		{"authgress_token_fetch_duration_seconds_count", []string{`credential="app"`}, 1},
		{"authgress_vault_requests_total", []string{`vault="local"`, `result="ok"`}, 1},
		{"authgress_denied_total", []string{`reason="unmatched"`}, 1},
	}
	for _, c := range checks {
		if got := metricValue(t, m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if left := metricValue(t, m, "authgress_token_expiry_seconds", `credential="app"`); left < 250 || left > 300 {
		t.Errorf("token expiry = %v s, want about 300", left)
	}
	// Labels only from configured names: no host, path or query in any label.
	labels := regexp.MustCompile(`\{[^}]*\}`).FindAllString(m, -1)
	for _, l := range labels {
		if strings.Contains(l, "127.0.0.1") || strings.Contains(l, "unmatched.example") || strings.Contains(l, "secret-query") {
			t.Fatalf("raw request data in a metric label: %s", l)
		}
	}

	var st struct {
		Connections []struct {
			Name, Credential string
			Hosts            []string
		}
		Credentials []struct {
			Name       string  `json:"name"`
			TokenState string  `json:"token_state"`
			ExpiresIn  float64 `json:"expires_in_seconds"`
			LastResult string  `json:"last_result"`
			Fetches    int     `json:"fetches"`
		}
		Vaults []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			LastResult string `json:"last_result"`
		}
	}
	body := adminGet(t, admin, "/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if len(st.Connections) != 1 || st.Connections[0].Name != "api" || st.Connections[0].Credential != "app" {
		t.Fatalf("connections: %+v", st.Connections)
	}
	if len(st.Credentials) != 1 || st.Credentials[0].TokenState != "valid" || st.Credentials[0].ExpiresIn < 250 || st.Credentials[0].LastResult != "ok" || st.Credentials[0].Fetches != 1 {
		t.Fatalf("credentials: %+v", st.Credentials)
	}
	if len(st.Vaults) != 1 || st.Vaults[0].Type != "file" || st.Vaults[0].LastResult != "ok" {
		t.Fatalf("vaults: %+v", st.Vaults)
	}
	if adminGet(t, admin, "/healthz") != "ok\n" || adminGet(t, admin, "/readyz") != "ready\n" {
		t.Fatal("health endpoints")
	}
}

func TestStatusShowsTokenEndpointFailure(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n"+strings.Replace(config(idp.TokenURL(), up.Addr, ""), `id = "app"`, `id = "wrong"`, 1))
	a.Get("http://" + up.Addr + "/")
	body := adminGet(t, a.adminAddr(), "/status")
	if !strings.Contains(body, `"last_result": "rejected"`) || !strings.Contains(body, "invalid_client") || !strings.Contains(body, `"token_state": "none"`) {
		t.Fatalf("/status:\n%s", body)
	}
	if m := adminGet(t, a.adminAddr(), "/metrics"); metricValue(t, m, "authgress_token_fetches_total", `credential="app"`, `result="rejected"`) != 1 {
		t.Fatal("rejected fetch not counted")
	}
}
