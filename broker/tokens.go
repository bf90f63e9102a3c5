package broker

import (
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/authgress/authgress/internal/safetext"
	"github.com/authgress/authgress/tokencache"
)

// tokenBody is a successful token answer. RefreshToken is set only by the
// refresh endpoint.
type tokenBody struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    *int64 `json:"expires_in,omitempty"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Status       int    `json:"status"`
}

// writeToken answers 200 with tok (its refresh token only if withRefresh).
func (b *Broker) writeToken(w http.ResponseWriter, c *call, tok *tokencache.Token, withRefresh bool) {
	if tok == nil || tok.Value == "" {
		b.fail(w, c, tokenFailure(c.credential, errors.New("the backend returned no token")))
		return
	}
	if tok.Type != "" && !strings.EqualFold(tok.Type, "Bearer") {
		b.fail(w, c, &failure{http: http.StatusBadGateway, code: CodeUnsupportedTokenType, seed: StatusUnsupported,
			msg: "credential " + quote(c.credential) + " issued a " + safetext.Clean(tok.Type, 32) + " token; only Bearer tokens are supported"})
		return
	}
	body := tokenBody{AccessToken: tok.Value, TokenType: "Bearer", Scope: tok.Scope, Status: StatusOK}
	if !tok.ExpiresAt.IsZero() {
		s := int64(tok.ExpiresAt.Sub(b.now()) / time.Second)
		body.ExpiresIn = &s
		if s < 0 {
			*body.ExpiresIn = 0
		}
	}
	if withRefresh {
		body.RefreshToken = tok.Refresh
	}
	c.seed = StatusOK
	writeJSON(w, http.StatusOK, body)
}

// serverToken: POST /v1/credentials/{name}/token, optional {"scopes": [...]}.
func (b *Broker) serverToken(w http.ResponseWriter, r *http.Request, c *call) {
	name, ok := b.credential(w, r, c, false)
	if !ok {
		return
	}
	var req struct {
		Scopes *[]string `json:"scopes"`
	}
	if _, err := readJSON(r, &req); err != nil {
		b.fail(w, c, badInput("the body must be {\"scopes\": [\"...\"]} or empty: "+safetext.Clean(err.Error(), 200)))
		return
	}
	var scopes []string
	if req.Scopes != nil {
		scopes = *req.Scopes
		if msg := checkScopes(scopes); msg != "" {
			b.fail(w, c, badInput(msg))
			return
		}
	}
	tok, err := b.backend.ServerToken(r.Context(), name, scopes)
	if err != nil {
		b.fail(w, c, tokenFailure(name, err))
		return
	}
	b.writeToken(w, c, tok, false)
}

// checkScopes says what is wrong with explicitly given scopes, or "".
func checkScopes(scopes []string) string {
	if len(scopes) == 0 {
		return "scopes is empty: leave it out for the credential's scopes"
	}
	if len(scopes) > maxScopes {
		return "more than 64 scopes"
	}
	for _, s := range scopes {
		if s == "" || len(s) > maxScope {
			return "a scope is empty or longer than 256 bytes"
		}
		for i := 0; i < len(s); i++ {
			// RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E
			if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return "a scope has a character RFC 6749 does not allow (space, quote, backslash, control or non-ASCII)"
			}
		}
	}
	return ""
}

// userToken: GET /v1/credentials/{name}/users/{user}/token. Never the
// refresh token.
func (b *Broker) userToken(w http.ResponseWriter, r *http.Request, c *call) {
	name, ok := b.credential(w, r, c, true)
	if !ok {
		return
	}
	user := r.PathValue("user")
	if !validUser(user) {
		b.fail(w, c, badInput("the user name is missing, longer than 256 bytes or has control characters"))
		return
	}
	c.user = user
	tok, err := b.backend.UserToken(r.Context(), name, user)
	if err != nil {
		f := tokenFailure(name, err)
		if f.code == CodeLoginRequired {
			f.msg = "user " + quote(user) + " has no token for credential " + quote(name) + ": call login_url with the client key and send the user's browser to the Location it answers"
			f.loginURL = LoginURL(b.base, name, user)
		}
		b.fail(w, c, f)
		return
	}
	b.writeToken(w, c, tok, false)
}

// refresh: POST /v1/credentials/{name}/refresh {"refresh_token": "..."} —
// stateless; the answer carries the refresh token the IdP returned.
func (b *Broker) refresh(w http.ResponseWriter, r *http.Request, c *call) {
	name, ok := b.credential(w, r, c, true)
	if !ok {
		return
	}
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if _, err := readJSON(r, &req); err != nil {
		b.fail(w, c, badInput("the body must be {\"refresh_token\": \"...\"}: "+safetext.Clean(err.Error(), 200)))
		return
	}
	if req.RefreshToken == "" {
		b.fail(w, c, badInput("refresh_token is missing"))
		return
	}
	safetext.Register(req.RefreshToken)
	tok, err := b.backend.Refresh(r.Context(), name, req.RefreshToken)
	if err != nil {
		f := tokenFailure(name, err)
		var te *tokencache.Error
		if errors.As(err, &te) && te.Kind == tokencache.Rejected {
			// The client's input was refused (invalid_grant, ...): a 400, not a gateway failure.
			f.http = http.StatusBadRequest
			f.msg = "the token endpoint refused the refresh token for credential " + quote(name) + ": " + te.Error()
		}
		if f.code == CodeLoginRequired {
			f.http, f.code, f.msg = http.StatusBadRequest, CodeTokenRejected, "the refresh token was refused for credential "+quote(name)
		}
		b.fail(w, c, f)
		return
	}
	b.writeToken(w, c, tok, true)
}

// validUser: 1..256 bytes of UTF-8 without control characters.
func validUser(u string) bool {
	if u == "" || len(u) > maxUser || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
