package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestStatusCountsRequestsAcrossReload: /status counts each connection's
// requests and failures (authgress's error codes and the upstream's 5xx),
// keeps the last failure, and a reload keeps the counts.
func TestStatusCountsRequestsAcrossReload(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig, up, i)
	for range 3 {
		if resp, _ := h.get("http://" + up.hostPort() + "/ok"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	up.handle(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	h.get("http://" + up.hostPort() + "/down")
	up.handle(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
	h.get("http://" + up.hostPort() + "/missing") // the upstream's own 4xx is not a failure
	c := h.eng.Status().Connections[0]
	if c.Requests != 5 || c.Errors != 1 || c.LastError == nil || c.LastError.Code != "503" {
		t.Fatalf("connection status: requests %d, errors %d, last %+v", c.Requests, c.Errors, c.LastError)
	}
	if c.Token == nil || c.Token.State != "valid" || c.Token.ExpiresIn < 250 || c.Grant != "client_credentials" || c.Vault != "local" ||
		len(c.Ways) != 1 || c.Ways[0] != "forward" {
		t.Fatalf("connection status: %+v token %+v", c, c.Token)
	}

	// The token endpoint now refuses the client: authgress answers the
	// request itself, and that is the last error after a reload. (The
	// proxy listener stays: its address is still 127.0.0.1:0.)
	cfg := h.eng.Config()
	text, _ := os.ReadFile(cfg.Path)
	if err := os.WriteFile(cfg.Path, []byte("[server]\nlisten = \"127.0.0.1:0\"\n"+strings.Replace(string(text), `id = "app"`, `id = "wrong"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.get("http://" + up.hostPort() + "/x"); resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	c = h.eng.Status().Connections[0]
	if c.Requests != 6 || c.Errors != 2 || c.LastError == nil || c.LastError.Code != "token_rejected" || !strings.Contains(c.LastError.Message, "invalid_client") {
		t.Fatalf("after reload: requests %d, errors %d, last %+v", c.Requests, c.Errors, c.LastError)
	}
	b, _ := json.Marshal(h.eng.Status())
	if strings.Contains(string(b), "canary-client-secret") || strings.Contains(string(b), "tok-1") {
		t.Fatalf("/status holds a secret or a token: %s", b)
	}
}

// TestConnectionTestStages: each stage in order; the first failing one
// ends the test; the test request is not counted.
func TestConnectionTestStages(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig+`
[connections.bare]
hosts = ["{{UP}}"]
paths = ["/bare"]
profile = "up"

[connections.missing]
hosts = ["missing.test"]
credential = "missing"

[credentials.missing]
vault = "local"
id = "absent"
token_url = "{{IDP}}"

[connections.refused]
hosts = ["refused.test"]
credential = "refused"

[credentials.refused]
vault = "local"
id = "wrong"
token_url = "{{IDP}}"
`, up, i)
	ctx := context.Background()
	stages := func(r *TestReport) string {
		var s []string
		for _, st := range r.Stages {
			s = append(s, st.Stage+"="+map[bool]string{true: "ok", false: "failed"}[st.OK])
		}
		return strings.Join(s, " ")
	}
	r, err := h.eng.TestConnection(ctx, "api", TestOptions{})
	if err != nil || !r.OK || r.Status != 200 || stages(r) != "vault=ok token=ok upstream=ok" || r.Result != "ok" {
		t.Fatalf("api: %v %+v", err, r)
	}
	if !strings.Contains(r.Stages[1].Detail, "credential app, Bearer") || strings.Contains(r.Stages[1].Detail, "tok-") {
		t.Fatalf("token detail: %q", r.Stages[1].Detail)
	}
	r, _ = h.eng.TestConnection(ctx, "bare", TestOptions{})
	if !r.OK || !r.Stages[0].Skipped || !r.Stages[1].Skipped || r.URL != "http://"+up.hostPort()+"/bare" {
		t.Fatalf("bare: %+v", r)
	}
	r, _ = h.eng.TestConnection(ctx, "missing", TestOptions{})
	if r.OK || stages(r) != "vault=failed" || !strings.HasPrefix(r.Stages[0].Detail, "credential_not_found: ") {
		t.Fatalf("missing: %+v", r)
	}
	r, _ = h.eng.TestConnection(ctx, "refused", TestOptions{})
	if r.OK || stages(r) != "vault=ok token=failed" || !strings.Contains(r.Stages[1].Detail, "rejected: ") || !strings.Contains(r.Stages[1].Detail, "invalid_client") {
		t.Fatalf("refused: %+v", r)
	}
	up.handle(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	r, _ = h.eng.TestConnection(ctx, "api", TestOptions{Path: "/admin"})
	if r.OK || r.Status != 403 || stages(r) != "vault=ok token=ok upstream=failed" || !strings.Contains(r.Result, "refused the request with the injected token") {
		t.Fatalf("403: %+v", r)
	}
	if _, err := h.eng.TestConnection(ctx, "nope", TestOptions{}); err == nil {
		t.Fatal("unknown connection: no error")
	}
	if c := h.eng.Status().Connections; c[0].Requests != 0 {
		t.Fatalf("a test request was counted: %+v", c[0])
	}
}
