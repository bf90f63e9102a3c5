package integration

// The broker's server login and stateless refresh connectors, and the
// client authentication methods private_key_jwt (RFC 7523) and
// tls_client_auth (RFC 8705), against the real IdP (SPEC §14).

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envValue is the value of name in the environment authgress was started with.
func (a *Authgress) envValue(name string) string {
	for _, kv := range a.env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	a.t.Fatalf("authgress was started without %s", name)
	return ""
}

// assertNotIn fails if out contains any of the named values.
func assertNotIn(t *testing.T, what, out string, values map[string]string) {
	t.Helper()
	for name, v := range values {
		if v != "" && strings.Contains(out, v) {
			t.Errorf("%s contains %s", what, name)
		}
	}
}

// TestBrokerServerLogin: the server login connector hands out the very
// token the proxy injects (one token request for both); scopes override;
// unknown, forbidden, unauthenticated and wrong-grant calls are refused.
func TestBrokerServerLogin(t *testing.T) {
	s := startBrokerSetup(t, 300)
	b := s.broker
	keys := map[string]string{"the broker key": b.Key, "the other broker key": s.a.envValue("OTHER_KEY")}

	resp, m := b.do("POST", "/v1/credentials/app/token", b.Key, nil)
	tok, _ := m["access_token"].(string)
	exp, _ := m["expires_in"].(float64)
	if resp.StatusCode != 200 || status(m) != 0 || tok == "" || m["token_type"] != "Bearer" || exp <= 0 || exp > 300 {
		t.Fatalf("server login: %d %v", resp.StatusCode, m)
	}
	seenTokens.Store(tok, true)
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token answer without Cache-Control: no-store: %q", resp.Header.Get("Cache-Control"))
	}
	if info := s.idp.IntrospectFull(tok); info["active"] != true || info["client_id"] != "proxy-client" || info["scope"] != "api:read" {
		t.Fatalf("introspection of the broker's token: %v", info)
	}

	// The proxy injects the same token, without another token request.
	presp, body := s.asUser("alice", "http://"+s.up.Addr+"/api")
	if presp.StatusCode != 200 || presp.Header.Get("X-Seen-Authorization") != "Bearer "+tok {
		t.Fatalf("proxy: %d %s (the upstream saw %q)", presp.StatusCode, body, presp.Header.Get("X-Seen-Authorization"))
	}
	if n := s.count.n.Load(); n != 1 {
		t.Fatalf("%d token requests for the broker and the proxy, want 1", n)
	}
	// And asking again is served from the cache too.
	if _, m := b.do("POST", "/v1/credentials/app/token", b.Key, strings.NewReader(`{}`)); m["access_token"] != tok {
		t.Fatalf("second server login: %v", m)
	}
	if n := s.count.n.Load(); n != 1 {
		t.Fatalf("%d token requests after a second server login, want 1", n)
	}

	// Other scopes: another token, with those scopes.
	resp, m = b.do("POST", "/v1/credentials/app/token", b.Key, strings.NewReader(`{"scopes":["api:write"]}`))
	wtok, _ := m["access_token"].(string)
	if resp.StatusCode != 200 || status(m) != 0 || wtok == "" || wtok == tok || m["scope"] != "api:write" {
		t.Fatalf("server login with scopes: %d %v", resp.StatusCode, m)
	}
	seenTokens.Store(wtok, true)
	if info := s.idp.IntrospectFull(wtok); info["active"] != true || info["client_id"] != "proxy-client" || info["scope"] != "api:write" {
		t.Fatalf("introspection of the api:write token: %v", info)
	}
	if n := s.count.n.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}

	// Refusals.
	for _, tc := range []struct {
		name, path, key string
		body            string
		http, status    int
	}{
		{"unknown credential", "/v1/credentials/nosuch/token", b.Key, "", 404, -2},
		{"credential not listed for the client", "/v1/credentials/users/token", keys["the other broker key"], "", 403, -1},
		{"no key", "/v1/credentials/app/token", "", "", 401, -1},
		{"wrong key", "/v1/credentials/app/token", "broker-wrong-" + randomHex(12), "", 401, -1},
		{"a prefix of the key", "/v1/credentials/app/token", b.Key[:len(b.Key)-1], "", 401, -1},
		{"delegated credential", "/v1/credentials/users/token", b.Key, "", 400, -1},
		{"bad body", "/v1/credentials/app/token", b.Key, `{"scopes":"api:write"}`, 400, -3},
	} {
		var body io.Reader // nil: no body
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		resp, m := b.do("POST", tc.path, tc.key, body)
		if resp.StatusCode != tc.http || status(m) != tc.status || m["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d status %d", tc.name, resp.StatusCode, m, tc.http, tc.status)
		}
		if msg, _ := m["message"].(string); msg == "" {
			t.Errorf("%s: no message: %v", tc.name, m)
		}
		assertNotIn(t, tc.name+" answer", fmt.Sprint(m), map[string]string{"the token": tok, "the api:write token": wtok})
	}
	if n := s.count.n.Load(); n != 2 {
		t.Fatalf("%d token requests after the refused calls, want 2", n)
	}

	// The broker logs its calls (output is flushed every 100ms): never a key or a token.
	s.a.WaitLog(func(l map[string]any) bool {
		return l["msg"] == "broker" && l["endpoint"] == "server_token" && l["seed_status"] == float64(-3)
	}) // the last call
	out := s.a.out.String()
	assertNoCanary(t, "authgress output", out)
	assertNotIn(t, "authgress output", out, keys)
}

