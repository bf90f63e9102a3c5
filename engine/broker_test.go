package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// userAS is a token endpoint for user tokens: any code is alice's, refresh
// tokens rotate.
func userAS(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		i := n.Add(1)
		if r.PostForm.Get("client_id") != "web" || r.PostForm.Get("code_verifier") == "" && r.PostForm.Get("grant_type") == "authorization_code" {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":"invalid_request"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"user-tok-%d","token_type":"Bearer","expires_in":300,"refresh_token":"rt-%d"}`, i, i)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

const brokerTestConfig = `
[server]
listen = "127.0.0.1:0"

[server.auth]
users = [ { name = "alice", password = "alice-pw" } ]

[credentials.users]
grant = "authorization_code"
client_auth = "none"
client_id = "web"
authorize_url = "https://idp.example/authorize"
token_url = "{{IDP}}"
scopes = ["offline_access"]

[broker]
listen = "127.0.0.1:0"
clients = [ { name = "flows", key = "broker-key", credentials = ["users"] } ]

[profiles.up]
ca = "{{CA}}"

[connections.me]
hosts = ["{{UP}}"]
credential = "users"
profile = "up"
`

// TestBrokerLoginAcrossReloads: a login started before a reload completes
// after it, and the user's token survives the next reload.
func TestBrokerLoginAcrossReloads(t *testing.T) {
	up := newUpstream(t)
	as, exchanges := userAS(t)
	text := strings.Replace(brokerTestConfig, "{{IDP}}", as.URL, 1)
	h := newHarness(t, text, up, nil)
	base := "http://" + h.eng.BrokerAddr()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	req, _ := http.NewRequest("GET", base+"/v1/credentials/users/login?user=alice", nil)
	req.Header.Set("Authorization", "Bearer broker-key")
	resp, err := noRedirect.Do(req)
	if err != nil || resp.StatusCode != 302 {
		t.Fatalf("login: %v %v", err, resp)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	state := loc.Query().Get("state")
	if state == "" || loc.Query().Get("client_id") != "web" {
		t.Fatalf("authorization URL %s", loc)
	}
	if err := h.eng.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.eng.Status().Broker.PendingLogins; got != 1 {
		t.Fatalf("%d pending logins after the reload, want 1", got)
	}
	resp, err = noRedirect.Get(base + "/oauth-callback?code=c1&state=" + url.QueryEscape(state))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("callback after a reload: %v %v", err, resp)
	}
	asAlice := func() string {
		req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/me", nil)
		req.Header.Set("Proxy-Authorization", "Basic "+b64std("alice:alice-pw"))
		resp, body := h.do(req)
		if resp.StatusCode != 200 {
			t.Fatalf("alice: %d %s", resp.StatusCode, body)
		}
		return resp.Header.Get("X-Seen-Authorization")
	}
	if got := asAlice(); got != "Bearer user-tok-1" {
		t.Fatalf("alice's request carried %q", got)
	}
	if err := h.eng.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := asAlice(); got != "Bearer user-tok-1" || exchanges.Load() != 1 {
		t.Fatalf("after a reload alice's request carried %q (%d token requests)", got, exchanges.Load())
	}
	st := h.eng.Status()
	for _, c := range st.Connections {
		if c.Name == "me" && (c.Grant != "authorization_code" || c.Token == nil || c.Token.State != "per_user" || c.Token.Users != 1) {
			t.Fatalf("status of connection me: %+v %+v", c, c.Token)
		}
	}
	if strings.Contains(h.logText(), "user-tok-1") || strings.Contains(h.logText(), "rt-1") || strings.Contains(h.logText(), "broker-key") {
		t.Fatal("a token, refresh token or broker key in the log")
	}
}
