package tokencache

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/authgress/authgress/internal/neterr"
	"github.com/authgress/authgress/internal/safetext"
)

// MaxBody caps how much of a token response is read.
const MaxBody = 1 << 20

// Request is one token request.
type Request struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	Params       [][2]string // extra form parameters, in order
	Send         string      // "basic" or "body" (older spelling of ClientAuth)
	DefaultTTL   time.Duration

	// ClientAuth is how the client authenticates: client_secret_basic
	// (default), client_secret_post, private_key_jwt (with Signer),
	// tls_client_auth (the transport presents the certificate; client_id
	// in the body), none (client_id in the body).
	ClientAuth string
	Signer     *Signer

	// Grant is client_credentials (default), authorization_code (Code,
	// CodeVerifier, RedirectURI) or refresh_token (RefreshToken).
	Grant        string
	Code         string
	CodeVerifier string
	RedirectURI  string
	RefreshToken string
}

// Client sends token requests. It never follows redirects.
type Client struct {
	HTTP *http.Client
	Now  func() time.Time
}

// NewClient returns a client over rt (the credential profile's transport).
func NewClient(rt http.RoundTripper) *Client {
	return &Client{
		HTTP: &http.Client{
			Transport:     rt,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Now: time.Now,
	}
}

// basicAuth encodes id and secret per RFC 6749 §2.3.1: each form-urlencoded,
// then joined with ':' and base64-encoded.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// Grants and client authentication methods (the conf spellings).
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"

	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthTLSClient     = "tls_client_auth"
	AuthNone          = "none"
)

// Method is the client authentication method: ClientAuth, else the one Send
// names (body = client_secret_post), else client_secret_basic.
func (r *Request) Method() string {
	switch {
	case r.ClientAuth != "":
		return r.ClientAuth
	case r.Send == "body":
		return AuthSecretPost
	}
	return AuthSecretBasic
}

// NeedsSecret reports whether the method sends a shared client secret.
func NeedsSecret(method string) bool {
	return method == "" || method == AuthSecretBasic || method == AuthSecretPost
}

// form returns the request body and the Authorization header ("" for none).
// Every secret value in them is registered with safetext first.
func (r *Request) form(now time.Time) (body, auth string, err error) {
	v := url.Values{}
	switch r.Grant {
	case "", GrantClientCredentials:
		v.Set("grant_type", GrantClientCredentials)
		if len(r.Scopes) > 0 {
			v.Set("scope", strings.Join(r.Scopes, " "))
		}
	case GrantAuthorizationCode:
		if r.Code == "" {
			return "", "", errors.New("no authorization code")
		}
		registerValue(r.Code)
		registerValue(r.CodeVerifier)
		v.Set("grant_type", GrantAuthorizationCode)
		v.Set("code", r.Code)
		if r.RedirectURI != "" {
			v.Set("redirect_uri", r.RedirectURI)
		}
		if r.CodeVerifier != "" {
			v.Set("code_verifier", r.CodeVerifier)
		}
	case GrantRefreshToken:
		if r.RefreshToken == "" {
			return "", "", errors.New("no refresh token")
		}
		registerValue(r.RefreshToken)
		v.Set("grant_type", GrantRefreshToken)
		v.Set("refresh_token", r.RefreshToken)
		if len(r.Scopes) > 0 {
			v.Set("scope", strings.Join(r.Scopes, " "))
		}
	default:
		return "", "", fmt.Errorf("unknown grant %q", r.Grant)
	}
	switch m := r.Method(); m {
	case AuthSecretBasic:
		// The secret in the forms the endpoint could echo back: as it is,
		// and inside the Basic credentials.
		registerSecret(r.ClientSecret)
		auth = basicAuth(r.ClientID, r.ClientSecret)
		safetext.Pin(strings.TrimPrefix(auth, "Basic "))
	case AuthSecretPost:
		registerSecret(r.ClientSecret)
		v.Set("client_id", r.ClientID)
		v.Set("client_secret", r.ClientSecret)
	case AuthPrivateKeyJWT:
		a, err := r.Signer.Assertion(r.ClientID, r.TokenURL, now)
		if err != nil {
			return "", "", err
		}
		safetext.Register(a)
		v.Set("client_id", r.ClientID)
		v.Set("client_assertion_type", AssertionType)
		v.Set("client_assertion", a)
	case AuthTLSClient, AuthNone:
		v.Set("client_id", r.ClientID)
	default:
		return "", "", fmt.Errorf("unknown client authentication method %q", m)
	}
	body = v.Encode()
	for _, p := range r.Params {
		body += "&" + url.QueryEscape(p[0]) + "=" + url.QueryEscape(p[1])
	}
	return body, auth, nil
}