// TestBrokerRefreshConnector: the stateless refresh connector refreshes a
// refresh token the app holds (rotated by the IdP), refuses a rotated-away
// one with invalid_grant, and wants one; authgress never prints them.
func TestBrokerRefreshConnector(t *testing.T) {
	s := startBrokerSetup(t, 300)
	b := s.broker
	callback := b.Base + "/oauth-callback"

	// The app's own login for user-app (the broker's callback is a
	// registered redirect URI; the browser never goes there).
	verifier, challenge := newPKCE()
	state := randomHex(8)
	u := s.idp.PlayLogin(t, s.idp.AuthorizeURL("user-app", callback, "openid offline_access api:read", state, challenge, nil), "frank", false)
	if got := u.Scheme + "://" + u.Host + u.Path; got != callback || u.Query().Get("state") != state || u.Query().Get("code") == "" {
		t.Fatalf("login redirected to %s", u)
	}
	st, tok := s.idp.TokenRequest(t, nil, "user-app", url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")},
		"redirect_uri": {callback}, "code_verifier": {verifier}})
	rt1, _ := tok["refresh_token"].(string)
	if st != 200 || rt1 == "" {
		t.Fatalf("code exchange: %d %v", st, tok)
	}
	extraCanaries.Store("the app's refresh token rt1", rt1)
	before := s.count.n.Load()

	keys := map[string]string{"the broker key": b.Key, "the other broker key": s.a.envValue("OTHER_KEY")}
	resp, m, raw := b.doRaw("POST", "/v1/credentials/users/refresh", b.Key, strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, rt1)))
	rt2, _ := m["refresh_token"].(string)
	access, _ := m["access_token"].(string)
	if rt2 != "" {
		extraCanaries.Store("the app's refresh token rt2", rt2)
	}
	if resp.StatusCode != 200 || status(m) != 0 || access == "" || m["token_type"] != "Bearer" || rt2 == "" || rt2 == rt1 {
		t.Fatalf("refresh: %d status %d (access token %t, refresh token %t, rotated %t)", resp.StatusCode, status(m), access != "", rt2 != "", rt2 != rt1)
	}
	seenTokens.Store(access, true)
	if strings.Contains(raw, canarySecret) {
		t.Error("the refresh answer contains the client secret")
	}
	assertNotIn(t, "the refresh answer", raw, keys)
	if info := s.idp.IntrospectFull(access); info["active"] != true || info["sub"] != "frank" || info["client_id"] != "user-app" {
		t.Fatalf("introspection of the refreshed access token: %v", info)
	}
	if info := s.idp.IntrospectFull(rt2); info["active"] != true || info["sub"] != "frank" {
		t.Fatalf("introspection of the rotated refresh token: %v", info)
	}
	if n := s.count.n.Load() - before; n != 1 {
		t.Fatalf("%d token requests for one refresh", n)
	}

	// rt1 was rotated away: the IdP refuses it (and, seeing it reused,
	// revokes the grant).
	resp, m = b.do("POST", "/v1/credentials/users/refresh", b.Key, strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, rt1)))
	if msg, _ := m["message"].(string); status(m) != -1 || !strings.Contains(msg, "invalid_grant") || m["access_token"] != nil || resp.StatusCode != 400 {
		t.Fatalf("reused refresh token: %d %v", resp.StatusCode, m)
	}
	// No refresh token: -3, without asking the IdP.
	n := s.count.n.Load()
	for _, body := range []string{`{}`, `{"refresh_token":""}`, ``} {
		var rb io.Reader // nil: no body
		if body != "" {
			rb = strings.NewReader(body)
		}
		r, m := b.do("POST", "/v1/credentials/users/refresh", b.Key, rb)
		if r.StatusCode != 400 || status(m) != -3 {
			t.Errorf("refresh with %q: %d %v, want 400 status -3", body, r.StatusCode, m)
		}
	}
	if s.count.n.Load() != n {
		t.Error("a refresh without a refresh token reached the IdP")
	}
	// Only its own client, only delegated credentials.
	if r, m := b.do("POST", "/v1/credentials/users/refresh", keys["the other broker key"], strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, rt2))); r.StatusCode != 403 {
		t.Errorf("refresh by a client not listing the credential: %d %v", r.StatusCode, m)
	}
	if r, m := b.do("POST", "/v1/credentials/app/refresh", b.Key, strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, rt2))); r.StatusCode != 400 {
		t.Errorf("refresh on a client-credentials credential: %d %v", r.StatusCode, m)
	}
	if r, _ := b.do("POST", "/v1/credentials/users/refresh", "", strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, rt2))); r.StatusCode != 401 {
		t.Errorf("refresh without a key: %d", r.StatusCode)
	}

	out := s.a.out.String()
	assertNotIn(t, "authgress output", out, map[string]string{"rt1": rt1, "rt2": rt2, "the refreshed access token": access})
	assertNotIn(t, "authgress output", out, keys)
	assertNoCanary(t, "authgress output", out)
}

