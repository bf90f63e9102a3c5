package vault

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
)

// fakeVault speaks enough of Vault's API to show behaviours the dev server
// cannot (412, a chosen lease, 403 after token revocation).
type fakeVault struct {
	mu        sync.Mutex
	status    int
	token     string
	logins    int
	renewals  int
	lease     int
	paths     []string
	namespace string
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.namespace = r.Header.Get("X-Vault-Namespace")
	switch r.URL.Path {
	case "/v1/auth/approle/login":
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body["role_id"] != "role" || body["secret_id"] != "secret-id-canary" {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"errors":["invalid role or secret ID"]}`)
			return
		}
		f.logins++
		f.token = "hvs.login-" + string(rune('0'+f.logins))
		_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": f.token, "lease_duration": f.lease, "renewable": true}})
		return
	case "/v1/auth/token/renew-self":
		f.renewals++
		_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": f.token, "lease_duration": f.lease, "renewable": true}})
		return
	}
	f.paths = append(f.paths, r.URL.EscapedPath())
	if r.Header.Get("X-Vault-Token") != f.token {
		w.WriteHeader(403)
		_, _ = io.WriteString(w, `{"errors":["permission denied"]}`)
		return
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, `{"errors":["Vault is sealed"]}`)
		return
	}
	_, _ = io.WriteString(w, `{"data":{"data":{"client_id":"kv-client","client_secret":"kv-secret","app_key":"k2"},"metadata":{"version":3}}}`)
}

func newKVFor(t *testing.T, f *fakeVault, v *conf.Vault) *KV {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	v.Address = srv.URL
	if v.Mount == "" {
		v.Mount = "kv"
	}
	if v.ClientIDField == "" {
		v.ClientIDField, v.ClientSecretField = "client_id", "client_secret"
	}
	set := Set{}
	k := NewKV(KVConfig{Name: "hcv", Vault: v, Transport: srv.Client().Transport, Resolve: set.Resolve})
	k.backoff = time.Millisecond
	return k
}

func TestKVTokenAuthAndPaths(t *testing.T) {
	f := &fakeVault{token: "root-canary"}
	k := newKVFor(t, f, &conf.Vault{Token: conf.LiteralSecret("root-canary"), Namespace: "team-a"})
	s, err := k.Lookup(context.Background(), "egress/oauth/client a")
	if err != nil || s.ClientID != "kv-client" || s.ClientSecret != "kv-secret" {
		t.Fatalf("%+v %v", s, err)
	}
	if f.paths[0] != "/v1/kv/data/egress/oauth/client%20a" || f.namespace != "team-a" {
		t.Fatalf("path %q namespace %q", f.paths[0], f.namespace)
	}
	k.secretField = "app_key"
	if s, _ := k.Lookup(context.Background(), "x"); s.ClientSecret != "k2" {
		t.Fatal("configurable fields")
	}
	k.secretField = "missing"
	if _, err := k.Lookup(context.Background(), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing field: %v", err)
	}
}

func TestKVStatusClasses(t *testing.T) {
	cases := []struct {
		status int
		kind   error
		text   string
	}{
		{403, ErrNotFound, "denied"},
		{404, ErrNotFound, "no secret"},
		{412, ErrUnavailable, "HTTP 412"},
		{500, ErrUnavailable, "HTTP 500"},
		{503, ErrUnavailable, "sealed"},
		{400, ErrNotFound, "refused"},
	}
	for _, tc := range cases {
		f := &fakeVault{token: "t", status: tc.status}
		k := newKVFor(t, f, &conf.Vault{Token: conf.LiteralSecret("t")})
		_, err := k.Lookup(context.Background(), "p")
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("HTTP %d: %v", tc.status, err)
		}
		if strings.Contains(err.Error(), "\"t\"") {
			t.Errorf("token in error: %v", err)
		}
	}
}

func TestKVAppRoleRenewsAndReLogs(t *testing.T) {
	f := &fakeVault{lease: 100}
	t.Setenv("AG_ROLE_ID", "role")
	t.Setenv("AG_SECRET_ID", "secret-id-canary")
	k := newKVFor(t, f, &conf.Vault{RoleID: conf.Secret{Env: "AG_ROLE_ID", Set: true}, SecretID: conf.Secret{Env: "AG_SECRET_ID", Set: true}})
	now := time.Now()
	k.now = func() time.Time { return now }
	if _, err := k.Lookup(context.Background(), "p"); err != nil || f.logins != 1 {
		t.Fatalf("first read: %v, logins %d", err, f.logins)
	}
	now = now.Add(50 * time.Second)
	_, _ = k.Lookup(context.Background(), "p")
	if f.logins != 1 || f.renewals != 0 {
		t.Fatalf("early: logins %d renewals %d", f.logins, f.renewals)
	}
	now = now.Add(35 * time.Second) // past 80% of the lease: renew-self
	_, _ = k.Lookup(context.Background(), "p")
	if f.logins != 1 || f.renewals != 1 {
		t.Fatalf("renewal: logins %d renewals %d", f.logins, f.renewals)
	}
	now = now.Add(200 * time.Second) // lease ended: log in again
	_, _ = k.Lookup(context.Background(), "p")
	if f.logins != 2 {
		t.Fatalf("after lease end: logins %d", f.logins)
	}
	f.mu.Lock()
	f.token = "revoked-elsewhere"
	f.mu.Unlock()
	if _, err := k.Lookup(context.Background(), "p"); err != nil || f.logins != 3 {
		t.Fatalf("after revocation: %v, logins %d", err, f.logins)
	}
	t.Setenv("AG_SECRET_ID", "wrong")
	k.dropLogin()
	k.secretID.forget()
	_, err := k.Lookup(context.Background(), "p")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "AppRole login was refused") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad secret_id: %v", err)
	}
}

// TestKVEchoedTokenIsRedacted: Vault error strings that quote the Vault token
// (a resolved secret reference) or the AppRole login token get them redacted.
func TestKVEchoedTokenIsRedacted(t *testing.T) {
	const token = "hvs.canary-vault-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(403)
		_, _ = io.WriteString(w, `{"errors":["permission denied for token `+r.Header.Get("X-Vault-Token")+`"]}`)
	}))
	defer srv.Close()
	set := Set{}
	k := NewKV(KVConfig{Name: "hcv", Vault: &conf.Vault{Address: srv.URL, Mount: "kv", Token: conf.LiteralSecret(token),
		ClientIDField: "client_id", ClientSecretField: "client_secret"}, Transport: srv.Client().Transport, Resolve: set.Resolve})
	_, err := k.Lookup(context.Background(), "egress/app")
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "token [redacted]") {
		t.Fatalf("token auth: %v", err)
	}

	f := &fakeVault{lease: 100, status: 500}
	k = newKVFor(t, f, &conf.Vault{RoleID: conf.LiteralSecret("role"), SecretID: conf.LiteralSecret("secret-id-canary")})
	login, err := k.authToken(context.Background(), "x")
	if err != nil || len(login) < 6 {
		t.Fatalf("login: %q %v", login, err)
	}
	if got := vaultErrors([]string{"token " + login + " and secret_id secret-id-canary"}); strings.Contains(got, login) || strings.Contains(got, "secret-id-canary") {
		t.Fatalf("AppRole values not redacted: %q", got)
	}
}
