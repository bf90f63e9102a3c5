package integration

// Self-tests of the IdP's delegated-token and client-authentication
// features (login_test.go), without authgress.

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

const testRedirect = "http://127.0.0.1:1/oauth-callback" // never requested

// codeFrom checks a redirect back to testRedirect and returns its code.
func codeFrom(t *testing.T, u *url.URL, state string) string {
	t.Helper()
	if got := u.Scheme + "://" + u.Host + u.Path; got != testRedirect {
		t.Fatalf("redirected to %s, want %s", u, testRedirect)
	}
	q := u.Query()
	if q.Get("state") != state || q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("redirect %s: want a code and state %s", u, state)
	}
	return q.Get("code")
}

func wantOAuthError(t *testing.T, status int, r map[string]any, wantStatus int, wantErr string) {
	t.Helper()
	if status != wantStatus || r["error"] != wantErr {
		t.Fatalf("got %d %v, want %d %s", status, r, wantStatus, wantErr)
	}
}

func TestIdPAuthorizationCode(t *testing.T) {
	for _, tc := range []struct{ format, user string }{{"jwt", "alice"}, {"opaque", "bob"}} {
		t.Run(tc.format, func(t *testing.T) {
			idp := startIdPWith(t, IdPOptions{TTL: 300, Format: tc.format, UserTTL: 120, RedirectURIs: []string{testRedirect}})
			verifier, challenge := newPKCE()
			state := randomHex(8)
			u := idp.PlayLogin(t, idp.AuthorizeURL("user-app", testRedirect, "openid offline_access api:read", state, challenge, nil), tc.user, false)
			code := codeFrom(t, u, state)

			exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {verifier}}
			st, tok := idp.TokenRequest(t, nil, "user-app", exchange)
			if st != 200 {
				t.Fatalf("code exchange: %d %v", st, tok)
			}
			access, _ := tok["access_token"].(string)
			refresh, _ := tok["refresh_token"].(string)
			if access == "" || refresh == "" || tok["token_type"] != "Bearer" || tok["expires_in"] != float64(120) {
				t.Fatalf("code exchange: %v", tok)
			}
			// the access token is for the API (resource indicator): its scope is the API's only
			if tok["scope"] != "api:read" {
				t.Fatalf("scope %v", tok["scope"])
			}
			if tc.format == "jwt" {
				c := jwtClaims(t, access)
				if c["sub"] != tc.user || c["aud"] != "urn:egress-proxy:upstream" || c["client_id"] != "user-app" {
					t.Fatalf("access token claims %v", c)
				}
			}
			// JWT access tokens are not introspectable: oidc-provider answers unsupported_token_type
			introspectable := []string{refresh}
			if tc.format == "opaque" {
				introspectable = append(introspectable, access)
			}
			for _, tk := range introspectable {
				r := idp.IntrospectFull(tk)
				if r["active"] != true || r["sub"] != tc.user || r["client_id"] != "user-app" || r["exp"] == nil {
					t.Fatalf("introspection %v", r)
				}
			}
			// refresh twice: rotation
			refreshWith := func(rt string) (int, map[string]any) {
				return idp.TokenRequest(t, nil, "user-app", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			}
			rt := refresh
			for n := 0; n < 2; n++ {
				st, tok = refreshWith(rt)
				if st != 200 {
					t.Fatalf("refresh %d: %d %v", n, st, tok)
				}
				next, _ := tok["refresh_token"].(string)
				if next == "" || next == rt || tok["access_token"] == access {
					t.Fatalf("refresh %d: no new tokens: %v", n, tok)
				}
				if tc.format == "jwt" {
					if c := jwtClaims(t, tok["access_token"].(string)); c["sub"] != tc.user {
						t.Fatalf("refreshed access token: %v", c)
					}
				} else if r := idp.IntrospectFull(tok["access_token"].(string)); r["sub"] != tc.user || r["active"] != true {
					t.Fatalf("refreshed token introspection %v", r)
				}
				rt = next
			}
			// the first refresh token was rotated away
			st, r := refreshWith(refresh)
			wantOAuthError(t, st, r, 400, "invalid_grant")
			// and reusing it revoked the grant: the newest refresh token is dead too
			st, r = refreshWith(rt)
			wantOAuthError(t, st, r, 400, "invalid_grant")
			// the code is single use (reusing it would revoke the grant too)
			st, r = idp.TokenRequest(t, nil, "user-app", exchange)
			wantOAuthError(t, st, r, 400, "invalid_grant")
		})
	}
}