// keyCanaries registers a PEM private key as canaries: the whole file and
// a line from the middle of its base64 body.
func keyCanaries(t *testing.T, name, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	extraCanaries.Store(name, string(b))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	extraCanaries.Store(name+" (a line of it)", lines[len(lines)/2])
}

// TestPrivateKeyJWT: credentials authenticating with signed assertions
// (RS256, PS256 with an RSA key, ES256 with a P-256 key) get tokens issued
// to jwt-client, which the proxy injects; check accepts the config and
// refuses a signing key that is not a key, naming it.
func TestPrivateKeyJWT(t *testing.T) {
	rsaKey, ecKey := newSigningKey(t, "RSA"), newSigningKey(t, "EC")
	idp := startIdPWith(t, IdPOptions{TTL: 300, Format: "opaque",
		JWKS: jwksJSON(publicJWK(rsaKey, "rsa1", ""), publicJWK(ecKey, "ec1", "ES256"))})
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	up.Handle(introspecting(idp))

	dir := t.TempDir()
	files := map[string]string{}
	for name, k := range map[string]crypto.Signer{"rsa": rsaKey, "ec": ecKey} {
		files[name] = filepath.Join(dir, name+".pem")
		writePKCS8(t, files[name], k)
		keyCanaries(t, "the "+name+" signing key", files[name])
	}
	cases := []struct{ alg, kid, file string }{{"RS256", "rsa1", files["rsa"]}, {"ES256", "ec1", files["ec"]}, {"PS256", "rsa1", files["rsa"]}}
	cfg := "[profiles.upstream]\nca = \"{{CA}}\"\n"
	for _, c := range cases {
		name := strings.ToLower(c.alg)
		cfg += fmt.Sprintf(`
[credentials.jwt_%[1]s]
client_auth = "private_key_jwt"
client_id = "jwt-client"
signing_key = { file = %[2]q }
key_id = %[3]q
alg = %[4]q
token_url = %[5]q
scopes = ["api:read"]

[connections.jwt_%[1]s]
hosts = [%[6]q]
paths = ["/%[1]s"]
credential = "jwt_%[1]s"
profile = "upstream"
`, name, c.file, c.kid, c.alg, count.TokenURL(), up.Addr)
	}
	a := startAuthgress(t, cfg)

	for _, c := range cases {
		t.Run(c.alg, func(t *testing.T) {
			resp, body := a.Get("http://" + up.Addr + "/" + strings.ToLower(c.alg) + "/x")
			if resp.StatusCode != 200 || resp.Header.Get("X-Token-Client") != "jwt-client" || resp.Header.Get("X-Token-Scope") != "api:read" {
				t.Fatalf("%d %s (token of %q)", resp.StatusCode, body, resp.Header.Get("X-Token-Client"))
			}
		})
	}
	if n := count.n.Load(); n != int64(len(cases)) {
		t.Errorf("%d token requests, want %d", n, len(cases))
	}

	// check accepts the config authgress runs with.
	if code, out := runCheck(t, a.config); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	// A signing key that is not a key (a certificate; a truncated copy of
	// the real key): check and run refuse it, naming the key, quoting none of it.
	text, _ := os.ReadFile(a.config)
	rsaPEM, _ := os.ReadFile(files["rsa"])
	lines := strings.Split(strings.TrimSpace(string(rsaPEM)), "\n")
	truncated := strings.Join(lines[:len(lines)/2+1], "\n") + "\n" + lines[len(lines)-1] + "\n"
	for name, content := range map[string]string{
		"certificate": "-----BEGIN CERTIFICATE-----\nbm90IGEga2V5\n-----END CERTIFICATE-----\n",
		"truncated":   truncated,
	} {
		notKey := filepath.Join(dir, name+".pem")
		_ = os.WriteFile(notKey, []byte(content), 0o600)
		bad := filepath.Join(dir, name+".toml")
		_ = os.WriteFile(bad, []byte(strings.Replace(string(text), fmt.Sprintf("%q", files["ec"]), fmt.Sprintf("%q", notKey), 1)), 0o600)
		code, out := runCheck(t, bad)
		if code != 1 || !strings.Contains(out, "error: credentials.jwt_es256.signing_key") {
			t.Fatalf("check with a %s as the signing key: exit %d\n%s", name, code, out)
		}
		t.Logf("check, %s: %s", name, out)
		assertNoCanary(t, "check output", out)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		runOut, err := exec.CommandContext(ctx, binary, "run", "--config", bad).CombinedOutput()
		if err == nil || ctx.Err() != nil || !strings.Contains(string(runOut), "credentials.jwt_es256.signing_key") {
			t.Fatalf("run with a %s as the signing key: %v\n%s", name, err, runOut)
		}
		cancel()
		assertNoCanary(t, "run output", string(runOut))
	}
	assertNoCanary(t, "authgress output", a.out.String())
}

