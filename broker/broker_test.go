package broker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

const (
	keyFlows = "key-flows-0123456789"
	keyOther = "key-other-abcdefghij"
)

type fakeCall struct {
	method, name, user, code, verifier, redirectURI, state, refresh string
	scopes                                                          []string
}

// fakeBackend records every call and answers with what the test set.
type fakeBackend struct {
	mu        sync.Mutex
	delegated map[string]bool // the configured credentials
	calls     []fakeCall

	serverTok   *tokencache.Token
	serverErr   error
	authErr     error
	completeTok *tokencache.Token
	completeErr error
	userTok     *tokencache.Token
	userErr     error
	refreshTok  *tokencache.Token
	refreshErr  error
}

func newFake() *fakeBackend {
	exp := testNow.Add(time.Hour)
	return &fakeBackend{
		delegated:   map[string]bool{"graph": false, "graph_user": true, "other_cred": false, "nobodys": false},
		serverTok:   &tokencache.Token{Value: "server-access-token", Type: "Bearer", Scope: "a b", ExpiresAt: exp},
		completeTok: &tokencache.Token{Value: "user-access-token", Type: "Bearer", ExpiresAt: exp, Refresh: "user-refresh-token"},
		userTok:     &tokencache.Token{Value: "user-access-token", Type: "bearer", Scope: "User.Read", ExpiresAt: exp, Refresh: "user-refresh-token"},
		refreshTok:  &tokencache.Token{Value: "refreshed-access-token", Type: "Bearer", Scope: "User.Read", ExpiresAt: exp, Refresh: "rotated-refresh-token"},
	}
}

func (f *fakeBackend) record(c fakeCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeBackend) called(method string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.method == method {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeBackend) Credential(name string) (bool, bool) {
	d, ok := f.delegated[name]
	return ok, d
}

func (f *fakeBackend) ServerToken(_ context.Context, name string, scopes []string) (*tokencache.Token, error) {
	f.record(fakeCall{method: "ServerToken", name: name, scopes: scopes})
	return f.serverTok, f.serverErr
}

func (f *fakeBackend) AuthorizeURL(_ context.Context, name, state, verifier, redirectURI string) (string, error) {
	f.record(fakeCall{method: "AuthorizeURL", name: name, state: state, verifier: verifier, redirectURI: redirectURI})
	if f.authErr != nil {
		return "", f.authErr
	}
	sum := sha256.Sum256([]byte(verifier))
	return "https://idp.example.com/authorize?" + url.Values{
		"state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}, "redirect_uri": {redirectURI},
	}.Encode(), nil
}

func (f *fakeBackend) CompleteLogin(_ context.Context, name, user, code, verifier, redirectURI string) (*tokencache.Token, error) {
	f.record(fakeCall{method: "CompleteLogin", name: name, user: user, code: code, verifier: verifier, redirectURI: redirectURI})
	return f.completeTok, f.completeErr
}

func (f *fakeBackend) UserToken(_ context.Context, name, user string) (*tokencache.Token, error) {
	f.record(fakeCall{method: "UserToken", name: name, user: user})
	return f.userTok, f.userErr
}

func (f *fakeBackend) Refresh(_ context.Context, name, refreshToken string) (*tokencache.Token, error) {
	f.record(fakeCall{method: "Refresh", name: name, refresh: refreshToken})
	return f.refreshTok, f.refreshErr
}

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	b     *Broker
	fake  *fakeBackend
	clock *clock
	log   *testlog.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{fake: newFake(), clock: &clock{t: testNow}, log: &testlog.Buffer{}}
	pub, _ := url.Parse("https://broker.example.com/")
	e.b = New(Config{
		PublicURL: pub,
		Clients: []Client{
			{Name: "flows", Key: keyFlows, Credentials: []string{"graph", "graph_user"}},
			{Name: "other", Key: keyOther, Credentials: []string{"other_cred"}},
			{Name: "empty", Key: "", Credentials: []string{"graph"}},
		},
		AllowedRedirects: []string{"https://app.example.com/", "https://apps.example.com/cb", "http://localhost:8080/done/"},
		LoginTimeout:     5 * time.Minute,
		Log:              slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:              e.clock.Now,
	}, e.fake)
	return e
}

// do runs one request; key "" sends no Authorization.
func (e *env) do(method, target, key, body string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	e.b.ServeHTTP(w, r)
	return w
}

