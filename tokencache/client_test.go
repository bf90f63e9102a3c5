package tokencache

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/vault"
)

func TestBasicAuthVector(t *testing.T) {
	// RFC 6749 §2.3.1 worked example (AppAuth-Android #337): id and secret
	// are form-urlencoded before base64.
	got := basicAuth("1PpG/Q 1", "z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw=")
	want := "Basic MVBwRyUyRlErMTp6JTJGdFo5VndGWnFBcG1JUSUyQlpIMUk1cExrJTJGdUI0dWQlM0FYMiUyRjhiTCUyQndmRlR0MXJGdyUzRA=="
	if got != want {
		t.Fatalf("got %s", got)
	}
}

type seen struct {
	auth string
	form url.Values
}

func server(t *testing.T, status int, ctype, body string, s *seen) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s != nil {
			s.auth = r.Header.Get("Authorization")
			b, _ := io.ReadAll(r.Body)
			s.form, _ = url.ParseQuery(string(b))
		}
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func fetch(t *testing.T, srv *httptest.Server, r Request) (*Token, error) {
	t.Helper()
	r.TokenURL = srv.URL + "/token"
	if r.DefaultTTL == 0 {
		r.DefaultTTL = 5 * time.Minute
	}
	return NewClient(http.DefaultTransport).Fetch(context.Background(), r)
}

func TestFetchSendStyles(t *testing.T) {
	const ok = `{"access_token":"at-1","token_type":"bearer","expires_in":3600,"scope":"a b"}`
	var s seen
	srv := server(t, 200, "application/json", ok, &s)
	tok, err := fetch(t, srv, Request{ClientID: "cid", ClientSecret: "p+ss word", Scopes: []string{"a", "b"}, Params: [][2]string{{"audience", "https://api"}, {"resource", "r1"}}, Send: "basic"})
	if err != nil || tok.Value != "at-1" || tok.Authorization() != "Bearer at-1" {
		t.Fatalf("basic: %v %v", tok, err)
	}
	if s.auth != basicAuth("cid", "p+ss word") || s.form.Get("client_secret") != "" {
		t.Fatalf("basic style sent auth=%q form=%v", s.auth, s.form)
	}
	if s.form.Get("grant_type") != "client_credentials" || s.form.Get("scope") != "a b" || s.form.Get("audience") != "https://api" || s.form.Get("resource") != "r1" {
		t.Fatalf("form = %v", s.form)
	}
	if d := tok.ExpiresAt.Sub(tok.FetchedAt); d != time.Hour {
		t.Fatalf("lifetime %v", d)
	}
	if _, err := fetch(t, srv, Request{ClientID: "cid", ClientSecret: "sec", Send: "body"}); err != nil {
		t.Fatal(err)
	}
	if s.auth != "" || s.form.Get("client_id") != "cid" || s.form.Get("client_secret") != "sec" {
		t.Fatalf("body style sent auth=%q form=%v", s.auth, s.form)
	}
}