// TestTLSClientAuth: a credential authenticating with the client
// certificate of its profile gets tokens issued to mtls-client; a
// certificate of another subject is refused (502 token_rejected).
func TestTLSClientAuth(t *testing.T) {
	idp := startIdPWith(t, IdPOptions{TTL: 300, Format: "opaque", TLS: true, MTLSSubjectDN: mtlsSubjectDN("mtls-client")})
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "mtls-client", nil, nil)
	otherCert, otherKey := issueClient(t, dir, "someone-else", nil, nil)
	keyCanaries(t, "the mtls-client key", key)
	keyCanaries(t, "the someone-else key", otherKey)

	a := startAuthgress(t, fmt.Sprintf(`
[profiles.upstream]
ca = "{{CA}}"

[profiles.idp]
ca = "{{CA}}"
cert = %[1]q
key = %[2]q

[profiles.other]
ca = "{{CA}}"
cert = %[3]q
key = %[4]q

[credentials.mtls]
client_auth = "tls_client_auth"
client_id = "mtls-client"
profile = "idp"
token_url = %[5]q
scopes = ["api:read"]

[credentials.stranger]
client_auth = "tls_client_auth"
client_id = "mtls-client"
profile = "other"
token_url = %[5]q
scopes = ["api:read"]

[connections.mtls]
hosts = [%[6]q]
paths = ["/mtls"]
credential = "mtls"
profile = "upstream"

[connections.stranger]
hosts = [%[6]q]
paths = ["/stranger"]
credential = "stranger"
profile = "upstream"
`, cert, key, otherCert, otherKey, idp.TokenURL(), up.Addr))

	resp, body := a.Get("http://" + up.Addr + "/mtls/x")
	if resp.StatusCode != 200 || resp.Header.Get("X-Token-Client") != "mtls-client" || resp.Header.Get("X-Token-Scope") != "api:read" {
		t.Fatalf("mtls: %d %s (token of %q)", resp.StatusCode, body, resp.Header.Get("X-Token-Client"))
	}

	n := up.count.Load()
	resp, body = a.Get("http://" + up.Addr + "/stranger/x")
	e := decodeError(t, resp, body)
	if resp.StatusCode != 502 || e.Error != "token_rejected" || e.Connection != "stranger" || !strings.Contains(e.Message, "invalid_client") {
		t.Fatalf("another subject: %d %s", resp.StatusCode, body)
	}
	if up.count.Load() != n {
		t.Fatal("a request without a token reached the upstream")
	}
	if code, out := runCheck(t, a.config); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	assertNoCanary(t, "authgress output", a.out.String())
}