type answer struct {
	Error        string  `json:"error"`
	Connection   *string `json:"connection"`
	Message      string  `json:"message"`
	LoginURL     string  `json:"login_url"`
	Status       *int    `json:"status"`
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    *int64  `json:"expires_in"`
	Scope        *string `json:"scope"`
	RefreshToken *string `json:"refresh_token"`
}

func decode(t *testing.T, w *httptest.ResponseRecorder) answer {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, body %s", ct, w.Body)
	}
	var a answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if a.Status == nil {
		t.Fatalf("no status in %s", w.Body)
	}
	return a
}

// expectError checks an error answer: HTTP status, code (body and header), seed status.
func expectError(t *testing.T, w *httptest.ResponseRecorder, status int, code string, seed int) answer {
	t.Helper()
	a := decode(t, w)
	if w.Code != status || a.Error != code || *a.Status != seed || w.Header().Get(ErrorHeader) != code {
		t.Fatalf("got %d %q status %d (header %q), want %d %q status %d; body %s",
			w.Code, a.Error, *a.Status, w.Header().Get(ErrorHeader), status, code, seed, w.Body)
	}
	if a.Message == "" || a.Connection == nil {
		t.Fatalf("error body lacks message or connection: %s", w.Body)
	}
	return a
}

func TestAuthentication(t *testing.T) {
	const tokenPath = "/v1/credentials/graph/token"
	for _, tc := range []struct {
		name, path, auth string
		status           int
		code             string
		seed             int
	}{
		{"no key", tokenPath, "", 401, "unauthorized", -1},
		{"wrong key", tokenPath, "Bearer nope-nope-nope", 401, "unauthorized", -1},
		{"key prefix", tokenPath, "Bearer " + keyFlows[:10], 401, "unauthorized", -1},
		{"basic scheme", tokenPath, "Basic " + keyFlows, 401, "unauthorized", -1},
		{"empty bearer", tokenPath, "Bearer ", 401, "unauthorized", -1},
		{"unknown credential without key", "/v1/credentials/nope/token", "", 401, "unauthorized", -1},
		{"another client's credential", "/v1/credentials/other_cred/token", "Bearer " + keyFlows, 403, "forbidden", -1},
		{"a credential nobody lists", "/v1/credentials/nobodys/token", "Bearer " + keyFlows, 403, "forbidden", -1},
		{"right key, other client's credential", tokenPath, "Bearer " + keyOther, 403, "forbidden", -1},
		{"unknown credential", "/v1/credentials/nope/token", "Bearer " + keyFlows, 404, "unknown_credential", -2},
		{"ok", tokenPath, "Bearer " + keyFlows, 200, "", 0},
		{"ok, scheme case", tokenPath, "bearer " + keyFlows, 200, "", 0},
		{"other client ok", "/v1/credentials/other_cred/token", "Bearer " + keyOther, 200, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := httptest.NewRequest("POST", tc.path, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			e.b.ServeHTTP(w, r)
			if tc.status == 200 {
				if a := decode(t, w); w.Code != 200 || *a.Status != 0 {
					t.Fatalf("got %d %s", w.Code, w.Body)
				}
				return
			}
			expectError(t, w, tc.status, tc.code, tc.seed)
			if tc.status == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %v", w.Header())
			}
			if len(e.fake.called("ServerToken")) != 0 {
				t.Errorf("backend asked for a token on a refused call")
			}
		})
	}
}

func TestEveryEndpointNeedsAKey(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/credentials/graph/token"},
		{"GET", "/v1/credentials/graph_user/login?user=bob"},
		{"GET", "/v1/credentials/graph_user/users/bob/token"},
		{"POST", "/v1/credentials/graph_user/refresh"},
	} {
		expectError(t, e.do(c.method, c.path, "", `{"refresh_token":"x"}`), 401, "unauthorized", -1)
		expectError(t, e.do(c.method, c.path, keyOther, `{"refresh_token":"x"}`), 403, "forbidden", -1)
	}
	if len(e.fake.calls) != 0 {
		t.Fatalf("backend called: %+v", e.fake.calls)
	}
}