// registerSecret pins the client secret s with safetext as it is and
// form-encoded (never forgotten: a configuration has few).
func registerSecret(s string) {
	safetext.Pin(s)
	safetext.Pin(url.QueryEscape(s))
}

// registerValue registers a per-user value (an authorization code, a PKCE
// verifier, a refresh token) the same way, among the values safetext may
// forget once MaxSecrets newer ones follow: they come with traffic, and
// pinning them would grow the registry, and the cost of every
// registration, without bound.
func registerValue(s string) {
	safetext.Register(s)
	safetext.Register(url.QueryEscape(s))
}

// Fetch performs the token request: r.Grant with r.Method(). The response
// is parsed the same way for every grant; a refresh token in it is returned
// in Token.Refresh (empty when the server did not rotate or issue one).
func (c *Client) Fetch(ctx context.Context, r Request) (*Token, error) {
	sent := c.Now()
	body, auth, err := r.form(sent)
	if err != nil {
		return nil, &Error{Kind: Unavailable, Msg: "the token request could not be built: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.TokenURL, strings.NewReader(body))
	if err != nil {
		return nil, &Error{Kind: Unavailable, Msg: "invalid token_url", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, &Error{Kind: Unavailable, Msg: "the token endpoint could not be reached (" + neterr.Reason(err) + ")", Err: err}
	}
	defer resp.Body.Close()
	rbody, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, &Error{Kind: Unavailable, Status: resp.StatusCode, Msg: "the token response could not be read", Err: err}
	}
	if len(rbody) > MaxBody {
		return nil, &Error{Kind: Unavailable, Status: resp.StatusCode, Msg: "the token response is larger than 1 MiB"}
	}
	return parseResponse(resp, rbody, sent, r.DefaultTTL)
}

// IsInvalidGrant reports whether err is the token endpoint's invalid_grant:
// the authorization code or the refresh token is dead (expired, revoked,
// used), so the user must log in again.
func IsInvalidGrant(err error) bool {
	var te *Error
	return errors.As(err, &te) && te.Code == "invalid_grant"
}

type tokenResponse struct {
	AccessToken      string
	TokenType        string
	ExpiresIn        string
	Scope            string
	Error            string
	ErrorDescription string
	RefreshToken     string
	RefreshExpiresIn string
}

func parseResponse(resp *http.Response, body []byte, sent time.Time, defTTL time.Duration) (*Token, error) {
	tr, perr := decodeBody(resp.Header.Get("Content-Type"), body)
	status := resp.StatusCode
	// Before anything else: no later text may show it.
	registerValue(tr.RefreshToken)
	if tr.Error != "" {
		kind := Rejected
		if tr.Error == "server_error" || tr.Error == "temporarily_unavailable" || status >= 500 {
			kind = Unavailable
		}
		return nil, &Error{Kind: kind, Code: safetext.Clean(tr.Error, 64), Description: safetext.Clean(tr.ErrorDescription, 200), Status: status, Msg: "the token endpoint refused the request"}
	}
	if status < 200 || status > 299 {
		switch {
		case status >= 300 && status < 400:
			return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token endpoint answered with a redirect (authgress does not follow redirects; check token_url)"}
		case status == 401 || status == 403:
			return nil, &Error{Kind: Rejected, Status: status, Msg: "the token endpoint refused the client credentials"}
		}
		return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token endpoint failed"}
	}
	if perr != nil {
		return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token response is not valid JSON or form data", Err: perr}
	}
	if tr.AccessToken == "" {
		return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token response has no access_token"}
	}
	if !headerSafe(tr.AccessToken) {
		return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token response's access_token has spaces, control or non-ASCII characters, which cannot be sent in an Authorization header"}
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, &Error{Kind: UnsupportedType, Status: status, Msg: "the token endpoint issued a " + safetext.Clean(tr.TokenType, 32) + " token; only Bearer tokens are supported"}
	}
	lifetime := defTTL
	if tr.ExpiresIn != "" {
		d, err := seconds(tr.ExpiresIn)
		if err != nil {
			return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token response has an invalid expires_in"}
		}
		// A lifetime that is zero, or rounds to zero (under a nanosecond), is
		// taken as no expires_in.
		if d > 0 {
			lifetime = d
		}
	}
	t := &Token{Value: tr.AccessToken, Type: tr.TokenType, Scope: tr.Scope, Refresh: tr.RefreshToken}
	if t.Type == "" {
		t.Type = "Bearer"
	}
	t.schedule(sent, lifetime, rand.Float64())
	// refresh_expires_in (Keycloak and others) is advisory: an invalid value
	// or 0 (Keycloak's offline tokens) means unknown.
	if d, err := seconds(tr.RefreshExpiresIn); t.Refresh != "" && err == nil && d > 0 {
		t.RefreshExpiresAt = sent.Add(d)
	}
	safetext.Register(t.Value) // redacted from whatever a server says later
	return t, nil
}

// seconds parses an expires_in value (a number of seconds, maybe
// fractional), capped at a year; a value that is not positive or rounds to
// zero is 0.
func seconds(s string) (time.Duration, error) {
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if !(secs > 0) { // also NaN
		return 0, nil
	}
	return time.Duration(min(secs, 365*24*3600) * float64(time.Second)), nil
}

// headerSafe reports whether tok is visible ASCII only, so that "Bearer "+tok
// is one well-formed header value (RFC 6750's b64token is a subset).
func headerSafe(tok string) bool {
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] >= 0x7f {
			return false
		}
	}
	return true
}

