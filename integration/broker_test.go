package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Broker drives authgress's token broker as an app holding a client key.
type Broker struct {
	t    *testing.T
	Base string // http://127.0.0.1:port
	Key  string
}

func (b *Broker) do(method, path, key string, body io.Reader) (*http.Response, map[string]any) {
	b.t.Helper()
	resp, m, raw := b.doRaw(method, path, key, body)
	assertNoSecret(b.t, "broker answer", raw) // access tokens are what it hands out
	return resp, m
}

// doRaw is do without assertNoSecret: for the refresh endpoint, whose
// answers carry refresh tokens (canaries everywhere else).
func (b *Broker) doRaw(method, path, key string, body io.Reader) (*http.Response, map[string]any, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.Base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp, m, string(raw)
}

// status is the seeds' status code in a broker answer.
func status(m map[string]any) int {
	f, ok := m["status"].(float64)
	if !ok {
		return 99
	}
	return int(f)
}

// Login runs a whole user login: the app asks the broker for the login
// URL, the user's browser signs in at the IdP (or aborts), and the IdP's
// redirect is followed to the broker's callback. It returns where the
// callback sent the browser.
func (b *Broker) Login(idp *IdP, credential, user, redirect string, abort bool) *url.URL {
	b.t.Helper()
	q := url.Values{"user": {user}}
	if redirect != "" {
		q.Set("redirect", redirect)
	}
	resp, m := b.do("GET", "/v1/credentials/"+credential+"/login?"+q.Encode(), b.Key, nil)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("login: %d %v", resp.StatusCode, m)
	}
	authorize := resp.Header.Get("Location")
	au, _ := url.Parse(authorize)
	if au.Query().Get("code_challenge_method") != "S256" || au.Query().Get("state") == "" || au.Query().Get("prompt") != "consent" {
		b.t.Fatalf("authorization request without PKCE, state or prompt: %s", authorize)
	}
	callback := idp.PlayLogin(b.t, authorize, user, abort)
	if !strings.HasPrefix(callback.String(), b.Base+"/oauth-callback?") {
		b.t.Fatalf("the IdP redirected to %s, not the broker's callback", callback)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	cresp, err := client.Get(callback.String()) // the browser: no key
	if err != nil {
		b.t.Fatal(err)
	}
	raw, _ := io.ReadAll(cresp.Body)
	cresp.Body.Close()
	assertNoCanary(b.t, "callback page", string(raw))
	if redirect == "" {
		if cresp.StatusCode != http.StatusOK || !strings.Contains(string(raw), "Signed in as "+user) {
			b.t.Fatalf("callback without a redirect: %d %s", cresp.StatusCode, raw)
		}
		return nil
	}
	if cresp.StatusCode != http.StatusFound {
		b.t.Fatalf("callback: %d %s", cresp.StatusCode, raw)
	}
	next, _ := url.Parse(cresp.Header.Get("Location"))
	return next
}

// UserToken is GET /v1/credentials/{credential}/users/{user}/token.
func (b *Broker) UserToken(credential, user string) (*http.Response, map[string]any) {
	b.t.Helper()
	return b.do("GET", "/v1/credentials/"+credential+"/users/"+url.PathEscape(user)+"/token", b.Key, nil)
}

type brokerSetup struct {
	idp    *IdP
	up     *Upstream
	a      *Authgress
	broker *Broker
	count  *counter
}

// whoseToken makes the upstream accept only tokens the IdP says are
// active, and tell whose they are (X-Token-Sub, X-Token-Client).
func whoseToken(idp *IdP) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info := idp.IntrospectFull(bearer(r))
		if active, _ := info["active"].(bool); !active {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sub, _ := info["sub"].(string)
		client, _ := info["client_id"].(string)
		w.Header().Set("X-Token-Sub", sub)
		w.Header().Set("X-Token-Client", client)
		echo(w, r)
	}
}

// startBrokerSetup: a real IdP whose user tokens live userTTL seconds
// (opaque, so the upstream can introspect them), an upstream that accepts
// only active tokens and tells whose they are, and authgress with proxy
// users alice, bob and carol, a client-credentials credential "app", a
// delegated credential "users" (user-app) and the broker.
func startBrokerSetup(t *testing.T, userTTL int) *brokerSetup {
	t.Helper()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := startIdPWith(t, IdPOptions{TTL: 300, Format: "opaque", UserTTL: userTTL, RedirectURIs: []string{base + "/oauth-callback"}})
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	up.Handle(whoseToken(idp))
	key, otherKey := "broker-key-"+randomHex(12), "broker-other-"+randomHex(12)
	extraCanaries.Store("the broker key", key)
	extraCanaries.Store("the other broker key", otherKey)
	cfg := brokerConfig(config(count.TokenURL(), up.Addr, ""), idp, count, up, port)
	a := startAuthgress(t, cfg, brokerEnv(key, otherKey)...)
	return &brokerSetup{idp: idp, up: up, a: a, count: count, broker: &Broker{t: t, Base: base, Key: key}}
}

