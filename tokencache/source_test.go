package tokencache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/vault"
)

// countingSecrets is a vault that counts its reads.
type countingSecrets struct {
	sec         vault.Secret
	err         error
	gets        int
	invalidated int
}

func (c *countingSecrets) Get(context.Context, string) (vault.Secret, error) {
	c.gets++
	return c.sec, c.err
}
func (c *countingSecrets) Invalidate(string) { c.invalidated++ }

func TestClientIdentity(t *testing.T) {
	ctx := context.Background()
	v := func() *countingSecrets {
		return &countingSecrets{sec: vault.Secret{ClientID: "vault-cid", ClientSecret: "vault-secret"}}
	}
	cases := []struct {
		name             string
		secrets          *countingSecrets
		vaultID          string
		req              Request
		wantID, wantSec  string
		wantErr          string
		wantVaultReadsOK bool
	}{
		{"client_id from the credential, private_key_jwt", nil, "", Request{ClientID: "own-cid", ClientAuth: "private_key_jwt"}, "own-cid", "", "", false},
		{"client_id from the credential, none", nil, "", Request{ClientID: "own-cid", ClientAuth: "none"}, "own-cid", "", "", false},
		{"client_id from the credential, tls_client_auth", v(), "", Request{ClientID: "own-cid", ClientAuth: "tls_client_auth"}, "own-cid", "", "", false},
		{"no client id at all", nil, "", Request{ClientAuth: "none"}, "", "", "no client id", false},
		{"secret method without a vault", nil, "", Request{ClientID: "own-cid"}, "", "", "needs a client secret", false},
		{"basic from the vault", v(), "id", Request{}, "vault-cid", "vault-secret", "", true},
		{"post from the vault", v(), "id", Request{Send: "body"}, "vault-cid", "vault-secret", "", true},
		{"private_key_jwt takes only the id from the vault", v(), "id", Request{ClientAuth: "private_key_jwt", ClientSecret: "stale"}, "vault-cid", "", "", true},
		{"tls_client_auth takes only the id from the vault", v(), "id", Request{ClientAuth: "tls_client_auth"}, "vault-cid", "", "", true},
		{"none with an id-only vault entry", &countingSecrets{sec: vault.Secret{ClientID: "vault-cid"}}, "id", Request{ClientAuth: "none"}, "vault-cid", "", "", true},
		{"vault error", &countingSecrets{err: errors.New("vault down")}, "id", Request{}, "", "", "vault down", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s Secrets
			if tc.secrets != nil {
				s = tc.secrets
			}
			got, err := ClientIdentity(ctx, s, tc.vaultID, tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil || got.ClientID != tc.wantID || got.ClientSecret != tc.wantSec {
				t.Fatalf("got id %q secret %q err %v", got.ClientID, got.ClientSecret, err)
			}
			if tc.secrets != nil && (tc.secrets.gets > 0) != tc.wantVaultReadsOK {
				t.Fatalf("vault reads %d", tc.secrets.gets)
			}
		})
	}
	if _, err := ClientIdentity(ctx, nil, "id", Request{}); err == nil {
		t.Fatal("a vault id without a vault")
	}
}

// TestNoSecretMethodsDoNotRetryInvalidClient: invalid_client with a method
// that sends no shared secret is not a rotation: one request, no re-read.
func TestNoSecretMethodsDoNotRetryInvalidClient(t *testing.T) {
	rec := newRecorder(t, 401, `{"error":"invalid_client"}`)
	for _, method := range []string{"tls_client_auth", "none"} {
		sec := &countingSecrets{sec: vault.Secret{ClientID: "vault-cid", ClientSecret: "unused-secret"}}
		src := ClientCredentials(NewClient(rec.srv.Client().Transport), sec, "id", Request{TokenURL: rec.srv.URL, ClientAuth: method, DefaultTTL: time.Minute})
		_, err := src(context.Background())
		var te *Error
		if !errors.As(err, &te) || te.Code != "invalid_client" || sec.gets != 1 || sec.invalidated != 0 {
			t.Fatalf("%s: err %v gets %d invalidated %d", method, err, sec.gets, sec.invalidated)
		}
		if rec.form.Get("client_id") != "vault-cid" || rec.form.Has("client_secret") || rec.hasHdr {
			t.Fatalf("%s: sent %v auth %q", method, rec.form, rec.auth)
		}
	}
}

// TestClientCredentialsWithOwnClientID: private_key_jwt with client_id on the
// credential and no vault.
func TestClientCredentialsWithOwnClientID(t *testing.T) {
	testKeys(t)
	signer, err := NewSigner(sec1(t, ecKey), "k1", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, 200, `{"access_token":"at-pkjwt","token_type":"Bearer","expires_in":60}`)
	src := ClientCredentials(NewClient(rec.srv.Client().Transport), nil, "", Request{TokenURL: rec.srv.URL + "/t", ClientID: "own-cid", ClientAuth: "private_key_jwt", Signer: signer, DefaultTTL: time.Minute})
	tok, err := src(context.Background())
	if err != nil || tok.Value != "at-pkjwt" {
		t.Fatalf("tok %v err %v", tok, err)
	}
	c, _ := verifyAssertion(t, rec.form.Get("client_assertion"), "ES256", &ecKey.PublicKey)
	if c.Issuer != "own-cid" || c.Audience[0] != rec.srv.URL+"/t" || rec.form.Get("client_id") != "own-cid" || rec.hasHdr {
		t.Fatalf("claims %+v form %v", c, rec.form)
	}
}