func TestFetchResponses(t *testing.T) {
	cases := []struct {
		name, ctype, body string
		status            int
		kind              Kind // -1: success
		code              string
		lifetime          time.Duration
	}{
		{"string expires_in", "application/json", `{"access_token":"x","token_type":"Bearer","expires_in":"120"}`, 200, -1, "", 2 * time.Minute},
		{"missing expires_in", "application/json", `{"access_token":"x","token_type":"Bearer"}`, 200, -1, "", 5 * time.Minute},
		{"zero expires_in", "application/json", `{"access_token":"x","token_type":"Bearer","expires_in":0}`, 200, -1, "", 5 * time.Minute},
		{"sub-nanosecond expires_in", "application/json", `{"access_token":"x","token_type":"Bearer","expires_in":"1e-10"}`, 200, -1, "", 5 * time.Minute},
		{"space in access_token", "application/json", `{"access_token":"a b","token_type":"Bearer"}`, 200, Unavailable, "", 0},
		{"newline in access_token", "application/json", `{"access_token":"ab\n","token_type":"Bearer"}`, 200, Unavailable, "", 0},
		{"form encoded", "application/x-www-form-urlencoded", `access_token=x&token_type=bearer&expires_in=60`, 200, -1, "", time.Minute},
		{"dpop", "application/json", `{"access_token":"x","token_type":"DPoP","expires_in":60}`, 200, UnsupportedType, "", 0},
		{"200 with error", "application/json", `{"error":"invalid_scope","error_description":"nope"}`, 200, Rejected, "invalid_scope", 0},
		{"invalid_client", "application/json", `{"error":"invalid_client"}`, 401, Rejected, "invalid_client", 0},
		{"server error", "text/html", `<html>oops</html>`, 503, Unavailable, "", 0},
		{"no access_token", "application/json", `{"token_type":"Bearer"}`, 200, Unavailable, "", 0},
		{"malformed", "application/json", `{"access_token":`, 200, Unavailable, "", 0},
		{"bad expires_in", "application/json", `{"access_token":"x","expires_in":"soon"}`, 200, Unavailable, "", 0},
		{"redirect", "", "", 302, Unavailable, "", 0},
		{"too large", "application/json", `{"access_token":"` + strings.Repeat("a", MaxBody) + `"}`, 200, Unavailable, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := server(t, tc.status, tc.ctype, tc.body, nil)
			tok, err := fetch(t, srv, Request{ClientID: "c", ClientSecret: "s"})
			if tc.kind == -1 {
				if err != nil {
					t.Fatal(err)
				}
				if d := tok.ExpiresAt.Sub(tok.FetchedAt); d != tc.lifetime {
					t.Fatalf("lifetime = %v, want %v", d, tc.lifetime)
				}
				return
			}
			var te *Error
			if !errors.As(err, &te) || te.Kind != tc.kind || te.Code != tc.code {
				t.Fatalf("err = %v (%#v), want kind %v code %q", err, te, tc.kind, tc.code)
			}
			if strings.Contains(err.Error(), "oops") || strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("error leaks the body or an address: %v", err)
			}
		})
	}
}

func TestFetchUnreachable(t *testing.T) {
	srv := server(t, 200, "", "", nil)
	srv.Close()
	_, err := fetch(t, srv, Request{ClientID: "c", ClientSecret: "s"})
	var te *Error
	if !errors.As(err, &te) || te.Kind != Unavailable || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("err = %v", err)
	}
}

func TestJWTExpiryShortensLifetime(t *testing.T) {
	now := time.Unix(1_000_000, 500_000_000)
	payload := fmt.Sprintf(`{"exp":%d}`, now.Unix()+3)
	jwt := "eyJhbGciOiJSUzI1NiJ9." + b64(payload) + ".sig"
	tok := &Token{Value: jwt}
	tok.schedule(now, 4*time.Second, 0)
	if !tok.ExpiresAt.Equal(time.Unix(now.Unix()+3, 0)) {
		t.Fatalf("ExpiresAt = %v", tok.ExpiresAt)
	}
	if !tok.RefreshAt.Before(tok.UsableTo) || !tok.UsableTo.Before(tok.ExpiresAt) {
		t.Fatalf("order: refresh %v usable %v expires %v", tok.RefreshAt, tok.UsableTo, tok.ExpiresAt)
	}
}