func TestServerToken(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		seed       int
		scopes     []string
	}{
		{"no body", "", 200, 0, nil},
		{"empty object", "{}", 200, 0, nil},
		{"null scopes", `{"scopes":null}`, 200, 0, nil},
		{"scopes", `{"scopes":["api://x/.default","b"]}`, 200, 0, []string{"api://x/.default", "b"}},
		{"empty scopes", `{"scopes":[]}`, 400, -3, nil},
		{"scope with space", `{"scopes":["a b"]}`, 400, -3, nil},
		{"malformed", `{"scopes":`, 400, -3, nil},
		{"wrong type", `{"scopes":"a"}`, 400, -3, nil},
		{"unknown field", `{"scope":["a"]}`, 400, -3, nil},
		{"trailing data", `{} {}`, 400, -3, nil},
		{"too large", `{"scopes":["` + strings.Repeat("a", MaxBody) + `"]}`, 400, -3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.serverTok.Refresh = "must-not-appear"
			w := e.do("POST", "/v1/credentials/graph/token", keyFlows, tc.body)
			if tc.status != 200 {
				expectError(t, w, tc.status, CodeBadRequest, tc.seed)
				if len(e.fake.called("ServerToken")) != 0 {
					t.Fatal("backend called on bad input")
				}
				return
			}
			a := decode(t, w)
			if w.Code != 200 || *a.Status != 0 || a.AccessToken != "server-access-token" || a.TokenType != "Bearer" ||
				a.Scope == nil || *a.Scope != "a b" || a.ExpiresIn == nil || *a.ExpiresIn != 3600 || a.RefreshToken != nil {
				t.Fatalf("got %d %s", w.Code, w.Body)
			}
			calls := e.fake.called("ServerToken")
			if len(calls) != 1 || calls[0].name != "graph" || !slices.Equal(calls[0].scopes, tc.scopes) || (tc.scopes == nil) != (calls[0].scopes == nil) {
				t.Fatalf("calls %+v, want scopes %q", calls, tc.scopes)
			}
		})
	}
}

func TestServerTokenOfDelegatedCredential(t *testing.T) {
	e := newEnv(t)
	a := expectError(t, e.do("POST", "/v1/credentials/graph_user/token", keyFlows, ""), 400, CodeBadRequest, -1)
	if !strings.Contains(a.Message, "/login") {
		t.Errorf("message does not point to the user endpoints: %q", a.Message)
	}
	// and the user endpoints refuse a client-credentials credential
	expectError(t, e.do("GET", "/v1/credentials/graph/users/bob/token", keyFlows, ""), 400, CodeBadRequest, -1)
	expectError(t, e.do("GET", "/v1/credentials/graph/login?user=bob", keyFlows, ""), 400, CodeBadRequest, -1)
}

func TestTokenFailures(t *testing.T) {
	unavailable := &tokencache.Error{Kind: tokencache.Unavailable, Msg: "the token endpoint could not be reached (connection refused)"}
	for _, tc := range []struct {
		name       string
		err        error
		tok        *tokencache.Token
		status     int
		code       string
		seed       int
		retryAfter string
		inMessage  string
	}{
		{"unreachable, with retry", &tokencache.FetchError{Err: unavailable, RetryAfter: 6500 * time.Millisecond}, nil, 502, CodeTokenUnavailable, -3, "7", "could not be reached"},
		{"unreachable", unavailable, nil, 502, CodeTokenUnavailable, -3, "1", "could not be reached"},
		{"rejected", &tokencache.FetchError{Err: &tokencache.Error{Kind: tokencache.Rejected, Code: "invalid_client", Msg: "the token endpoint refused the request"}, RetryAfter: time.Minute}, nil, 502, CodeTokenRejected, -1, "", "invalid_client"},
		{"unsupported type", &tokencache.Error{Kind: tokencache.UnsupportedType, Msg: "the token endpoint issued a DPoP token"}, nil, 502, CodeUnsupportedTokenType, -5, "", "DPoP"},
		{"unsupported type returned", nil, &tokencache.Token{Value: "x", Type: "DPoP"}, 502, CodeUnsupportedTokenType, -5, "", "DPoP"},
		{"vault unavailable", &tokencache.FetchError{Err: &vault.Error{Vault: "corp", ID: "app", Kind: vault.ErrUnavailable, Msg: "timeout"}, RetryAfter: 2 * time.Second}, nil, 502, CodeVaultUnavailable, -3, "2", "timeout"},
		{"vault not found", &vault.Error{Vault: "corp", ID: "app", Kind: vault.ErrNotFound, Msg: "no such secret"}, nil, 502, CodeCredentialNotFound, -2, "", "no such secret"},
		{"deadline", context.DeadlineExceeded, nil, 502, CodeTokenUnavailable, -3, "1", "timeout"},
		{"other", errors.New("boom at 10.0.0.1"), nil, 502, CodeTokenUnavailable, -1, "1", "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.serverErr, e.fake.serverTok = tc.err, tc.tok
			w := e.do("POST", "/v1/credentials/graph/token", keyFlows, "")
			a := expectError(t, w, tc.status, tc.code, tc.seed)
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if !strings.Contains(a.Message, tc.inMessage) || strings.Contains(a.Message, "10.0.0.1") {
				t.Errorf("message %q", a.Message)
			}
		})
	}
}