func decodeBody(contentType string, body []byte) (tokenResponse, error) {
	var tr tokenResponse
	// The body's shape decides, not its label: servers send JSON as
	// text/plain and form data as text/html.
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := strings.TrimSpace(string(body))
	if !strings.HasPrefix(trimmed, "{") && (mt == "application/x-www-form-urlencoded" || mt == "text/plain" || strings.Contains(trimmed, "=")) {
		v, err := url.ParseQuery(trimmed)
		if err != nil {
			return tr, errors.New("malformed form body")
		}
		return tokenResponse{AccessToken: v.Get("access_token"), TokenType: v.Get("token_type"), ExpiresIn: v.Get("expires_in"),
			Scope: v.Get("scope"), Error: v.Get("error"), ErrorDescription: v.Get("error_description"),
			RefreshToken: v.Get("refresh_token"), RefreshExpiresIn: v.Get("refresh_expires_in")}, nil
	}
	var raw struct {
		AccessToken      string          `json:"access_token"`
		TokenType        string          `json:"token_type"`
		ExpiresIn        json.RawMessage `json:"expires_in"`
		Scope            string          `json:"scope"`
		Error            string          `json:"error"`
		ErrorDescription string          `json:"error_description"`
		RefreshToken     string          `json:"refresh_token"`
		RefreshExpiresIn json.RawMessage `json:"refresh_expires_in"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return tr, errors.New("malformed JSON body")
	}
	tr = tokenResponse{AccessToken: raw.AccessToken, TokenType: raw.TokenType, Scope: raw.Scope, Error: raw.Error, ErrorDescription: raw.ErrorDescription,
		RefreshToken: raw.RefreshToken, ExpiresIn: numberOrString(raw.ExpiresIn), RefreshExpiresIn: numberOrString(raw.RefreshExpiresIn)}
	return tr, nil
}

// numberOrString returns a JSON number's text or a JSON string's value ("" for
// absent or null).
func numberOrString(m json.RawMessage) string {
	if len(m) == 0 || string(m) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(m, &s) == nil {
		return s
	}
	return string(m)
}