func httpHandler(f func(auth string) (int, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := f(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func TestJSONErrorLabelledTextPlain(t *testing.T) {
	srv := server(t, 401, "text/plain; charset=utf-8", `{"error":"invalid_client","error_description":"bad secret"}`, nil)
	_, err := fetch(t, srv, Request{ClientID: "c", ClientSecret: "s"})
	var te *Error
	if !errors.As(err, &te) || te.Code != "invalid_client" || te.Description != "bad secret" {
		t.Fatalf("err = %v", err)
	}
}

// TestNoTokenRequestWithoutAClientID: an env vault with only
// X_CLIENT_SECRET set used to send an empty client id (the IdP answered
// invalid_client). The fetch now fails at the vault, naming the variable,
// and nothing is sent.
func TestNoTokenRequestWithoutAClientID(t *testing.T) {
	t.Setenv("AGT_HALF_CLIENT_SECRET", "s3cret-value")
	requests := 0
	srv := server(t, 200, "application/json", `{"access_token":"x","token_type":"Bearer"}`, nil)
	srv.Config.Handler = httpHandler(func(string) (int, string) {
		requests++
		return 200, `{"access_token":"x","token_type":"Bearer"}`
	})
	secrets := vault.NewCached("environment", vault.NewEnv("environment"), time.Minute, 0, time.Second)
	src := ClientCredentials(NewClient(srv.Client().Transport), secrets, "agt_half", Request{TokenURL: srv.URL, DefaultTTL: time.Minute})
	_, err := src(context.Background())
	if !errors.Is(err, vault.ErrNotFound) || !strings.Contains(err.Error(), "environment variable AGT_HALF_CLIENT_ID is not set") || requests != 0 {
		t.Fatalf("err %v, %d token requests", err, requests)
	}
}

// TestEchoedSecretIsRedacted: a token endpoint that echoes the client secret
// in its error (as it was sent: raw, form-encoded in the body, or inside the
// Basic credentials) used to get it into the error, and so into the client's
// error body, the log, /status and CLI output.
func TestEchoedSecretIsRedacted(t *testing.T) {
	const secret = "canary-Secret+/=echo"
	forms := []string{secret, url.QueryEscape(secret), strings.TrimPrefix(basicAuth("cid-echo", secret), "Basic ")}
	for _, send := range []string{"basic", "body"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			form, _ := url.ParseQuery(string(b))
			got := form.Get("client_secret")
			if send == "basic" {
				raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.Header.Get("Authorization"), "Basic "))
				_, enc, _ := strings.Cut(string(raw), ":")
				got, _ = url.QueryUnescape(enc)
			}
			if got != secret {
				t.Errorf("%s: the endpoint got secret %q", send, got)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"error":             "invalid_client:" + secret,
				"error_description": fmt.Sprintf("client cid-echo: secret %s is wrong; auth %q body %q", got, r.Header.Get("Authorization"), b),
			})
		}))
		_, err := NewClient(srv.Client().Transport).Fetch(context.Background(), Request{TokenURL: srv.URL, ClientID: "cid-echo", ClientSecret: secret, Send: send, DefaultTTL: time.Minute})
		srv.Close()
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "cid-echo: secret [redacted] is wrong") {
			t.Fatalf("%s: err = %v", send, err)
		}
		for _, f := range forms {
			if strings.Contains(err.Error(), f) || strings.Contains(te.Code, f) {
				t.Errorf("%s: the error shows the secret (%q): %v", send, f, err)
			}
		}
	}
}

// TestEchoedTokenIsRedacted: a token the process holds is redacted from what
// the endpoint says later.
func TestEchoedTokenIsRedacted(t *testing.T) {
	const token = "at-canary-token-0123456789"
	calls := 0
	srv := httptest.NewServer(httpHandler(func(string) (int, string) {
		calls++
		if calls == 1 {
			return 200, `{"access_token":"` + token + `","token_type":"Bearer","expires_in":60}`
		}
		return 400, `{"error":"invalid_request","error_description":"token ` + token + ` is still valid"}`
	}))
	defer srv.Close()
	c := NewClient(srv.Client().Transport)
	r := Request{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s", DefaultTTL: time.Minute}
	if tok, err := c.Fetch(context.Background(), r); err != nil || tok.Value != token {
		t.Fatalf("first fetch: %v", err)
	}
	_, err := c.Fetch(context.Background(), r)
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "token [redacted] is still valid") {
		t.Fatalf("err = %v", err)
	}
}

// recorder is a token endpoint that records what it received and answers
// with body.
type recorder struct {
	srv    *httptest.Server
	auth   string
	hasHdr bool
	form   url.Values
	body   string
}