// startLogin runs the login endpoint and returns the state and verifier the backend got.
func (e *env) startLogin(t *testing.T, query string) (state, verifier string) {
	t.Helper()
	w := e.do("GET", "/v1/credentials/graph_user/login?"+query, keyFlows, "")
	if w.Code != http.StatusFound {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	calls := e.fake.called("AuthorizeURL")
	c := calls[len(calls)-1]
	return c.state, c.verifier
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", "/v1/credentials/graph_user/login?user=bob&redirect="+url.QueryEscape("https://app.example.com/done?x=1"), keyFlows, "")
	if w.Code != http.StatusFound {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	calls := e.fake.called("AuthorizeURL")
	if len(calls) != 1 {
		t.Fatalf("calls %+v", calls)
	}
	c := calls[0]
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || loc.Host != "idp.example.com" || loc.Query().Get("state") != c.state {
		t.Fatalf("Location %q does not carry the state given to AuthorizeURL", w.Header().Get("Location"))
	}
	if raw, err := base64.RawURLEncoding.DecodeString(c.state); err != nil || len(raw) != 32 {
		t.Errorf("state is not 32 random bytes base64url: %v", err)
	}
	if len(c.verifier) < 43 || c.name != "graph_user" || c.redirectURI != "https://broker.example.com/oauth-callback" {
		t.Errorf("AuthorizeURL call %+v", c)
	}
	sum := sha256.Sum256([]byte(c.verifier))
	if loc.Query().Get("code_challenge") != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Errorf("challenge is not of the verifier passed")
	}
	// a second login has another state and verifier
	s2, v2 := e.startLogin(t, "user=bob")
	if s2 == c.state || v2 == c.verifier {
		t.Error("state or verifier reused")
	}
	if got := len(e.b.pending); got != 2 {
		t.Errorf("%d pending logins, want 2", got)
	}

	expectError(t, e.do("GET", "/v1/credentials/graph_user/login", keyFlows, ""), 400, CodeBadRequest, -3)
	expectError(t, e.do("GET", "/v1/credentials/graph_user/login?user=", keyFlows, ""), 400, CodeBadRequest, -3)
	expectError(t, e.do("GET", "/v1/credentials/graph_user/login?user=a%0Ab", keyFlows, ""), 400, CodeBadRequest, -3)

	// AuthorizeURL failing (vault down): no pending login left behind
	e.fake.authErr = &vault.Error{Vault: "corp", ID: "x", Kind: vault.ErrUnavailable, Msg: "down"}
	expectError(t, e.do("GET", "/v1/credentials/graph_user/login?user=bob", keyFlows, ""), 502, CodeVaultUnavailable, -3)
	if got := len(e.b.pending); got != 2 {
		t.Errorf("%d pending logins after a failed login, want 2", got)
	}
}

func TestRedirectAllowList(t *testing.T) {
	for _, tc := range []struct {
		redirect string
		ok       bool
	}{
		{"https://app.example.com/", true},
		{"https://app.example.com", true},
		{"https://app.example.com/done?x=1#frag", true},
		{"https://APP.example.com/done", true},
		{"HTTPS://app.example.com/done", true},
		{"https://apps.example.com/cb", true},
		{"https://apps.example.com/cb/more", true},
		{"https://apps.example.com/cb?x=1", true},
		{"http://localhost:8080/done/x", true},
		{"https://app.example.com.evil.com/", false},
		{"https://app.example.com@evil.com/", false},
		{"https://user:pw@app.example.com/", false},
		{"https://evil.com/https://app.example.com/", false},
		{"http://app.example.com/", false},
		{"javascript:alert(1)//app.example.com/", false},
		{"//app.example.com/", false},
		{"/done", false},
		{"https://app.example.com:8443/", false},
		{"https://apps.example.com/cbx", false},
		{"https://apps.example.com/c", false},
		{"https://apps.example.com/cb/../admin", false},
		{"https://apps.example.com/cb/%2e%2e/admin", false},
		{"https://apps.example.com/cb%2F..%2Fadmin", false},
		{"https://app.example.com\\@evil.com/", false},
		{"https://app.example.com/\tx", false},
		{"http://localhost:8080/done", false},
		{"http://localhost:8081/done/", false},
		{"http://localhost/done/", false},
	} {
		t.Run(tc.redirect, func(t *testing.T) {
			e := newEnv(t)
			w := e.do("GET", "/v1/credentials/graph_user/login?user=bob&redirect="+url.QueryEscape(tc.redirect), keyFlows, "")
			if tc.ok {
				if w.Code != http.StatusFound {
					t.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				return
			}
			expectError(t, w, 400, CodeBadRequest, -1)
			if len(e.fake.calls) != 0 || len(e.b.pending) != 0 {
				t.Fatal("a refused redirect started a login")
			}
		})
	}
}

func callbackURL(q url.Values) string { return "/oauth-callback?" + q.Encode() }

func TestCallbackSuccessRedirects(t *testing.T) {
	e := newEnv(t)
	state, verifier := e.startLogin(t, "user=bob&redirect="+url.QueryEscape("https://app.example.com/done?x=1&y=a%20b#top"))
	w := e.do("GET", callbackURL(url.Values{"state": {state}, "code": {"the-code"}}), "", "")
	if w.Code != http.StatusFound {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if loc := w.Header().Get("Location"); loc != "https://app.example.com/done?x=1&y=a%20b&status=0#top" {
		t.Errorf("Location %q", loc)
	}
	calls := e.fake.called("CompleteLogin")
	if len(calls) != 1 {
		t.Fatalf("CompleteLogin calls %+v", calls)
	}
	c := calls[0]
	if c.name != "graph_user" || c.user != "bob" || c.code != "the-code" || c.verifier != verifier || c.redirectURI != "https://broker.example.com/oauth-callback" {
		t.Errorf("CompleteLogin got %+v (verifier %q)", c, verifier)
	}
	// the state is used up
	w = e.do("GET", callbackURL(url.Values{"state": {state}, "code": {"the-code"}}), "", "")
	if w.Code != 400 || w.Header().Get(ErrorHeader) != "invalid_state" || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), "status -1") {
		t.Errorf("reused state: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if len(e.fake.called("CompleteLogin")) != 1 {
		t.Error("a reused state completed a login")
	}
}

func TestCallbackPage(t *testing.T) {
	e := newEnv(t)
	state, _ := e.startLogin(t, "user="+url.QueryEscape(`<script>alert("x")</script>`))
	w := e.do("GET", callbackURL(url.Values{"state": {state}, "code": {"c0de"}}), "", "")
	body := w.Body.String()
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || !strings.Contains(body, "Signed in as") ||
		strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatalf("got %d %s", w.Code, body)
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "style-src 'unsafe-inline'") {
		t.Errorf("CSP %q", csp)
	}
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", w.Header())
	}
}

func TestCallbackRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		redirect string
		query    func(state string) url.Values
		advance  time.Duration
		complete error
		status   int
		location string // with R
		seed     string // on the page, without R
		calls    int    // CompleteLogin calls
	}{
		{"access_denied", "https://app.example.com/done?x=1", func(s string) url.Values {
			return url.Values{"state": {s}, "error": {"access_denied"}, "error_description": {"user said no"}}
		}, 0, nil, 302, "https://app.example.com/done?x=1&status=-2&error=access_denied", "", 0},
		{"access_denied page", "", func(s string) url.Values { return url.Values{"state": {s}, "error": {"access_denied"}} }, 0, nil, 403, "", "status -2", 0},
		{"other idp error", "https://app.example.com/done", func(s string) url.Values {
			return url.Values{"state": {s}, "error": {"server_error"}}
		}, 0, nil, 302, "https://app.example.com/done?status=-1&error=login_failed", "", 0},
		{"no code", "https://app.example.com/done", func(s string) url.Values { return url.Values{"state": {s}} }, 0, nil, 302, "https://app.example.com/done?status=-3&error=bad_request", "", 0},
		{"expired", "https://app.example.com/done", func(s string) url.Values { return url.Values{"state": {s}, "code": {"c"}} }, 5 * time.Minute, nil, 400, "", "status -1", 0},
		{"unknown state", "https://app.example.com/done", func(string) url.Values { return url.Values{"state": {"nope"}, "code": {"c"}} }, 0, nil, 400, "", "status -1", 0},
		{"no state", "https://app.example.com/done", func(string) url.Values { return url.Values{"code": {"c"}} }, 0, nil, 400, "", "status -1", 0},
		{"exchange refused", "https://app.example.com/done", func(s string) url.Values { return url.Values{"state": {s}, "code": {"c"}} }, 0,
			&tokencache.Error{Kind: tokencache.Rejected, Code: "invalid_grant", Msg: "the token endpoint refused the request"}, 302, "https://app.example.com/done?status=-1&error=token_rejected", "", 1},
		{"token endpoint unreachable", "https://app.example.com/done", func(s string) url.Values { return url.Values{"state": {s}, "code": {"c"}} }, 0,
			&tokencache.Error{Kind: tokencache.Unavailable, Msg: "the token endpoint could not be reached"}, 302, "https://app.example.com/done?status=-3&error=token_unavailable", "", 1},
		{"exchange refused page", "", func(s string) url.Values { return url.Values{"state": {s}, "code": {"c"}} }, 0,
			&tokencache.Error{Kind: tokencache.Rejected, Code: "invalid_grant", Msg: "the token endpoint refused the request"}, 502, "", "status -1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.completeErr = tc.complete
			q := "user=bob"
			if tc.redirect != "" {
				q += "&redirect=" + url.QueryEscape(tc.redirect)
			}
			state, _ := e.startLogin(t, q)
			e.clock.Advance(tc.advance)
			w := e.do("GET", callbackURL(tc.query(state)), "", "")
			if w.Code != tc.status || w.Header().Get("Location") != tc.location || !strings.Contains(w.Body.String(), tc.seed) {
				t.Fatalf("got %d Location %q body %s", w.Code, w.Header().Get("Location"), w.Body)
			}
			if got := len(e.fake.called("CompleteLogin")); got != tc.calls {
				t.Errorf("%d CompleteLogin calls, want %d", got, tc.calls)
			}
			if w.Header().Get(ErrorHeader) == "" {
				t.Error("no X-Authgress-Error")
			}
		})
	}
}

