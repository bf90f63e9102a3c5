package tokencache

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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

func (r *Request) form() string {
	v := url.Values{}
	v.Set("grant_type", "client_credentials")
	if len(r.Scopes) > 0 {
		v.Set("scope", strings.Join(r.Scopes, " "))
	}
	if r.Send == "body" {
		v.Set("client_id", r.ClientID)
		v.Set("client_secret", r.ClientSecret)
	}
	body := v.Encode()
	for _, p := range r.Params {
		body += "&" + url.QueryEscape(p[0]) + "=" + url.QueryEscape(p[1])
	}
	return body
}

// Fetch performs the token request.
func (c *Client) Fetch(ctx context.Context, r Request) (*Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.TokenURL, strings.NewReader(r.form()))
	if err != nil {
		return nil, &Error{Kind: Unavailable, Msg: "invalid token_url", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// The secret in the forms the endpoint could echo back: as it is, as
	// sent in the form body, and inside the Basic credentials.
	safetext.Register(r.ClientSecret)
	safetext.Register(url.QueryEscape(r.ClientSecret))
	if r.Send != "body" {
		auth := basicAuth(r.ClientID, r.ClientSecret)
		safetext.Register(strings.TrimPrefix(auth, "Basic "))
		req.Header.Set("Authorization", auth)
	}
	sent := c.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, &Error{Kind: Unavailable, Msg: "the token endpoint could not be reached (" + neterr.Reason(err) + ")", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, &Error{Kind: Unavailable, Status: resp.StatusCode, Msg: "the token response could not be read", Err: err}
	}
	if len(body) > MaxBody {
		return nil, &Error{Kind: Unavailable, Status: resp.StatusCode, Msg: "the token response is larger than 1 MiB"}
	}
	return parseResponse(resp, body, sent, r.DefaultTTL)
}

type tokenResponse struct {
	AccessToken      string
	TokenType        string
	ExpiresIn        string
	Scope            string
	Error            string
	ErrorDescription string
}

func parseResponse(resp *http.Response, body []byte, sent time.Time, defTTL time.Duration) (*Token, error) {
	tr, perr := decodeBody(resp.Header.Get("Content-Type"), body)
	status := resp.StatusCode
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
		secs, err := strconv.ParseFloat(tr.ExpiresIn, 64)
		if err != nil {
			return nil, &Error{Kind: Unavailable, Status: status, Msg: "the token response has an invalid expires_in"}
		}
		// A lifetime that is zero, or rounds to zero (under a nanosecond), is
		// taken as no expires_in.
		if d := time.Duration(min(secs, 365*24*3600) * float64(time.Second)); secs > 0 && d > 0 {
			lifetime = d
		}
	}
	t := &Token{Value: tr.AccessToken, Type: tr.TokenType, Scope: tr.Scope}
	if t.Type == "" {
		t.Type = "Bearer"
	}
	t.schedule(sent, lifetime, rand.Float64())
	safetext.Register(t.Value) // redacted from whatever a server says later
	return t, nil
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
			Scope: v.Get("scope"), Error: v.Get("error"), ErrorDescription: v.Get("error_description")}, nil
	}
	var raw struct {
		AccessToken      string          `json:"access_token"`
		TokenType        string          `json:"token_type"`
		ExpiresIn        json.RawMessage `json:"expires_in"`
		Scope            string          `json:"scope"`
		Error            string          `json:"error"`
		ErrorDescription string          `json:"error_description"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return tr, errors.New("malformed JSON body")
	}
	tr = tokenResponse{AccessToken: raw.AccessToken, TokenType: raw.TokenType, Scope: raw.Scope, Error: raw.Error, ErrorDescription: raw.ErrorDescription}
	if len(raw.ExpiresIn) > 0 && string(raw.ExpiresIn) != "null" {
		var s string
		if json.Unmarshal(raw.ExpiresIn, &s) == nil {
			tr.ExpiresIn = s
		} else {
			tr.ExpiresIn = string(raw.ExpiresIn)
		}
	}
	return tr, nil
}