func TestIdPLoginRevoke(t *testing.T) {
	idp := startIdPWith(t, IdPOptions{TTL: 300, Format: "opaque", RedirectURIs: []string{testRedirect}})
	verifier, challenge := newPKCE()
	state := randomHex(8)
	code := codeFrom(t, idp.PlayLogin(t, idp.AuthorizeURL("user-app", testRedirect, "offline_access api:read api:write", state, challenge, nil), "carol", false), state)
	st, tok := idp.TokenRequest(t, nil, "user-app", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {verifier}})
	if st != 200 || tok["refresh_token"] == nil {
		t.Fatalf("code exchange: %d %v", st, tok)
	}
	idp.RevokeHint(tok["refresh_token"].(string), "refresh_token")
	if r := idp.IntrospectFull(tok["refresh_token"].(string)); r["active"] != false {
		t.Fatalf("revoked refresh token: %v", r)
	}
	if r := idp.IntrospectFull(tok["access_token"].(string)); r["active"] != false {
		t.Fatalf("access token of a revoked grant: %v", r)
	}
	st, r := idp.TokenRequest(t, nil, "user-app", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}})
	wantOAuthError(t, st, r, 400, "invalid_grant")
}

func TestIdPLoginAbort(t *testing.T) {
	idp := startIdPWith(t, IdPOptions{RedirectURIs: []string{testRedirect}})
	_, challenge := newPKCE()
	state := randomHex(8)
	u := idp.PlayLogin(t, idp.AuthorizeURL("user-app", testRedirect, "openid offline_access api:read", state, challenge, nil), "", true)
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != testRedirect || q.Get("error") != "access_denied" || q.Get("state") != state || q.Get("code") != "" {
		t.Fatalf("aborted login redirected to %s", u)
	}
}

func TestIdPPublicClient(t *testing.T) {
	idp := startIdPWith(t, IdPOptions{Format: "opaque", RedirectURIs: []string{testRedirect}})
	verifier, challenge := newPKCE()
	state := randomHex(8)
	code := codeFrom(t, idp.PlayLogin(t, idp.AuthorizeURL("user-app-public", testRedirect, "openid offline_access api:read", state, challenge, nil), "dave", false), state)
	exchange := url.Values{"grant_type": {"authorization_code"}, "client_id": {"user-app-public"}, "code": {code}, "redirect_uri": {testRedirect}}
	// PKCE is required: no verifier, no token (and the code is then spent)
	st, r := idp.TokenRequest(t, nil, "", exchange)
	wantOAuthError(t, st, r, 400, "invalid_grant")

	verifier, challenge = newPKCE()
	code = codeFrom(t, idp.PlayLogin(t, idp.AuthorizeURL("user-app-public", testRedirect, "openid offline_access api:read", state, challenge, nil), "dave", false), state)
	exchange.Set("code", code)
	exchange.Set("code_verifier", verifier)
	st, tok := idp.TokenRequest(t, nil, "", exchange)
	if st != 200 || tok["refresh_token"] == nil || tok["access_token"] == nil {
		t.Fatalf("code exchange: %d %v", st, tok)
	}
	if r := idp.IntrospectFull(tok["access_token"].(string)); r["sub"] != "dave" || r["client_id"] != "user-app-public" {
		t.Fatalf("introspection %v", r)
	}
	st, tok2 := idp.TokenRequest(t, nil, "", url.Values{"grant_type": {"refresh_token"}, "client_id": {"user-app-public"}, "refresh_token": {tok["refresh_token"].(string)}})
	if st != 200 || tok2["refresh_token"] == tok["refresh_token"] {
		t.Fatalf("refresh: %d %v", st, tok2)
	}

	// an authorization request without code_challenge is refused
	u := idp.PlayLogin(t, idp.AuthorizeURL("user-app-public", testRedirect, "openid api:read", state, "", url.Values{"code_challenge_method": nil, "code_challenge": nil}), "dave", false)
	if q := u.Query(); q.Get("error") != "invalid_request" || q.Get("state") != state {
		t.Fatalf("without PKCE: redirected to %s", u)
	}
}