func TestCallbackIsGetOnly(t *testing.T) {
	e := newEnv(t)
	state, _ := e.startLogin(t, "user=bob")
	w := e.do("HEAD", callbackURL(url.Values{"state": {state}, "code": {"c"}}), "", "")
	if w.Code != 405 || len(e.fake.called("CompleteLogin")) != 0 {
		t.Fatalf("HEAD: %d", w.Code)
	}
	if w = e.do("GET", callbackURL(url.Values{"state": {state}, "code": {"c"}}), "", ""); w.Code != 200 {
		t.Fatalf("HEAD used up the state: %d", w.Code)
	}
}

func TestPendingLoginsAreCapped(t *testing.T) {
	e := newEnv(t)
	e.b.maxPending = 2
	e.startLogin(t, "user=a")
	e.startLogin(t, "user=b")
	w := e.do("GET", "/v1/credentials/graph_user/login?user=c", keyFlows, "")
	expectError(t, w, 503, "too_many_logins", -1)
	e.clock.Advance(5 * time.Minute)
	e.startLogin(t, "user=c") // the expired ones are swept
	if got := len(e.b.pending); got != 1 {
		t.Errorf("%d pending, want 1", got)
	}
}

func TestUserToken(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", "/v1/credentials/graph_user/users/bob%40corp.example/token", keyFlows, "")
	a := decode(t, w)
	if w.Code != 200 || *a.Status != 0 || a.AccessToken != "user-access-token" || a.TokenType != "Bearer" || *a.Scope != "User.Read" {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if a.RefreshToken != nil || strings.Contains(w.Body.String(), "user-refresh-token") || strings.Contains(w.Body.String(), "refresh") {
		t.Fatalf("the refresh token leaked: %s", w.Body)
	}
	if c := e.fake.called("UserToken"); len(c) != 1 || c[0].user != "bob@corp.example" || c[0].name != "graph_user" {
		t.Fatalf("calls %+v", c)
	}

	e.fake.userErr = &tokencache.FetchError{Err: fmt.Errorf("no tokens for this user: %w", tokencache.ErrLoginRequired)}
	w = e.do("GET", "/v1/credentials/graph_user/users/bob%20smith/token", keyFlows, "")
	a = expectError(t, w, 401, CodeLoginRequired, -1)
	if a.LoginURL != "https://broker.example.com/v1/credentials/graph_user/login?user=bob+smith" || *a.Connection != "" {
		t.Fatalf("login_url %q in %s", a.LoginURL, w.Body)
	}
	if w.Header().Get("Retry-After") != "" {
		t.Error("Retry-After on login_required")
	}
}

func TestRefresh(t *testing.T) {
	const path = "/v1/credentials/graph_user/refresh"
	for _, tc := range []struct {
		name, body string
		err        error
		status     int
		code       string
		seed       int
		inMessage  string
	}{
		{"missing body", "", nil, 400, CodeBadRequest, -3, "refresh_token"},
		{"missing token", `{}`, nil, 400, CodeBadRequest, -3, "refresh_token"},
		{"empty token", `{"refresh_token":""}`, nil, 400, CodeBadRequest, -3, "refresh_token"},
		{"malformed", `{"refresh_token":`, nil, 400, CodeBadRequest, -3, ""},
		{"invalid_grant", `{"refresh_token":"old-refresh"}`, &tokencache.Error{Kind: tokencache.Rejected, Code: "invalid_grant", Description: "expired", Msg: "the token endpoint refused the request", Status: 400}, 400, CodeTokenRejected, -1, "invalid_grant"},
		{"unreachable", `{"refresh_token":"old-refresh"}`, &tokencache.Error{Kind: tokencache.Unavailable, Msg: "the token endpoint could not be reached"}, 502, CodeTokenUnavailable, -3, "could not be reached"},
		{"unsupported", `{"refresh_token":"old-refresh"}`, &tokencache.Error{Kind: tokencache.UnsupportedType, Msg: "a mac token"}, 502, CodeUnsupportedTokenType, -5, "mac"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.refreshErr = tc.err
			a := expectError(t, e.do("POST", path, keyFlows, tc.body), tc.status, tc.code, tc.seed)
			if !strings.Contains(a.Message, tc.inMessage) || strings.Contains(a.Message, "old-refresh") {
				t.Errorf("message %q", a.Message)
			}
		})
	}

	e := newEnv(t)
	w := e.do("POST", path, keyFlows, `{"refresh_token":"old-refresh-token"}`)
	a := decode(t, w)
	if w.Code != 200 || *a.Status != 0 || a.AccessToken != "refreshed-access-token" || a.RefreshToken == nil || *a.RefreshToken != "rotated-refresh-token" || *a.ExpiresIn != 3600 {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if c := e.fake.called("Refresh"); len(c) != 1 || c[0].refresh != "old-refresh-token" || c[0].name != "graph_user" {
		t.Fatalf("calls %+v", c)
	}
	// no refresh token returned: none in the answer
	e.fake.refreshTok.Refresh = ""
	w = e.do("POST", path, keyFlows, `{"refresh_token":"old-refresh-token"}`)
	if a = decode(t, w); a.RefreshToken != nil {
		t.Fatalf("got %s", w.Body)
	}
}

func TestRoutingAndHeaders(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/credentials/graph/token", 405, "POST"},
		{"DELETE", "/v1/credentials/graph_user/login", 405, "GET, HEAD"},
		{"POST", "/v1/credentials/graph_user/users/bob/token", 405, "GET, HEAD"},
		{"GET", "/v1/credentials/graph_user/refresh", 405, "POST"},
		{"POST", "/oauth-callback", 405, "GET"},
		{"GET", "/", 404, ""},
		{"GET", "/v1/credentials", 404, ""},
		{"GET", "/v1/credentials/graph/other", 404, ""},
	} {
		w := e.do(tc.method, tc.path, keyFlows, "")
		code := "method_not_allowed"
		if tc.status == 404 {
			code = "not_found"
		}
		expectError(t, w, tc.status, code, -1)
		if w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, w.Header().Get("Allow"))
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: headers %v", tc.method, tc.path, w.Header())
		}
	}
	w := e.do("POST", "/v1/credentials/graph/token", keyFlows, "")
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("token headers %v", w.Header())
	}
}

