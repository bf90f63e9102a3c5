package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// echoingTokenEndpoint is a token endpoint that refuses every request and
// quotes the credentials it was sent in error and error_description (as some
// do); it counts the requests that carried canarySecret.
func echoingTokenEndpoint(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var gotCanary atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		id, enc, _ := strings.Cut(string(raw), ":")
		secret, _ := url.QueryUnescape(enc)
		if secret == canarySecret {
			gotCanary.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error":             "invalid_client",
			"error_description": fmt.Sprintf("client %s: secret %s does not match (%s)", id, secret, auth),
		})
	}))
	t.Cleanup(srv.Close)
	return srv, &gotCanary
}

// TestEchoedSecretIsRedactedEverywhere: a token endpoint that echoes the
// client secret (and the Basic credentials) in error_description does not
// get it into the client's error body, the log, /status or `authgress token`
// output: each shows [redacted] where the endpoint quoted it. (The canary
// checks: Authgress.Do on every response body, adminGet on /status, cli on
// the command's output, and the test's cleanup on everything the process
// wrote.)
func TestEchoedSecretIsRedactedEverywhere(t *testing.T) {
	idp, gotCanary := echoingTokenEndpoint(t)
	extraCanaries.Store("the Basic credentials", base64.StdEncoding.EncodeToString([]byte("proxy-client:"+canarySecret)))
	up := startUpstream(t)
	cfg := config(idp.URL+"/token", up.Addr, "")
	const quoted = "client proxy-client: secret [redacted] does not match (Basic [redacted])"

	a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n"+cfg)
	resp, body := a.Get("http://" + up.Addr + "/")
	if e := decodeError(t, resp, body); resp.StatusCode != 502 || e.Error != "token_rejected" || !strings.Contains(e.Message, quoted) {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
	if gotCanary.Load() == 0 {
		t.Fatal("the token endpoint never got the secret: nothing was echoed")
	}
	if status := adminGet(t, a.adminAddr(), "/status"); !strings.Contains(status, quoted) {
		t.Fatalf("/status does not show the endpoint's (redacted) words:\n%s", status)
	}
	a.WaitLog(func(l map[string]any) bool {
		msg, _ := l["error"].(string)
		return l["msg"] == "token fetch failed" && strings.Contains(msg, quoted)
	})

	code, out := cli(t, cfg, "token", "app")
	if code != 1 || !strings.Contains(out, quoted) {
		t.Fatalf("authgress token: exit %d:\n%s", code, out)
	}
	assertNoCanary(t, "authgress token output", out)
}
