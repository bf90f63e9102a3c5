package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// config is one credential "app" (file vault, scope api:read) and one
// connection "api" for the upstream host, trusted through profile "upstream".
func config(tokenURL, host, extra string) string {
	return fmt.Sprintf(`
[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.upstream]
ca = "{{CA}}"

[credentials.app]
vault = "local"
id = "app"
token_url = %q
scopes = ["api:read"]

[connections.api]
hosts = [%q]
credential = "app"
profile = "upstream"
%s
`, tokenURL, host, extra)
}

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}

// introspecting makes the upstream accept only tokens the IdP says are active.
func introspecting(idp *IdP) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		active, client, scope := idp.Introspect(bearer(r))
		if !active {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Token-Client", client)
		w.Header().Set("X-Token-Scope", scope)
		echo(w, r)
	}
}

func TestHappyPathWithLiveToken(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	a := startAuthgress(t, config(idp.TokenURL(), up.Addr, ""))

	req := mustRequest(t, "GET", "http://"+up.Addr+"/v1/items?filter=private-query-value", nil)
	req.Header.Set("Authorization", "Basic YXBwOmFwcC1zdXBwbGllZA==")
	resp, body := a.Do(req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if body != "GET /v1/items?filter=private-query-value 0" || resp.Header.Get("X-Seen-TLS") != "true" {
		t.Fatalf("upstream saw %q over TLS=%s", body, resp.Header.Get("X-Seen-TLS"))
	}
	if resp.Header.Get("X-Token-Client") != "proxy-client" || !strings.Contains(resp.Header.Get("X-Token-Scope"), "api:read") {
		t.Fatalf("introspection: client %q scope %q", resp.Header.Get("X-Token-Client"), resp.Header.Get("X-Token-Scope"))
	}
	if auth := resp.Header.Get("X-Seen-Authorization"); !strings.HasPrefix(auth, "Bearer ") || strings.Contains(auth, "YXBw") {
		t.Fatalf("client Authorization not replaced: %q", auth)
	}

	access := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" })
	if access["connection"] != "api" || access["status"] != float64(200) || access["path"] != "/v1/items" {
		t.Fatalf("access log line: %v", access)
	}
	if strings.Contains(a.out.String(), "private-query-value") {
		t.Fatal("the log holds a query value")
	}
}

func TestBodyCredentialStyle(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	cfg := strings.Replace(config(idp.TokenURL(), up.Addr, ""), `id = "app"`, "id = \"app_post\"\nsend = \"body\"", 1)
	a := startAuthgress(t, cfg)
	if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 || resp.Header.Get("X-Token-Client") != "proxy-client-post" {
		t.Fatalf("status %d client %q: %s", resp.StatusCode, resp.Header.Get("X-Token-Client"), body)
	}
}

// burst sends n GETs of url at once (released together, so that they
// miss the token cache together), request i with client(i), and counts
// those that failed or did not answer 200.
func burst(n int, client func(i int) *http.Client, url string) (failed int64) {
	var wg sync.WaitGroup
	var bad atomic.Int64
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client(i).Get(url)
			if err != nil {
				bad.Add(1)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return bad.Load()
}

func TestOneTokenFetchForAThousandConcurrentRequests(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	a := startAuthgress(t, config(count.TokenURL(), up.Addr, ""))
	client := a.Client()
	failed := burst(1000, func(int) *http.Client { return client }, "http://"+up.Addr+"/")
	if failed != 0 || count.n.Load() != 1 {
		t.Fatalf("failed requests %d, token requests %d (want 0 and 1)", failed, count.n.Load())
	}
	t.Logf("1000 concurrent first requests: %d token request", count.n.Load())
}

// jwtExp reads the exp claim of a JWT (the upstream's own expiry check).
func jwtExp(tok string) (int64, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	return c.Exp, json.Unmarshal(b, &c) == nil && c.Exp > 0
}

func TestRefreshAcrossShortTokenLifetime(t *testing.T) {
	idp := startIdP(t, 3, "jwt")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	var expired atomic.Int64
	tokens := sync.Map{}
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		exp, ok := jwtExp(tok)
		if !ok || time.Now().Unix() >= exp {
			expired.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		tokens.Store(tok, true)
		echo(w, r)
	})
	a := startAuthgress(t, config(count.TokenURL(), up.Addr, ""))
	client := a.Client()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(10 * time.Second)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := client.Get("http://" + up.Addr + "/")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	distinct := 0
	tokens.Range(func(_, _ any) bool { distinct++; return true })
	t.Logf("10s with 3s tokens: %d ok, %d failed, %d expired tokens at the upstream, %d token requests, %d distinct tokens",
		ok.Load(), failed.Load(), expired.Load(), count.n.Load(), distinct)
	if failed.Load() != 0 || expired.Load() != 0 {
		t.Fatalf("%d failed requests, %d expired tokens reached the upstream", failed.Load(), expired.Load())
	}
	if n := count.n.Load(); n < 3 || n > 9 || distinct < 3 {
		t.Fatalf("token requests %d, distinct tokens %d: refresh is not lifetime-driven", n, distinct)
	}
}

func TestReplayOnceAfterUpstream401(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	a := startAuthgress(t, config(count.TokenURL(), up.Addr, ""))
	if resp, body := a.Get("http://" + up.Addr + "/first"); resp.StatusCode != 200 {
		t.Fatalf("first: %d %s", resp.StatusCode, body)
	}
	first := bearer(&http.Request{Header: http.Header{"Authorization": {up.Auths()[0]}}})
	idp.Revoke(first) // the IdP now says the cached token is inactive

	resp, body := a.Do(mustRequest(t, "POST", "http://"+up.Addr+"/submit", strings.NewReader("payload-17-bytes!")))
	if resp.StatusCode != 200 || body != "POST /submit 17" {
		t.Fatalf("after revocation: %d %q", resp.StatusCode, body)
	}
	auths := up.Auths()
	if len(auths) != 3 || auths[1] != auths[0] || auths[2] == auths[0] || count.n.Load() != 2 {
		t.Fatalf("upstream saw %d requests (want first, rejected, replayed); token requests %d", len(auths), count.n.Load())
	}
}

// TestUpstream401StormIsThrottled: an upstream that answers 401 to every
// request used to force a token fetch per request. Now a forced refresh
// happens at most once per min_refresh_interval (default 10s) and meanwhile
// the 401 goes to the client.
func TestUpstream401StormIsThrottled(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	reject := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}
	for _, tc := range []struct {
		extra    string
		interval time.Duration
		requests int
	}{{"", 10 * time.Second, 30}, {"min_refresh_interval = \"1s\"\n", time.Second, 5}} {
		count := countTokenRequests(t, idp)
		up := startUpstream(t)
		up.Handle(reject)
		cfg := strings.Replace(config(count.TokenURL(), up.Addr, ""), "scopes = [\"api:read\"]\n", "scopes = [\"api:read\"]\n"+tc.extra, 1)
		a := startAuthgress(t, cfg)
		start := time.Now()
		for i := 0; i < tc.requests; i++ {
			if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 401 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
			}
		}
		// The first token, and one forced refresh after the first 401 (one
		// more per interval, should the requests take longer than that).
		want := 2 + int64(time.Since(start)/tc.interval)
		n := count.n.Load()
		if n > want {
			t.Fatalf("min_refresh_interval %v: %d requests answered 401 caused %d token requests, want at most %d", tc.interval, tc.requests, n, want)
		}
		// Only a request that forced a refresh is replayed; the others' 401
		// went to the client as it was.
		if calls := up.count.Load(); calls != int64(tc.requests)+n-1 {
			t.Fatalf("upstream saw %d requests for %d requests and %d forced refreshes", calls, tc.requests, n-1)
		}
		if tc.interval == time.Second {
			before := count.n.Load()
			time.Sleep(tc.interval + 100*time.Millisecond)
			a.Get("http://" + up.Addr + "/")
			if n := count.n.Load(); n != before+1 {
				t.Fatalf("after min_refresh_interval: %d token requests, want %d", n, before+1)
			}
		}
	}
}

