package tokencache

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var (
	keyOnce          sync.Once
	rsaKey, rsaSmall *rsa.PrivateKey
	ecKey, ecP384    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsaSmall, _ = rsa.GenerateKey(rand.Reader, 1024)
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ecP384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	})
}

func pemOf(t testing.TB, typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PRIVATE KEY", der)
}

func sec1(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "EC PRIVATE KEY", der)
}

// verifyAssertion checks the signature with pub and returns the claims and header.
func verifyAssertion(t testing.TB, tok string, alg string, pub any) (jwt.Claims, jose.Header) {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("parse assertion: %v", err)
	}
	var c jwt.Claims
	if err := parsed.Claims(pub, &c); err != nil {
		t.Fatalf("verify assertion: %v", err)
	}
	return c, parsed.Headers[0]
}

func TestSignerAssertion(t *testing.T) {
	testKeys(t)
	cases := []struct {
		name, alg, kid string
		pem            []byte
		pub            any
	}{
		{"RS256 PKCS#8", "RS256", "k1", pkcs8(t, rsaKey), &rsaKey.PublicKey},
		{"RS256 PKCS#1 no kid", "RS256", "", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), &rsaKey.PublicKey},
		{"PS256", "PS256", "k2", pkcs8(t, rsaKey), &rsaKey.PublicKey},
		{"ES256 SEC1", "ES256", "k3", sec1(t, ecKey), &ecKey.PublicKey},
		{"ES256 PKCS#8 after a certificate block", "ES256", "k4", append(pemOf(t, "CERTIFICATE", []byte{1, 2, 3}), pkcs8(t, ecKey)...), &ecKey.PublicKey},
	}
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSigner(tc.pem, tc.kid, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := s.Assertion("client-1", "https://idp.example/token", now)
			if err != nil {
				t.Fatal(err)
			}
			c, h := verifyAssertion(t, a, tc.alg, tc.pub)
			if h.Algorithm != tc.alg || h.KeyID != tc.kid || h.ExtraHeaders[jose.HeaderType] != "JWT" {
				t.Fatalf("header = %+v", h)
			}
			if c.Issuer != "client-1" || c.Subject != "client-1" || len(c.Audience) != 1 || c.Audience[0] != "https://idp.example/token" {
				t.Fatalf("claims = %+v", c)
			}
			if !c.IssuedAt.Time().Equal(now) || !c.NotBefore.Time().Equal(now) || !c.Expiry.Time().Equal(now.Add(2*time.Minute)) {
				t.Fatalf("times iat=%v nbf=%v exp=%v", c.IssuedAt.Time(), c.NotBefore.Time(), c.Expiry.Time())
			}
			if d := c.Expiry.Time().Sub(c.IssuedAt.Time()); d <= 0 || d > 5*time.Minute {
				t.Fatalf("lifetime %v", d)
			}
			if len(c.ID) < 22 { // 128 bits in base32/base64 is at least 22 characters
				t.Fatalf("jti %q is short", c.ID)
			}
			// The claims validate for the token endpoint as audience.
			if err := c.Validate(jwt.Expected{Issuer: "client-1", Subject: "client-1", AnyAudience: jwt.Audience{"https://idp.example/token"}, Time: now.Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
			// Another key does not verify it.
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			parsed, _ := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tc.alg)})
			var cc jwt.Claims
			if parsed.Claims(&other.PublicKey, &cc) == nil {
				t.Fatal("verified with another key")
			}
		})
	}
}

func TestSignerJTIUnique(t *testing.T) {
	testKeys(t)
	s, err := NewSigner(sec1(t, ecKey), "", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	seen := map[string]bool{}
	for range 500 {
		a, err := s.Assertion("c", "https://idp/token", now)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := verifyAssertion(t, a, "ES256", &ecKey.PublicKey)
		if seen[c.ID] {
			t.Fatalf("jti %q repeated", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestSignerErrors(t *testing.T) {
	testKeys(t)
	cases := []struct {
		name, alg string
		pem       []byte
		want      []string
	}{
		{"ES256 with RSA", "ES256", pkcs8(t, rsaKey), []string{"ES256", "EC P-256", "RSA 2048-bit"}},
		{"RS256 with EC", "RS256", sec1(t, ecKey), []string{"RS256", "RSA", "EC P-256"}},
		{"PS256 with EC", "PS256", pkcs8(t, ecKey), []string{"PS256", "RSA", "EC P-256"}},
		{"ES256 with P-384", "ES256", sec1(t, ecP384), []string{"ES256", "P-256", "P-384"}},
		{"RS256 with 1024 bits", "RS256", pkcs8(t, rsaSmall), []string{"2048", "RSA 1024-bit"}},
		{"unknown alg", "HS256", pkcs8(t, rsaKey), []string{"HS256"}},
		{"not PEM", "RS256", []byte("just some text"), []string{"not PEM"}},
		{"no key block", "RS256", pemOf(t, "CERTIFICATE", []byte{1}), []string{"no private key"}},
		{"encrypted", "RS256", pemOf(t, "ENCRYPTED PRIVATE KEY", []byte{1}), []string{"encrypted"}},
		{"garbage key", "RS256", pemOf(t, "PRIVATE KEY", []byte("garbage-bytes")), []string{"does not parse"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSigner(tc.pem, "k", tc.alg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not name %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "garbage-bytes") || strings.Contains(err.Error(), "just some") {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

func TestSignerRedacted(t *testing.T) {
	testKeys(t)
	s, err := NewSigner(pkcs8(t, rsaKey), "k1", "RS256")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, s)
		if out != "tokencache.Signer{[redacted]}" {
			t.Fatalf("%s prints %q", f, out)
		}
	}
	if out := fmt.Sprintf("%+v", Request{Signer: s}); strings.Contains(out, fmt.Sprint(rsaKey.D)) {
		t.Fatal("a Request prints the key")
	}
}
