package tokencache

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/safetext"
)

// fuzzCanary is a secret the process knows: no error may quote it.
const fuzzCanary = "fuzz-canary-secret"

// FuzzParseResponse: whatever a token endpoint answers, parsing does not
// panic; an accepted token has a value that can go into an Authorization
// header, is a Bearer token and has a positive lifetime with its refresh
// point inside it; a refusal is an *Error whose text has no control
// characters and no known secret.
func FuzzParseResponse(f *testing.F) {
	seeds := []struct {
		ctype  string
		status int
		body   string
	}{
		{"application/json", 200, `{"access_token":"at-1","token_type":"bearer","expires_in":3600,"scope":"a b"}`},
		{"application/json", 200, `{"access_token":"x","token_type":"Bearer","expires_in":"120"}`},
		{"application/json", 200, `{"access_token":"x","token_type":"Bearer"}`},
		{"application/json", 200, `{"access_token":"x","token_type":"Bearer","expires_in":0}`},
		{"application/json", 200, `{"access_token":"x","token_type":"Bearer","expires_in":null}`},
		{"application/json", 200, `{"access_token":"x","token_type":"Bearer","expires_in":1e-3}`},
		{"application/json", 200, `{"access_token":"x","token_type":"Bearer","expires_in":"1e-10"}`},
		{"application/x-www-form-urlencoded", 200, `access_token=x&token_type=bearer&expires_in=60`},
		{"text/plain", 200, `access_token=x&token_type=bearer&expires_in=60&scope=a+b`},
		{"text/plain; charset=utf-8", 401, `{"error":"invalid_client","error_description":"bad secret ` + fuzzCanary + `"}`},
		{"application/json", 200, `{"access_token":"x","token_type":"DPoP","expires_in":60}`},
		{"application/json", 200, `{"error":"invalid_scope","error_description":"nope"}`},
		{"application/json", 400, `{"error":"invalid_request","error_description":"a\u0000b\nc` + fuzzCanary + `"}`},
		{"text/html", 503, `<html>oops</html>`},
		{"application/json", 200, `{"token_type":"Bearer"}`},
		{"application/json", 200, `{"access_token":`},
		{"application/json", 200, `{"access_token":"x","expires_in":"soon"}`},
		{"", 302, ""},
		{"application/json", 200, `{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMzB9.sig","token_type":"Bearer","expires_in":3600}`},
		{"application/json", 200, `{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE2OTk5OTk5OTl9.sig","expires_in":60}`},
	}
	for _, s := range seeds {
		f.Add(s.ctype, s.status, []byte(s.body))
	}
	sent := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, ctype string, status int, body []byte) {
		if status < 100 || status > 599 {
			t.Skip()
		}
		// As Fetch does before each request: accepted tokens fill the
		// registry, and the least recently registered value goes first.
		safetext.Register(fuzzCanary)
		resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ctype}}}
		tok, err := parseResponse(resp, body, sent, 5*time.Minute)
		if err != nil {
			var te *Error
			if tok != nil || !errors.As(err, &te) {
				t.Fatalf("failure: token %v, error %T %v", tok, err, err)
			}
			msg := err.Error()
			if strings.Contains(msg, fuzzCanary) {
				t.Fatalf("the error quotes a known secret: %q", msg)
			}
			for _, r := range msg {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in the error: %q", msg)
				}
			}
			return
		}
		if tok.Value == "" || !strings.EqualFold(tok.Type, "bearer") || tok.Authorization() != "Bearer "+tok.Value {
			t.Fatalf("accepted token: value %q type %q header %q", tok.Value, tok.Type, tok.Authorization())
		}
		for i := 0; i < len(tok.Value); i++ {
			if c := tok.Value[i]; c <= 0x20 || c >= 0x7f {
				t.Fatalf("accepted token with byte %#x: it cannot go into an Authorization header as is", c)
			}
		}
		if !tok.FetchedAt.Equal(sent) || !tok.ExpiresAt.After(sent) || !tok.UsableTo.After(sent) || tok.UsableTo.After(tok.ExpiresAt) ||
			tok.RefreshAt.Before(sent) || tok.RefreshAt.After(tok.UsableTo) {
			t.Fatalf("times: fetched %v refresh %v usable %v expires %v", tok.FetchedAt, tok.RefreshAt, tok.UsableTo, tok.ExpiresAt)
		}
	})
}
