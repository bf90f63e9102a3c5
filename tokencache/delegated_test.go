package tokencache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAS is an authorization server's token endpoint for user tokens:
// codes and refresh tokens it issued, rotation on every refresh.
type fakeAS struct {
	*httptest.Server
	mu       sync.Mutex
	ttl      int
	codes    map[string]string // code → user
	refresh  map[string]string // live refresh token → user
	seq      int
	forms    []url.Values
	rotate   bool
	verifier string // the code_verifier expected for every code
}

func newFakeAS(t *testing.T, ttl int) *fakeAS {
	a := &fakeAS{ttl: ttl, codes: map[string]string{}, refresh: map[string]string{}, rotate: true}
	a.Server = httptest.NewServer(http.HandlerFunc(a.token))
	t.Cleanup(a.Close)
	return a
}

func (a *fakeAS) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forms = append(a.forms, r.PostForm)
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"error":%q}`, code)
	}
	var user, rt string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		u, ok := a.codes[r.PostForm.Get("code")]
		if !ok || r.PostForm.Get("code_verifier") != a.verifier {
			fail("invalid_grant")
			return
		}
		delete(a.codes, r.PostForm.Get("code"))
		user = u
	case "refresh_token":
		old := r.PostForm.Get("refresh_token")
		u, ok := a.refresh[old]
		if !ok {
			fail("invalid_grant")
			return
		}
		user = u
		if !a.rotate {
			rt = old
		} else {
			delete(a.refresh, old)
		}
	default:
		fail("unsupported_grant_type")
		return
	}
	a.seq++
	if rt == "" {
		rt = fmt.Sprintf("rt-%s-%d", user, a.seq)
		a.refresh[rt] = user
	}
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{"access_token": fmt.Sprintf("at-%s-%d", user, a.seq), "token_type": "Bearer", "expires_in": a.ttl, "scope": "api:read"}
	if a.rotate || r.PostForm.Get("grant_type") == "authorization_code" {
		body["refresh_token"] = rt
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (a *fakeAS) issueCode(user string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	c := fmt.Sprintf("code-%d", a.seq)
	a.codes[c] = user
	return c
}

func (a *fakeAS) revokeAll(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for rt, u := range a.refresh {
		if u == user {
			delete(a.refresh, rt)
		}
	}
}

func (a *fakeAS) lastForm() url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.forms[len(a.forms)-1]
}

func (a *fakeAS) count(grant string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, f := range a.forms {
		if f.Get("grant_type") == grant {
			n++
		}
	}
	return n
}

func newDelegated(c *Cache, a *fakeAS) *Delegated {
	return c.Delegated("cred-key", "graph_user", DelegatedConfig{
		Client: NewClient(http.DefaultTransport),
		Base: Request{TokenURL: a.URL + "/token", Scopes: []string{"openid", "offline_access"}, ClientAuth: "none",
			ClientID: "user-app", DefaultTTL: time.Minute},
		AuthorizeURL: "https://idp.example/authorize", Prompt: "consent", Timeout: 5 * time.Second,
	})
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

func login(t *testing.T, d *Delegated, a *fakeAS, user string) *Token {
	t.Helper()
	a.verifier = verifier
	tok, err := d.Complete(context.Background(), user, a.issueCode(user), verifier, "http://127.0.0.1:9470/oauth-callback")
	if err != nil {
		t.Fatalf("login of %s: %v", user, err)
	}
	return tok
}

func TestDelegatedAuthorizeURL(t *testing.T) {
	d := newDelegated(New(nil), newFakeAS(t, 60))
	raw, err := d.AuthorizeURL(context.Background(), "st4te", verifier, "http://127.0.0.1:9470/oauth-callback")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	sum := sha256.Sum256([]byte(verifier))
	want := map[string]string{"client_id": "user-app", "response_type": "code", "state": "st4te", "prompt": "consent",
		"redirect_uri": "http://127.0.0.1:9470/oauth-callback", "scope": "openid offline_access",
		"code_challenge_method": "S256", "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:])}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if u.Host != "idp.example" || q.Has("code_verifier") {
		t.Errorf("authorize URL %s", raw)
	}
}

func TestDelegatedLoginRefreshRotateLogout(t *testing.T) {
	a := newFakeAS(t, 2) // refresh ahead after ~1.5s
	d := newDelegated(New(nil), a)
	ctx := context.Background()
	if _, err := d.Token(ctx, "alice"); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("before login: %v", err)
	}
	if len(d.cache.Slots()) != 0 {
		t.Fatal("an unknown user created a slot")
	}
	first := login(t, d, a, "alice")
	f := a.lastForm()
	if f.Get("code_verifier") != verifier || f.Get("redirect_uri") == "" || f.Get("client_id") != "user-app" {
		t.Fatalf("code exchange sent %v", f)
	}
	bob := login(t, d, a, "bob")
	got, err := d.Token(ctx, "alice")
	if err != nil || got.Value != first.Value {
		t.Fatalf("alice's token: %v %v", got, err)
	}
	if got, _ := d.Token(ctx, "bob"); got.Value != bob.Value {
		t.Fatal("bob got another user's token")
	}
	// Refresh ahead: past the refresh point, requests keep the current
	// token while one refresh with alice's refresh token runs.
	deadline := time.Now().Add(5 * time.Second)
	for a.count("refresh_token") == 0 && time.Now().Before(deadline) {
		tok, err := d.Token(ctx, "alice")
		if err != nil {
			t.Fatalf("during refresh: %v", err)
		}
		if !time.Now().Before(tok.UsableTo) {
			t.Fatal("an expired token was returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.lastForm().Get("refresh_token") != first.Refresh {
		t.Fatalf("refreshed with %q, want alice's first refresh token", a.lastForm().Get("refresh_token"))
	}
	waitFor(t, func() bool { tok, _ := d.Token(ctx, "alice"); return tok != nil && tok.Value != first.Value })
	second, _ := d.Token(ctx, "alice")
	if second.Refresh == first.Refresh || second.Refresh == "" {
		t.Fatal("the rotated refresh token did not replace the old one")
	}
	// The next refresh uses the rotated token (the old one is dead at the server).
	waitFor(t, func() bool { _, _ = d.Token(ctx, "alice"); return a.count("refresh_token") >= 2 })
	if a.lastForm().Get("refresh_token") != second.Refresh {
		t.Fatal("the second refresh did not use the rotated refresh token")
	}
	// Revoked at the server: once the token expires, alice must log in again.
	a.revokeAll("alice")
	waitFor(t, func() bool { _, err := d.Token(ctx, "alice"); return errors.Is(err, ErrLoginRequired) })
	if _, err := d.Token(ctx, "bob"); err != nil {
		t.Fatalf("bob lost his token with alice's: %v", err)
	}
	// Logging in again works at once (no backoff left over).
	again := login(t, d, a, "alice")
	if got, err := d.Token(ctx, "alice"); err != nil || got.Value != again.Value {
		t.Fatalf("after a new login: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 8s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDelegatedNonRotatingKeepsRefreshToken(t *testing.T) {
	a := newFakeAS(t, 2)
	a.rotate = false
	d := newDelegated(New(nil), a)
	first := login(t, d, a, "alice")
	waitFor(t, func() bool {
		tok, _ := d.Token(context.Background(), "alice")
		return tok != nil && tok.Value != first.Value
	})
	tok, _ := d.Token(context.Background(), "alice")
	if tok.Refresh != first.Refresh {
		t.Fatal("a server that does not rotate: the old refresh token must be kept")
	}
}

// TestDelegatedSharedAcrossReplicas: a login on one replica serves the
// other, which also refreshes with the stored refresh token.
func TestDelegatedSharedAcrossReplicas(t *testing.T) {
	a := newFakeAS(t, 2)
	m := newMemShared()
	var ds []*Delegated
	for i := 0; i < 2; i++ {
		c := New(nil)
		c.SetShared(m)
		m.subscribe(c)
		ds = append(ds, newDelegated(c, a))
	}
	first := login(t, ds[0], a, "alice")
	got, err := ds[1].Token(context.Background(), "alice")
	if err != nil || got.Value != first.Value {
		t.Fatalf("replica 2: %v", err)
	}
	// Replica 2 alone keeps the user's token fresh after expiry.
	time.Sleep(2100 * time.Millisecond)
	got, err = ds[1].Token(context.Background(), "alice")
	if err != nil || got.Value == first.Value {
		t.Fatalf("replica 2 after expiry: %v", err)
	}
	if a.count("refresh_token") != 1 {
		t.Fatalf("%d refreshes, want 1", a.count("refresh_token"))
	}
}

func TestDelegatedRetainKeepsUsers(t *testing.T) {
	a := newFakeAS(t, 60)
	c := New(nil)
	d := newDelegated(c, a)
	login(t, d, a, "alice")
	c.Retain(map[string]bool{d.Key(): true})
	if _, err := d.Token(context.Background(), "alice"); err != nil {
		t.Fatalf("a reload that keeps the credential logged alice out: %v", err)
	}
	c.Retain(map[string]bool{})
	if _, err := d.Token(context.Background(), "alice"); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("a removed credential kept its users: %v", err)
	}
	if strings.Contains(fmt.Sprint(d.Users()), "alice") {
		t.Fatal("users listed after removal")
	}
}

// TestDelegatedConcurrentFirstRequests: many first requests of a user who
// never logged in race to create the slot (with a shared level, where
// another replica may hold a login): each is told to log in, none panics.
func TestDelegatedConcurrentFirstRequests(t *testing.T) {
	a := newFakeAS(t, 60)
	c := New(nil)
	m := newMemShared()
	c.SetShared(m)
	d := newDelegated(c, a)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Token(context.Background(), "newcomer"); !errors.Is(err, ErrLoginRequired) {
				t.Errorf("got %v, want login required", err)
			}
		}()
	}
	wg.Wait()
	if n := len(c.Slots()); n != 1 || c.Slots()[0].User != "newcomer" {
		t.Fatalf("%d slots", n)
	}
	login(t, d, a, "newcomer")
	if _, err := d.Token(context.Background(), "newcomer"); err != nil {
		t.Fatalf("after login: %v", err)
	}
}

// TestDelegatedRefusedRefreshLeavesNoSharedCopy: a replica that only ever
// loaded a user's token from the shared level, and whose refresh token is
// refused, removes the shared copy, so it does not load the dead refresh
// token again and send it on every request. (A replica holding its own
// copy sends it once more: the broadcast of a rejected token cannot tell a
// refused refresh token from an access token an upstream refused.)
func TestDelegatedRefusedRefreshLeavesNoSharedCopy(t *testing.T) {
	a := newFakeAS(t, 1)
	m := newMemShared()
	var ds []*Delegated
	for i := 0; i < 2; i++ {
		c := New(nil)
		c.SetShared(m)
		m.subscribe(c)
		ds = append(ds, newDelegated(c, a))
	}
	login(t, ds[0], a, "alice")
	a.mu.Lock()
	clear(a.refresh) // the user's refresh tokens are revoked
	a.mu.Unlock()
	time.Sleep(1100 * time.Millisecond) // the access token expires
	ctx := context.Background()
	if _, err := ds[1].Token(ctx, "alice"); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("replica 2 with a revoked refresh token: %v", err)
	}
	refreshes := a.count("refresh_token")
	waitFor(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.vals) == 0
	})
	for range 2 {
		if _, err := ds[1].Token(ctx, "alice"); !errors.Is(err, ErrLoginRequired) {
			t.Fatalf("after the refusal: %v", err)
		}
	}
	if n := a.count("refresh_token"); n != refreshes {
		t.Errorf("replica 2 sent the refused refresh token %d more times", n-refreshes)
	}
}