// brokerEnv is the environment brokerConfig's secrets come from.
func brokerEnv(key, otherKey string) []string {
	return []string{"ALICE_PW=alice-pw", "BOB_PW=bob-pw", "CAROL_PW=carol-pw", "BROKER_KEY=" + key, "OTHER_KEY=" + otherKey}
}

// brokerConfig adds to base (proxy_test's config(): credential "app" on
// connection "api", now under /api) proxy users alice, bob and carol, the
// delegated credential "users" on connection "me" (/me) and the broker on
// port.
func brokerConfig(base string, idp *IdP, count *counter, up *Upstream, port int) string {
	cfg := base + fmt.Sprintf(`
[server.auth]
users = [ { name = "alice", password = { env = "ALICE_PW" } },
          { name = "bob", password = { env = "BOB_PW" } },
          { name = "carol", password = { env = "CAROL_PW" } } ]

[credentials.users]
grant = "authorization_code"
vault = "local"
id = "user_app"
authorize_url = "%[1]s/auth"
token_url = %[2]q
scopes = ["openid", "offline_access", "api:read"]

[credentials.users_public]
grant = "authorization_code"
client_auth = "none"
client_id = "user-app-public"
authorize_url = "%[1]s/auth"
token_url = %[2]q
scopes = ["openid", "offline_access", "api:read"]

[broker]
listen = "127.0.0.1:%[3]d"
clients = [ { name = "flows", key = { env = "BROKER_KEY" }, credentials = ["app", "users", "users_public"] },
            { name = "reports", key = { env = "OTHER_KEY" }, credentials = ["app"] } ]
allowed_redirects = ["https://app.example.com/"]

[connections.me]
hosts = [%[4]q]
paths = ["/me"]
credential = "users"
profile = "upstream"
`, idp.URL, count.TokenURL(), port, up.Addr)
	return strings.Replace(cfg, "[connections.api]\nhosts = ", "[connections.api]\npaths = [\"/api\"]\nhosts = ", 1)
}

// asUser sends GET url through the proxy as proxy user name.
func (s *brokerSetup) asUser(name, u string) (*http.Response, string) {
	req := mustRequest(s.a.t, "GET", u, nil)
	req.Header.Set("Proxy-Authorization", "Basic "+basic(name, name+"-pw"))
	return s.a.Do(req)
}

