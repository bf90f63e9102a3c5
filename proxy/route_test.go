package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/vault"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestCredentialSourcePrivateKeyJWT: a private_key_jwt credential with its
// own client_id and no vault gets a source that signs with the key from
// signing_key; a key that does not parse or fit alg fails the build naming
// credentials.<name>.signing_key; a delegated credential still builds.
func TestCredentialSourcePrivateKeyJWT(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "key.pem")
	badFile := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	_ = os.WriteFile(badFile, []byte("not a key\n"), 0o600)

	var form url.Values
	var hasAuth bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ = url.ParseQuery(string(b))
		_, hasAuth = r.Header["Authorization"]
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"at-route","token_type":"Bearer","expires_in":60}`)
	}))
	defer srv.Close()

	pk := func(file, alg string) *conf.Credential {
		return &conf.Credential{TokenURL: srv.URL + "/token", ClientAuth: conf.AuthPrivateKeyJWT, ClientID: "own-cid",
			SigningKey: conf.Secret{File: file, Set: true}, KeyID: "k1", Alg: alg, Grant: conf.GrantClientCredentials}
	}
	cfg := &conf.Config{Credentials: map[string]*conf.Credential{
		"pk":        pk(keyFile, "ES256"),
		"unparsed":  pk(badFile, "ES256"),
		"wrong_alg": pk(keyFile, "RS256"),
		"missing":   pk(filepath.Join(dir, "nope.pem"), "ES256"),
		"user": {Grant: conf.GrantAuthorizationCode, ClientAuth: conf.AuthNone, ClientID: "public-cid", TokenURL: srv.URL + "/token",
			AuthorizeURL: srv.URL + "/authorize", Scopes: []string{"openid"}},
	}}
	ctx := context.Background()
	profiles := tlsprofiles.NewSet()
	vaults := vault.Set{}

	key1, src, err := CredentialSource(ctx, cfg, "pk", []string{"a"}, vaults, profiles)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src(ctx)
	if err != nil || tok.Value != "at-route" {
		t.Fatalf("fetch: %v", err)
	}
	if hasAuth || form.Get("client_id") != "own-cid" || form.Has("client_secret") || form.Get("scope") != "a" {
		t.Fatalf("sent %v (Authorization: %v)", form, hasAuth)
	}
	parsed, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	if err := parsed.Claims(&key.PublicKey, &c); err != nil || c.Issuer != "own-cid" || c.Audience[0] != srv.URL+"/token" || parsed.Headers[0].KeyID != "k1" {
		t.Fatalf("assertion: %v %+v", err, c)
	}

	// The key depends on the method and the key id.
	cfg.Credentials["pk"].KeyID = "k2"
	key2, _, err := CredentialSource(ctx, cfg, "pk", []string{"a"}, vaults, profiles)
	if err != nil || key2 == key1 {
		t.Fatalf("the cache key does not cover key_id (%v)", err)
	}

	for name, want := range map[string]string{"unparsed": "not PEM", "wrong_alg": "RS256", "missing": "does not exist"} {
		_, _, err := CredentialSource(ctx, cfg, name, nil, vaults, profiles)
		if err == nil || !strings.Contains(err.Error(), "credentials."+name+".signing_key") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, src, err := CredentialSource(ctx, cfg, "user", nil, vaults, profiles); err != nil || src == nil {
		t.Fatalf("delegated credential: %v", err)
	}
}
