package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// canarySecret is the client secret of every OAuth client in these tests.
// It must never appear in anything authgress writes.
var canarySecret = "canary-" + randomHex(12)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// IdP is a real oidc-provider process. Clients: proxy-client
// (client_secret_basic) and proxy-client-post (client_secret_post), both
// with canarySecret; scopes api:read and api:write. IdPOptions add the
// user clients (user-app, user-app-public), jwt-client and mtls-client.
type IdP struct {
	t      *testing.T
	Port   int
	URL    string
	ttl    int
	format string
	opts   IdPOptions
	// Client talks to the IdP: it trusts the test CA when the IdP serves TLS.
	Client *http.Client
	cmd    *exec.Cmd
	log    *testlog.Buffer
}

// IdPOptions configure startIdPWith; the zero value of a field keeps the
// server's default.
type IdPOptions struct {
	TTL    int    // TOKEN_TTL: client-credentials access tokens, seconds
	Format string // TOKEN_FORMAT: "jwt" or "opaque"
	// UserTTL is USER_TOKEN_TTL: the access tokens of user-app and
	// user-app-public (server default 300 s); RefreshTTL is REFRESH_TOKEN_TTL
	// (86400 s).
	UserTTL, RefreshTTL int
	// RedirectURIs registers the user clients user-app (client_secret_basic,
	// canarySecret) and user-app-public (none), with these redirect URIs;
	// jwt-client and mtls-client get them too (authorization_code).
	RedirectURIs []string
	// JWKS (a JWKS JSON document of public keys) registers jwt-client
	// (private_key_jwt).
	JWKS []byte
	// TLS serves HTTPS with the test PKI's server certificate; it requests
	// (never requires) client certificates from the test CA.
	TLS bool
	// MTLSSubjectDN (with TLS) registers mtls-client (tls_client_auth)
	// matched by this subject DN, e.g. mtlsSubjectDN("mtls-client").
	MTLSSubjectDN string
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startIdP starts oidc-provider issuing tokens of ttl seconds in format
// "opaque" or "jwt".
func startIdP(t *testing.T, ttl int, format string) *IdP {
	t.Helper()
	return startIdPWith(t, IdPOptions{TTL: ttl, Format: format})
}

// startIdPWith starts oidc-provider with more clients and features (see
// IdPOptions and testdata/oidc-provider-server.mjs).
func startIdPWith(t *testing.T, o IdPOptions) *IdP {
	t.Helper()
	if o.MTLSSubjectDN != "" && !o.TLS {
		t.Fatal("IdPOptions.MTLSSubjectDN needs TLS")
	}
	i := &IdP{t: t, Port: freePort(t), ttl: o.TTL, format: o.Format, opts: o, Client: http.DefaultClient, log: &testlog.Buffer{}}
	scheme := "http"
	if o.TLS {
		scheme = "https"
		pool := x509.NewCertPool()
		pool.AddCert(getPKI(t).ca)
		i.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	i.URL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, i.Port)
	i.Start()
	t.Cleanup(i.Stop)
	return i
}

// env is the server's environment for the options.
func (i *IdP) env() []string {
	o := i.opts
	env := []string{fmt.Sprintf("PORT=%d", i.Port), "CLIENT_SECRET=" + canarySecret, "CLIENT_ID=proxy-client"}
	if o.TTL != 0 {
		env = append(env, fmt.Sprintf("TOKEN_TTL=%d", o.TTL))
	}
	if o.Format != "" {
		env = append(env, "TOKEN_FORMAT="+o.Format)
	}
	if o.UserTTL != 0 {
		env = append(env, fmt.Sprintf("USER_TOKEN_TTL=%d", o.UserTTL))
	}
	if o.RefreshTTL != 0 {
		env = append(env, fmt.Sprintf("REFRESH_TOKEN_TTL=%d", o.RefreshTTL))
	}
	if len(o.RedirectURIs) > 0 {
		env = append(env, "REDIRECT_URIS="+strings.Join(o.RedirectURIs, " "))
	}
	if len(o.JWKS) > 0 {
		env = append(env, "JWT_CLIENT_JWKS="+string(o.JWKS))
	}
	if o.TLS {
		p := getPKI(i.t)
		env = append(env, "TLS_CERT="+p.serverCertFile, "TLS_KEY="+p.serverKeyFile, "TLS_CLIENT_CA="+p.caFile)
	}
	if o.MTLSSubjectDN != "" {
		env = append(env, "MTLS_SUBJECT_DN="+o.MTLSSubjectDN)
	}
	return env
}

// Start (re)starts the process on the same port.
func (i *IdP) Start() {
	i.t.Helper()
	cmd := exec.Command("node", idpScript)
	cmd.Dir = idpDir
	cmd.Env = append(cmd.Environ(), i.env()...)
	cmd.Stdout, cmd.Stderr = i.log, i.log
	if err := cmd.Start(); err != nil {
		i.t.Fatalf("starting oidc-provider: %v", err)
	}
	i.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := i.Client.Get(i.URL + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	i.t.Fatalf("oidc-provider did not start:\n%s", i.log.String())
}

// Stop kills the process (SIGKILL: the token endpoint just disappears).
func (i *IdP) Stop() {
	if i.cmd == nil || i.cmd.Process == nil {
		return
	}
	_ = i.cmd.Process.Signal(syscall.SIGKILL)
	_ = i.cmd.Wait()
	i.cmd = nil
}

func (i *IdP) TokenURL() string { return i.URL + "/token" }

// Introspect asks the IdP whether a token is active (RFC 7662).
func (i *IdP) Introspect(token string) (active bool, clientID, scope string) {
	i.t.Helper()
	r := i.IntrospectFull(token)
	clientID, _ = r["client_id"].(string)
	scope, _ = r["scope"].(string)
	return r["active"] == true, clientID, scope
}

// IntrospectFull is the IdP's whole introspection answer (RFC 7662), asked
// as proxy-client: active, and for an active token sub (the user's account
// id for a user token), client_id, scope, exp, aud, token_type (none for a
// refresh token). Any token kind: access or refresh.
func (i *IdP) IntrospectFull(token string) map[string]any {
	i.t.Helper()
	req, _ := http.NewRequest("POST", i.URL+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.SetBasicAuth("proxy-client", canarySecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := i.Client.Do(req)
	if err != nil {
		i.t.Errorf("introspection: %v", err)
		return map[string]any{"active": false}
	}
	defer resp.Body.Close()
	r := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r
}

// Revoke revokes a token (RFC 7009).
func (i *IdP) Revoke(token string) {
	i.t.Helper()
	i.RevokeHint(token, "")
}

// RevokeHint revokes a token (RFC 7009), as proxy-client, with a
// token_type_hint ("access_token", "refresh_token" or "" for none; the hint
// only orders the lookup). Revoking a user's refresh token revokes its whole
// grant: the access tokens issued with it too.
func (i *IdP) RevokeHint(token, hint string) {
	i.t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, _ := http.NewRequest("POST", i.URL+"/token/revocation", strings.NewReader(form.Encode()))
	req.SetBasicAuth("proxy-client", canarySecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := i.Client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		i.t.Fatalf("revocation: %v %v", err, resp)
	}
	resp.Body.Close()
}

// counter is a transparent reverse proxy in front of the IdP's token
// endpoint that counts token requests.
type counter struct {
	*httptest.Server
	n atomic.Int64
}

func countTokenRequests(t *testing.T, i *IdP) *counter {
	target, _ := url.Parse(i.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = recordRefreshTokens
	c := &counter{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			c.n.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counter) TokenURL() string { return c.URL + "/token" }

// recordRefreshTokens makes every refresh token the IdP issues through a
// counter a canary: authgress must never print one.
func recordRefreshTokens(resp *http.Response) error {
	if resp.Request.URL.Path != "/token" {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(body, &m) == nil && m.RefreshToken != "" {
		extraCanaries.Store("refresh token "+m.RefreshToken[:min(6, len(m.RefreshToken))], m.RefreshToken)
	}
	return err
}

// RevokeAccount revokes every grant of account at the IdP (its refresh
// tokens and the access tokens issued with them).
func (i *IdP) RevokeAccount(account string) {
	i.t.Helper()
	resp, err := i.Client.Get(i.URL + "/test/accounts/" + url.PathEscape(account) + "/revoke")
	if err != nil || resp.StatusCode != 200 {
		i.t.Fatalf("revoking %s: %v %v", account, err, resp)
	}
	resp.Body.Close()
}