func TestIdPPrivateKeyJWT(t *testing.T) {
	rsaKey, ecKey := newSigningKey(t, "RSA"), newSigningKey(t, "EC")
	idp := startIdPWith(t, IdPOptions{Format: "opaque", RedirectURIs: []string{testRedirect},
		JWKS: jwksJSON(publicJWK(rsaKey, "rsa1", ""), publicJWK(ecKey, "ec1", "ES256"))})

	// the key files a credential's signing_key would name
	dir := t.TempDir()
	for name, k := range map[string]crypto.Signer{"rsa": rsaKey, "ec": ecKey} {
		path := filepath.Join(dir, name+".pem")
		writePKCS8(t, path, k)
		b, _ := os.ReadFile(path)
		blk, _ := pem.Decode(b)
		if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil || blk.Type != "PRIVATE KEY" {
			t.Fatalf("%s: %v", path, err)
		}
	}

	form := func(assertion string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"api:read"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	}
	for _, tc := range []struct {
		alg, kid string
		key      crypto.Signer
	}{{"RS256", "rsa1", rsaKey}, {"PS256", "rsa1", rsaKey}, {"ES256", "ec1", ecKey}} {
		st, tok := idp.TokenRequest(t, nil, "", form(clientAssertion(t, tc.key, tc.alg, tc.kid, "jwt-client", idp.TokenURL())))
		if st != 200 || tok["access_token"] == nil || tok["scope"] != "api:read" {
			t.Fatalf("%s: %d %v", tc.alg, st, tok)
		}
		if r := idp.IntrospectFull(tok["access_token"].(string)); r["active"] != true || r["client_id"] != "jwt-client" {
			t.Fatalf("%s: introspection %v", tc.alg, r)
		}
	}
	// jwt-client logs users in too
	verifier, challenge := newPKCE()
	state := randomHex(8)
	code := codeFrom(t, idp.PlayLogin(t, idp.AuthorizeURL("jwt-client", testRedirect, "offline_access api:read", state, challenge, nil), "erin", false), state)
	f := form(clientAssertion(t, rsaKey, "PS256", "rsa1", "jwt-client", idp.TokenURL()))
	f.Del("scope")
	f.Set("grant_type", "authorization_code")
	f.Set("code", code)
	f.Set("redirect_uri", testRedirect)
	f.Set("code_verifier", verifier)
	st, tok := idp.TokenRequest(t, nil, "", f)
	if st != 200 || tok["refresh_token"] == nil {
		t.Fatalf("jwt-client code exchange: %d %v", st, tok)
	}
	if r := idp.IntrospectFull(tok["access_token"].(string)); r["sub"] != "erin" || r["client_id"] != "jwt-client" {
		t.Fatalf("introspection %v", r)
	}

	// a replayed assertion, a wrong key, a wrong audience: invalid_client
	a := clientAssertion(t, ecKey, "ES256", "ec1", "jwt-client", idp.URL)
	if st, tok := idp.TokenRequest(t, nil, "", form(a)); st != 200 {
		t.Fatalf("aud = issuer: %d %v", st, tok)
	}
	st, r := idp.TokenRequest(t, nil, "", form(a))
	wantOAuthError(t, st, r, 401, "invalid_client")
	st, r = idp.TokenRequest(t, nil, "", form(clientAssertion(t, newSigningKey(t, "RSA"), "RS256", "rsa1", "jwt-client", idp.TokenURL())))
	wantOAuthError(t, st, r, 401, "invalid_client")
	st, r = idp.TokenRequest(t, nil, "", form(clientAssertion(t, rsaKey, "RS256", "rsa1", "jwt-client", "https://elsewhere.example/token")))
	wantOAuthError(t, st, r, 401, "invalid_client")
}

func TestIdPTLSClientAuth(t *testing.T) {
	idp := startIdPWith(t, IdPOptions{Format: "opaque", TLS: true, MTLSSubjectDN: mtlsSubjectDN("mtls-client")})
	dir := t.TempDir()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"mtls-client"}, "scope": {"api:read"}}

	cert, key := issueClient(t, dir, "mtls-client", nil, nil)
	st, tok := idp.TokenRequest(t, idp.MTLSClient(t, cert, key), "", form)
	if st != 200 || tok["access_token"] == nil {
		t.Fatalf("with the client certificate: %d %v", st, tok)
	}
	if r := idp.IntrospectFull(tok["access_token"].(string)); r["active"] != true || r["client_id"] != "mtls-client" || r["cnf"] != nil {
		t.Fatalf("introspection %v", r)
	}
	// the secret clients still work over TLS
	if st, tok := idp.TokenRequest(t, nil, "proxy-client", url.Values{"grant_type": {"client_credentials"}, "scope": {"api:read"}}); st != 200 {
		t.Fatalf("proxy-client over TLS: %d %v", st, tok)
	}

	otherCert, otherKey := issueClient(t, dir, "someone-else", nil, nil)
	otherCA, otherCAKey := newCA("other-ca")
	strayCert, strayKey := issueClient(t, t.TempDir(), "mtls-client", otherCA, otherCAKey)
	for name, c := range map[string]*http.Client{
		"no certificate":  idp.Client,
		"another subject": idp.MTLSClient(t, otherCert, otherKey),
		"another CA":      idp.MTLSClient(t, strayCert, strayKey),
	} {
		st, r := idp.TokenRequest(t, c, "", form)
		if st != 401 || r["error"] != "invalid_client" {
			t.Errorf("%s: %d %v, want 401 invalid_client", name, st, r)
		}
	}
}