func TestTokenEndpointOutage(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	cfg := config(idp.TokenURL(), up.Addr, "") + fmt.Sprintf(`
[credentials.writer]
vault = "local"
id = "app"
token_url = %q
scopes = ["api:write"]

[connections.writes]
hosts = ["localhost:%s"]
credential = "writer"
profile = "upstream"
`, idp.TokenURL(), port)
	a := startAuthgress(t, cfg)
	if resp, _ := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
		t.Fatalf("before outage: %d", resp.StatusCode)
	}
	idp.Stop()
	for i := 0; i < 3; i++ {
		if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
			t.Fatalf("cached token not served during the outage: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := a.Get("http://localhost:" + port + "/")
	e := decodeError(t, resp, body)
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 502 || e.Error != "token_unavailable" || e.Connection != "writes" || err != nil || retry < 1 {
		t.Fatalf("never-fetched credential during outage: %d %+v Retry-After %q", resp.StatusCode, e, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(e.Message, "connection refused") {
		t.Fatalf("message does not say why: %q", e.Message)
	}
	idp.Start()
	time.Sleep(time.Duration(retry)*time.Second + 200*time.Millisecond)
	if resp, body := a.Get("http://localhost:" + port + "/"); resp.StatusCode != 200 {
		t.Fatalf("no recovery after the endpoint came back: %d %s", resp.StatusCode, body)
	}
}

func TestTokenRejectedIsReportedWithoutTheSecret(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	a := startAuthgress(t, strings.Replace(config(idp.TokenURL(), up.Addr, ""), `id = "app"`, `id = "wrong"`, 1))
	resp, body := a.Get("http://" + up.Addr + "/")
	e := decodeError(t, resp, body)
	if resp.StatusCode != 502 || e.Error != "token_rejected" || !strings.Contains(e.Message, "invalid_client") {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
	if up.count.Load() != 0 {
		t.Fatal("the request reached the upstream without a token")
	}
}