// TestBrokerUserLogin: a whole user login through the broker against a
// real IdP; the user's token is live and the user's own; refresh ahead
// with rotation; the proxy injects each user's token; an aborted login
// stores nothing; a revoked login ends in login_required.
func TestBrokerUserLogin(t *testing.T) {
	s := startBrokerSetup(t, 8)
	b := s.broker

	// Before any login: the broker and the proxy both say login_required.
	resp, m := b.UserToken("users", "alice")
	if resp.StatusCode != 401 || m["error"] != "login_required" || !strings.Contains(fmt.Sprint(m["login_url"]), "/v1/credentials/users/login?user=alice") {
		t.Fatalf("before login: %d %v", resp.StatusCode, m)
	}
	presp, body := s.asUser("alice", "http://"+s.up.Addr+"/me")
	if presp.StatusCode != 401 || decodeError(t, presp, body).Error != "login_required" || !strings.Contains(body, `"login_url"`) {
		t.Fatalf("proxy before login: %d %s", presp.StatusCode, body)
	}
	if s.up.count.Load() != 0 {
		t.Fatal("a request without the user's token reached the upstream")
	}

	// Alice logs in; the browser comes back to the app with status=0.
	next := b.Login(s.idp, "users", "alice", "https://app.example.com/done?x=1", false)
	if next.Host != "app.example.com" || next.Query().Get("status") != "0" || next.Query().Get("x") != "1" {
		t.Fatalf("after login the browser went to %s", next)
	}
	resp, m = b.UserToken("users", "alice")
	tok, _ := m["access_token"].(string)
	if resp.StatusCode != 200 || status(m) != 0 || tok == "" || m["token_type"] != "Bearer" {
		t.Fatalf("alice's token: %d %v", resp.StatusCode, m)
	}
	if _, ok := m["refresh_token"]; ok {
		t.Fatal("the user token endpoint returned the refresh token")
	}
	seenTokens.Store(tok, true)
	info := s.idp.IntrospectFull(tok)
	if info["active"] != true || info["sub"] != "alice" || info["client_id"] != "user-app" {
		t.Fatalf("introspection of alice's token: %v", info)
	}

	// An aborted login: status -2, nothing stored for that user.
	next = b.Login(s.idp, "users", "bob", "https://app.example.com/done", true)
	if next.Query().Get("status") != "-2" {
		t.Fatalf("aborted login went to %s", next)
	}
	if resp, m := b.UserToken("users", "bob"); resp.StatusCode != 401 || m["error"] != "login_required" {
		t.Fatalf("bob after an aborted login: %d %v", resp.StatusCode, m)
	}
	b.Login(s.idp, "users", "bob", "", false)

	// Two proxy users, interleaved: each request carries its own user's token.
	subs := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		user := []string{"alice", "bob"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := s.asUser(user, "http://"+s.up.Addr+"/me")
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d %s", user, resp.StatusCode, body)
				return
			}
			if got := resp.Header.Get("X-Token-Sub"); got != user {
				t.Errorf("%s's request carried %q's token", user, got)
			}
			subs[user]++
		}()
	}
	wg.Wait()
	if subs["alice"] != 10 || subs["bob"] != 10 {
		t.Fatalf("requests per user at the upstream: %v", subs)
	}
	// carol never logged in.
	presp, body = s.asUser("carol", "http://"+s.up.Addr+"/me")
	if e := decodeError(t, presp, body); presp.StatusCode != 401 || e.Error != "login_required" || !strings.Contains(body, "user=carol") {
		t.Fatalf("carol: %d %s", presp.StatusCode, body)
	}

	// Refresh ahead: with 8 s tokens, two refreshes within ~20 s, each
	// before the token expired (every request meanwhile is accepted). The
	// IdP rotates refresh tokens and revokes the whole login when an old
	// one is reused, so a second successful refresh shows the rotated
	// token was used.
	seen := map[string]bool{tok: true}
	deadline := time.Now().Add(25 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		resp, body := s.asUser("alice", "http://"+s.up.Addr+"/me")
		if resp.StatusCode != 200 || resp.Header.Get("X-Token-Sub") != "alice" {
			t.Fatalf("during refreshes: %d %s", resp.StatusCode, body)
		}
		_, m := b.UserToken("users", "alice")
		if v, _ := m["access_token"].(string); v != "" {
			seenTokens.Store(v, true)
			seen[v] = true
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(seen) < 3 {
		t.Fatalf("%d distinct tokens for alice in 25 s, want 3 (two refreshes)", len(seen))
	}

	// The IdP revokes alice's login: at the next refresh the broker drops
	// her tokens and says login_required; bob is untouched.
	s.idp.RevokeAccount("alice")
	deadline = time.Now().Add(20 * time.Second)
	for {
		resp, m := b.UserToken("users", "alice")
		if resp.StatusCode == 401 && m["error"] == "login_required" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still has a token 20 s after her login was revoked: %d %v", resp.StatusCode, m)
		}
		time.Sleep(250 * time.Millisecond)
	}
	presp, body = s.asUser("alice", "http://"+s.up.Addr+"/me")
	if presp.StatusCode != 401 || decodeError(t, presp, body).Error != "login_required" {
		t.Fatalf("proxy after revocation: %d %s", presp.StatusCode, body)
	}
	if resp, _ := s.asUser("bob", "http://"+s.up.Addr+"/me"); resp.StatusCode != 200 {
		t.Fatalf("bob after alice's revocation: %d", resp.StatusCode)
	}
	assertNoCanary(t, "authgress output", s.a.out.String())
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestBrokerPublicClient: client_auth = "none" — a public client whose
// code only PKCE protects: the login completes without any secret, and
// the stored token refreshes.
func TestBrokerPublicClient(t *testing.T) {
	s := startBrokerSetup(t, 4)
	b := s.broker
	next := b.Login(s.idp, "users_public", "dora", "https://app.example.com/", false)
	if next.Query().Get("status") != "0" {
		t.Fatalf("public client login went to %s", next)
	}
	_, m := b.UserToken("users_public", "dora")
	first, _ := m["access_token"].(string)
	seenTokens.Store(first, true)
	if info := s.idp.IntrospectFull(first); info["active"] != true || info["sub"] != "dora" || info["client_id"] != "user-app-public" {
		t.Fatalf("introspection: %v", info)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m := b.UserToken("users_public", "dora")
		if v, _ := m["access_token"].(string); v != "" && v != first {
			seenTokens.Store(v, true)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refresh of a 4 s token in 10 s: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertNoCanary(t, "authgress output", s.a.out.String())
}