// TestLogsHoldNoSecrets: every endpoint, with canary key, tokens, refresh
// tokens, code, state and verifier; none of them reaches the log.
func TestLogsHoldNoSecrets(t *testing.T) {
	const (
		canaryKey     = "CANARY-KEY-7f3a9c"
		canaryAccess  = "CANARY-ACCESS-1b2c3d"
		canaryRefresh = "CANARY-REFRESH-4e5f6a"
		canaryRotated = "CANARY-ROTATED-7b8c9d"
		canaryCode    = "CANARY-CODE-0e1f2a"
	)
	e := newEnv(t)
	pub, _ := url.Parse("https://broker.example.com")
	e.b = New(Config{
		PublicURL:        pub,
		Clients:          []Client{{Name: "flows", Key: canaryKey, Credentials: []string{"graph", "graph_user"}}},
		AllowedRedirects: []string{"https://app.example.com/"},
		Log:              slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:              e.clock.Now,
	}, e.fake)
	tok := func() *tokencache.Token {
		return &tokencache.Token{Value: canaryAccess, Type: "Bearer", ExpiresAt: testNow.Add(time.Hour), Refresh: canaryRefresh}
	}
	e.fake.serverTok, e.fake.userTok, e.fake.completeTok = tok(), tok(), tok()
	e.fake.refreshTok = tok()
	e.fake.refreshTok.Refresh = canaryRotated

	var secrets []string
	e.do("POST", "/v1/credentials/graph/token", canaryKey, `{"scopes":["a"]}`)
	e.do("POST", "/v1/credentials/graph/token", canaryKey+"x", "")
	e.do("GET", "/v1/credentials/graph_user/users/bob/token", canaryKey, "")
	e.do("POST", "/v1/credentials/graph_user/refresh", canaryKey, `{"refresh_token":"`+canaryRefresh+`"}`)
	for _, redirect := range []string{"", "https://app.example.com/x"} {
		w := e.do("GET", "/v1/credentials/graph_user/login?user=bob&redirect="+url.QueryEscape(redirect), canaryKey, "")
		loc, _ := url.Parse(w.Header().Get("Location"))
		secrets = append(secrets, loc.Query().Get("state"), loc.Query().Get("code_challenge"))
		c := e.fake.called("AuthorizeURL")
		secrets = append(secrets, c[len(c)-1].verifier)
		e.do("GET", callbackURL(url.Values{"state": {loc.Query().Get("state")}, "code": {canaryCode}}), "", "")
		e.do("GET", callbackURL(url.Values{"state": {loc.Query().Get("state")}, "code": {canaryCode}}), "", "")
	}
	// failures whose causes come from outside
	e.fake.userErr = &tokencache.Error{Kind: tokencache.Rejected, Code: "invalid_grant", Description: "refresh token " + canaryRefresh + " expired", Msg: "refused"}
	e.do("GET", "/v1/credentials/graph_user/users/bob/token", canaryKey, "")
	e.fake.refreshErr = &tokencache.Error{Kind: tokencache.Rejected, Code: "invalid_grant", Description: "bad " + canaryRefresh, Msg: "refused"}
	w := e.do("POST", "/v1/credentials/graph_user/refresh", canaryKey, `{"refresh_token":"`+canaryRefresh+`"}`)
	if strings.Contains(w.Body.String(), canaryRefresh) {
		t.Errorf("refresh error body echoes the refresh token: %s", w.Body)
	}
	state, _ := e.startLoginWith(t, canaryKey, "user=bob")
	e.do("GET", callbackURL(url.Values{"state": {state}, "error": {"access_denied"}, "code": {canaryCode}}), "", "")

	out := e.log.String()
	if strings.Count(out, "\n") < 10 {
		t.Fatalf("too few log lines:\n%s", out)
	}
	for _, s := range append(secrets, canaryKey, canaryAccess, canaryRefresh, canaryRotated, canaryCode, state) {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("log holds %q:\n%s", s, out)
		}
	}
	for _, k := range []string{"client=flows", "credential=graph_user", "endpoint=callback", "seed_status=-2", "duration_ms="} {
		if !strings.Contains(out, k) {
			t.Errorf("log lacks %s:\n%s", k, out)
		}
	}
}

func (e *env) startLoginWith(t *testing.T, key, query string) (string, string) {
	t.Helper()
	w := e.do("GET", "/v1/credentials/graph_user/login?"+query, key, "")
	if w.Code != http.StatusFound {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	c := e.fake.called("AuthorizeURL")
	return c[len(c)-1].state, c[len(c)-1].verifier
}
