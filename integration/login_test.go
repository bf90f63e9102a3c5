package integration

// Helpers for delegated user tokens (authorization_code + PKCE, refresh
// tokens) and client authentication by private_key_jwt (RFC 7523) and
// tls_client_auth (RFC 8705) against the real IdP (idp_test.go).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// PlayLogin plays the user's browser: it GETs authorizeURL with a fresh
// cookie jar, follows each redirect by hand and, at the IdP's interaction
// page, logs in as account (granting the requested scopes) or, with abort,
// cancels. It returns the first redirect that leaves the IdP, unrequested:
// the redirect_uri with ?code=&state= (or ?error=access_denied&state=).
// authorizeURL may be on another server that redirects to the IdP.
func (i *IdP) PlayLogin(t *testing.T, authorizeURL, account string, abort bool) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: i.Client.Transport, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	idp, _ := url.Parse(i.URL)
	next, err := url.Parse(authorizeURL)
	if err != nil {
		t.Fatalf("PlayLogin: %v", err)
	}
	for hop := 0; hop < 20; hop++ {
		resp, err := c.Get(next.String())
		if err != nil {
			t.Fatalf("PlayLogin: GET %s: %v", next, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		loc, err := resp.Location()
		if resp.StatusCode/100 != 3 || err != nil {
			t.Fatalf("PlayLogin: GET %s: %s, no redirect: %s\nIdP log:\n%s", next, resp.Status, body, i.log.String())
		}
		if loc.Scheme != idp.Scheme || loc.Host != idp.Host {
			if next.Host == idp.Host {
				return loc // leaves the IdP
			}
			next = loc // not at the IdP yet
			continue
		}
		if strings.HasPrefix(loc.Path, "/interaction/") && strings.Count(loc.Path, "/") == 2 {
			if abort {
				loc.Path += "/abort"
			} else {
				loc.Path += "/login"
				loc.RawQuery = url.Values{"account": {account}}.Encode()
			}
		}
		next = loc
	}
	t.Fatalf("PlayLogin: too many redirects (last %s)", next)
	return nil
}

// newPKCE is a PKCE code_verifier and its S256 code_challenge (RFC 7636).
func newPKCE() (verifier, challenge string) {
	verifier = b64(randomBytes(32))
	sum := sha256.Sum256([]byte(verifier))
	return verifier, b64(sum[:])
}

// AuthorizeURL is the IdP's authorization URL for clientID with PKCE S256,
// state and prompt=consent (the query holds extra's values too).
func (i *IdP) AuthorizeURL(clientID, redirectURI, scope, state, challenge string, extra url.Values) string {
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {redirectURI},
		"scope": {scope}, "state": {state}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
		"prompt": {"consent"}}
	for k, v := range extra {
		q[k] = v
	}
	return i.URL + "/auth?" + q.Encode()
}

// TokenRequest POSTs form to the IdP's token endpoint, with HTTP Basic
// client authentication when basicID is not empty (secret canarySecret),
// using client (nil: i.Client). It returns the status and the JSON answer.
func (i *IdP) TokenRequest(t *testing.T, client *http.Client, basicID string, form url.Values) (int, map[string]any) {
	t.Helper()
	if client == nil {
		client = i.Client
	}
	req, _ := http.NewRequest("POST", i.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(basicID, canarySecret)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	r := map[string]any{}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("token request: %s: %q", resp.Status, b)
	}
	return resp.StatusCode, r
}

// MTLSClient is an HTTP client to the (TLS) IdP presenting the client
// certificate in certFile/keyFile (e.g. from issueClient).
func (i *IdP) MTLSClient(t *testing.T, certFile, keyFile string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(getPKI(t).ca)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
}

// mtlsSubjectDN is the RFC 4514 subject DN of a certificate from
// issueClient(t, dir, cn, ...): what IdPOptions.MTLSSubjectDN must be.
func mtlsSubjectDN(cn string) string { return "CN=" + cn + ",O=authgress-it" }

// newSigningKey is a fresh RSA 2048 ("RSA") or P-256 ECDSA ("EC") key.
func newSigningKey(t *testing.T, kty string) crypto.Signer {
	t.Helper()
	switch kty {
	case "RSA":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "EC":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t.Fatalf("newSigningKey: kty %q", kty)
	return nil
}

// publicJWK is the public JWK (RFC 7517) of an RSA or P-256 key, with kid
// (and alg, if not empty).
func publicJWK(key crypto.Signer, kid, alg string) map[string]any {
	jwk := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		jwk["alg"] = alg
	}
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		jwk["kty"], jwk["n"], jwk["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		ecdh, err := k.ECDH()
		if err != nil {
			panic(err)
		}
		pt := ecdh.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
		jwk["kty"], jwk["crv"], jwk["x"], jwk["y"] = "EC", "P-256", b64(pt[1:33]), b64(pt[33:65])
	default:
		panic(fmt.Sprintf("publicJWK: %T", k))
	}
	return jwk
}

// jwksJSON is a JWKS document of the keys: IdPOptions.JWKS.
func jwksJSON(keys ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// writePKCS8 writes the private key as a PKCS#8 PEM file ("PRIVATE KEY").
func writePKCS8(t *testing.T, path string, key crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(path, "PRIVATE KEY", der)
}

// clientAssertion is a private_key_jwt client assertion (RFC 7523) signed
// with key by alg (RS256, PS256 or ES256): iss = sub = clientID, aud,
// a fresh jti, iat now, exp in 2 minutes.
func clientAssertion(t *testing.T, key crypto.Signer, alg, kid, clientID, aud string) string {
	t.Helper()
	now := time.Now().Unix()
	return signJWT(t, key, alg, map[string]any{"alg": alg, "typ": "JWT", "kid": kid},
		map[string]any{"iss": clientID, "sub": clientID, "aud": aud, "jti": randomHex(16), "iat": now, "exp": now + 120})
}

func signJWT(t *testing.T, key crypto.Signer, alg string, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), sum[:])
		if err == nil { // JWS: R || S, 32 bytes each (RFC 7518 §3.4)
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	default:
		t.Fatalf("signJWT: alg %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// jwtClaims decodes (without verifying) the claims of a JWT.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.40q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