func newRecorder(t *testing.T, status int, body string) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, rec.hasHdr = r.Header["Authorization"]
		rec.auth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		rec.body = string(b)
		rec.form, _ = url.ParseQuery(rec.body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// TestFetchGrantsAndMethods: each grant with each client authentication
// method sends exactly its fields, and only its own.
func TestFetchGrantsAndMethods(t *testing.T) {
	testKeys(t)
	rsaSigner, err := NewSigner(pkcs8(t, rsaKey), "rk", "PS256")
	if err != nil {
		t.Fatal(err)
	}
	ecSigner, err := NewSigner(sec1(t, ecKey), "", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	grants := []struct {
		name string
		set  func(*Request)
		want map[string]string // form fields; "" = must be absent
	}{
		{"client_credentials default", func(r *Request) {}, map[string]string{
			"grant_type": "client_credentials", "scope": "a b", "code": "", "refresh_token": "", "code_verifier": "", "redirect_uri": ""}},
		{"client_credentials", func(r *Request) { r.Grant = "client_credentials" }, map[string]string{
			"grant_type": "client_credentials", "scope": "a b"}},
		{"authorization_code", func(r *Request) {
			r.Grant, r.Code, r.CodeVerifier, r.RedirectURI = "authorization_code", "code-123456", "verifier-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "https://broker.example/oauth-callback"
		}, map[string]string{
			"grant_type": "authorization_code", "code": "code-123456", "code_verifier": "verifier-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
			"redirect_uri": "https://broker.example/oauth-callback", "scope": "", "refresh_token": ""}},
		{"refresh_token with scopes", func(r *Request) { r.Grant, r.RefreshToken = "refresh_token", "rt-abcdef-123456" }, map[string]string{
			"grant_type": "refresh_token", "refresh_token": "rt-abcdef-123456", "scope": "a b", "code": ""}},
		{"refresh_token without scopes", func(r *Request) { r.Grant, r.RefreshToken, r.Scopes = "refresh_token", "rt-abcdef-123456", nil }, map[string]string{
			"grant_type": "refresh_token", "refresh_token": "rt-abcdef-123456", "scope": ""}},
	}
	methods := []struct {
		name  string
		set   func(*Request)
		basic bool              // Authorization: Basic cid:sec
		want  map[string]string // "" = must be absent
		pub   any               // verify client_assertion with it
		alg   string
	}{
		{"default", func(r *Request) {}, true, map[string]string{"client_id": "", "client_secret": "", "client_assertion": ""}, nil, ""},
		{"send basic", func(r *Request) { r.Send = "basic" }, true, map[string]string{"client_id": "", "client_secret": ""}, nil, ""},
		{"client_secret_basic", func(r *Request) { r.ClientAuth = "client_secret_basic" }, true, map[string]string{"client_id": "", "client_secret": ""}, nil, ""},
		{"send body", func(r *Request) { r.Send = "body" }, false, map[string]string{"client_id": "cid", "client_secret": "sec-123456"}, nil, ""},
		{"client_secret_post", func(r *Request) { r.ClientAuth = "client_secret_post" }, false, map[string]string{"client_id": "cid", "client_secret": "sec-123456", "client_assertion": ""}, nil, ""},
		{"private_key_jwt PS256", func(r *Request) { r.ClientAuth, r.Signer, r.ClientSecret = "private_key_jwt", rsaSigner, "" }, false,
			map[string]string{"client_id": "cid", "client_secret": "", "client_assertion_type": AssertionType}, &rsaKey.PublicKey, "PS256"},
		{"private_key_jwt ES256", func(r *Request) { r.ClientAuth, r.Signer, r.ClientSecret = "private_key_jwt", ecSigner, "" }, false,
			map[string]string{"client_id": "cid", "client_secret": "", "client_assertion_type": AssertionType}, &ecKey.PublicKey, "ES256"},
		{"tls_client_auth", func(r *Request) { r.ClientAuth, r.ClientSecret = "tls_client_auth", "" }, false,
			map[string]string{"client_id": "cid", "client_secret": "", "client_assertion": "", "client_assertion_type": ""}, nil, ""},
		{"none", func(r *Request) { r.ClientAuth, r.ClientSecret = "none", "" }, false,
			map[string]string{"client_id": "cid", "client_secret": "", "client_assertion": ""}, nil, ""},
	}
	rec := newRecorder(t, 200, `{"access_token":"at-grants","token_type":"Bearer","expires_in":60,"refresh_token":"rt-new-000111"}`)
	for _, g := range grants {
		for _, m := range methods {
			t.Run(g.name+"/"+m.name, func(t *testing.T) {
				r := Request{TokenURL: rec.srv.URL + "/token", ClientID: "cid", ClientSecret: "sec-123456", Scopes: []string{"a", "b"},
					Params: [][2]string{{"resource", "https://api"}}, DefaultTTL: time.Minute}
				g.set(&r)
				m.set(&r)
				tok, err := NewClient(rec.srv.Client().Transport).Fetch(context.Background(), r)
				if err != nil || tok.Value != "at-grants" || tok.Refresh != "rt-new-000111" {
					t.Fatalf("fetch: %v %v", tok, err)
				}
				if m.basic {
					if rec.auth != basicAuth("cid", "sec-123456") {
						t.Fatalf("Authorization = %q", rec.auth)
					}
				} else if rec.hasHdr {
					t.Fatalf("Authorization sent: %q", rec.auth)
				}
				for _, want := range []map[string]string{g.want, m.want, {"resource": "https://api"}} {
					for k, v := range want {
						if got, ok := rec.form[k]; v == "" && ok || v != "" && (len(got) != 1 || got[0] != v) {
							t.Errorf("form %s = %q, want %q (body %s)", k, got, v, rec.body)
						}
					}
				}
				if m.pub == nil {
					if _, ok := rec.form["client_assertion"]; ok {
						t.Fatal("client_assertion sent")
					}
					return
				}
				c, h := verifyAssertion(t, rec.form.Get("client_assertion"), m.alg, m.pub)
				if c.Issuer != "cid" || c.Subject != "cid" || len(c.Audience) != 1 || c.Audience[0] != r.TokenURL || c.ID == "" || h.KeyID != r.Signer.KeyID {
					t.Fatalf("assertion claims %+v header %+v", c, h)
				}
				if d := c.Expiry.Time().Sub(time.Now()); d <= 0 || d > 5*time.Minute {
					t.Fatalf("assertion expires in %v", d)
				}
			})
		}
	}
}

func TestFetchBuildErrors(t *testing.T) {
	rec := newRecorder(t, 200, `{"access_token":"x"}`)
	for name, r := range map[string]Request{
		"unknown grant":                {Grant: "password"},
		"unknown method":               {ClientAuth: "client_secret_jwt"},
		"private_key_jwt without key":  {ClientAuth: "private_key_jwt"},
		"authorization_code sans code": {Grant: "authorization_code"},
		"refresh_token sans token":     {Grant: "refresh_token"},
	} {
		rec.form = nil
		r.TokenURL, r.ClientID = rec.srv.URL, "cid"
		_, err := NewClient(rec.srv.Client().Transport).Fetch(context.Background(), r)
		var te *Error
		if !errors.As(err, &te) || te.Kind != Unavailable || rec.form != nil {
			t.Errorf("%s: err %v, sent %v", name, err, rec.form)
		}
	}
}

func TestFetchRefreshToken(t *testing.T) {
	cases := []struct {
		name, ctype, body string
		refresh           string
		refreshTTL        time.Duration // 0: unknown
	}{
		{"json number", "application/json", `{"access_token":"at","token_type":"Bearer","expires_in":60,"refresh_token":"rt-json-1","refresh_expires_in":1800}`, "rt-json-1", 30 * time.Minute},
		{"json string", "application/json", `{"access_token":"at","expires_in":60,"refresh_token":"rt-json-2","refresh_expires_in":"90"}`, "rt-json-2", 90 * time.Second},
		{"keycloak offline 0", "application/json", `{"access_token":"at","refresh_token":"rt-json-3","refresh_expires_in":0}`, "rt-json-3", 0},
		{"invalid refresh_expires_in", "application/json", `{"access_token":"at","refresh_token":"rt-json-4","refresh_expires_in":"later"}`, "rt-json-4", 0},
		{"none", "application/json", `{"access_token":"at","refresh_expires_in":60}`, "", 0},
		{"form", "application/x-www-form-urlencoded", `access_token=at&token_type=bearer&refresh_token=rt-form-5&refresh_expires_in=120`, "rt-form-5", 2 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := server(t, 200, tc.ctype, tc.body, nil)
			tok, err := fetch(t, srv, Request{ClientID: "c", ClientSecret: "s"})
			if err != nil {
				t.Fatal(err)
			}
			if tok.Refresh != tc.refresh {
				t.Fatalf("Refresh = %q, want %q", tok.Refresh, tc.refresh)
			}
			var got time.Duration
			if !tok.RefreshExpiresAt.IsZero() {
				got = tok.RefreshExpiresAt.Sub(tok.FetchedAt)
			}
			if got != tc.refreshTTL {
				t.Fatalf("refresh lifetime %v, want %v", got, tc.refreshTTL)
			}
			if tc.refresh != "" {
				for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
					if strings.Contains(fmt.Sprintf(f, tok), tc.refresh) {
						t.Fatalf("%s shows the refresh token", f)
					}
				}
			}
		})
	}
}

// TestRefreshTokenNeverInErrors: a refresh token the endpoint echoes (the one
// sent, raw or form-encoded, or one it issued earlier) is redacted.
func TestRefreshTokenNeverInErrors(t *testing.T) {
	const sent = "rt-canary-sent+/=0123456789"
	const issued = "rt-canary-issued-0123456789"
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if calls == 1 {
			_, _ = io.WriteString(w, `{"access_token":"at-x","token_type":"Bearer","refresh_token":"`+issued+`"}`)
			return
		}
		form, _ := url.ParseQuery(string(b))
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error":             "invalid_grant",
			"error_description": fmt.Sprintf("refresh token %s revoked; body %s; earlier %s", form.Get("refresh_token"), b, issued),
		})
	}))
	defer srv.Close()
	c := NewClient(srv.Client().Transport)
	r := Request{TokenURL: srv.URL, ClientID: "c", ClientAuth: "none", DefaultTTL: time.Minute}
	if tok, err := c.Fetch(context.Background(), r); err != nil || tok.Refresh != issued {
		t.Fatalf("first: %v", err)
	}
	r.Grant, r.RefreshToken = "refresh_token", sent
	_, err := c.Fetch(context.Background(), r)
	if !IsInvalidGrant(err) || !strings.Contains(err.Error(), "refresh token [redacted] revoked") {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{sent, url.QueryEscape(sent), issued} {
		if strings.Contains(err.Error(), f) || strings.Contains(fmt.Sprintf("%+v", err), f) {
			t.Fatalf("error shows %q: %v", f, err)
		}
	}
}

func TestIsInvalidGrant(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("invalid_grant"), false},
		{&Error{Kind: Rejected, Code: "invalid_grant"}, true},
		{&Error{Kind: Rejected, Code: "invalid_client"}, false},
		{&FetchError{Err: &Error{Kind: Rejected, Code: "invalid_grant"}}, true},
		{fmt.Errorf("wrapped: %w", &Error{Code: "invalid_grant"}), true},
	} {
		if got := IsInvalidGrant(tc.err); got != tc.want {
			t.Errorf("IsInvalidGrant(%v) = %v", tc.err, got)
		}
	}
	srv := server(t, 400, "application/json", `{"error":"invalid_grant","error_description":"AADSTS70008: expired"}`, nil)
	_, err := fetch(t, srv, Request{Grant: "authorization_code", Code: "c0de-xyz", ClientID: "c", ClientSecret: "s"})
	var te *Error
	if !IsInvalidGrant(err) || !errors.As(err, &te) || te.Kind != Rejected {
		t.Fatalf("err = %v", err)
	}
}
