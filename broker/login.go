package broker

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/authgress/authgress/internal/safetext"
	"golang.org/x/oauth2"
)

// pendingLogin is a login started at the login endpoint, waiting for its
// callback; its state is the key it is stored under. It is used once.
type pendingLogin struct {
	credential string
	user       string
	client     *client
	redirect   *url.URL // nil: none given; show a page
	verifier   string   // PKCE code verifier
	expires    time.Time
}

// login: GET /v1/credentials/{name}/login?user=U&redirect=R — 302 to the
// IdP's authorization URL.
func (b *Broker) login(w http.ResponseWriter, r *http.Request, c *call) {
	name, ok := b.credential(w, r, c, true)
	if !ok {
		return
	}
	q := r.URL.Query()
	user := q.Get("user")
	if user == "" {
		b.fail(w, c, badInput("user is missing: ?user=<the user's identity>"))
		return
	}
	if !validUser(user) {
		b.fail(w, c, badInput("the user name is longer than 256 bytes or has control characters"))
		return
	}
	c.user = user
	p := &pendingLogin{credential: name, user: user, client: c.client, verifier: oauth2.GenerateVerifier(), expires: b.now().Add(b.timeout)}
	if raw := q.Get("redirect"); raw != "" {
		u, ok := b.allowedRedirect(raw)
		if !ok {
			b.fail(w, c, &failure{http: http.StatusBadRequest, code: CodeBadRequest, seed: StatusFailed, msg: "redirect is not under one of broker.allowed_redirects (same scheme and host, path under the allowed path, no user info or dot segments)"})
			return
		}
		p.redirect = u
	}
	state := newState()
	if !b.addPending(state, p) {
		b.fail(w, c, &failure{http: http.StatusServiceUnavailable, code: "too_many_logins", seed: StatusFailed, retryAfter: time.Second,
			msg: "too many logins are waiting for their callback; try again later"})
		return
	}
	loc, err := b.backend.AuthorizeURL(r.Context(), name, state, p.verifier, b.redirectURI)
	if err != nil {
		b.takePending(state)
		b.fail(w, c, tokenFailure(name, err))
		return
	}
	c.seed = StatusOK
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusFound, struct {
		AuthorizeURL string `json:"authorize_url"`
		Status       int    `json:"status"`
	}{loc, StatusOK})
}

// newState is 32 random bytes, base64url.
func newState() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// addPending stores p under state unless MaxPendingLogins are pending and
// none of them has expired.
func (b *Broker) addPending(state string, p *pendingLogin) bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) >= b.maxPending {
		for k, v := range b.pending {
			if !now.Before(v.expires) {
				delete(b.pending, k)
			}
		}
		if len(b.pending) >= b.maxPending {
			return false
		}
	}
	b.pending[state] = p
	return true
}

// takePending removes and returns the login of state, if there is one and
// it has not expired.
func (b *Broker) takePending(state string) *pendingLogin {
	if state == "" {
		return nil
	}
	b.mu.Lock()
	p := b.pending[state]
	delete(b.pending, state)
	b.mu.Unlock()
	if p == nil || !b.now().Before(p.expires) {
		return nil
	}
	return p
}

// callback: GET /oauth-callback?code=&state= (or ?error=&state=) — no key:
// the login is found by its state.
func (b *Broker) callback(w http.ResponseWriter, r *http.Request, c *call) {
	if r.Method != http.MethodGet {
		// HEAD (a link checker) must not use up the login.
		w.Header().Set("Allow", "GET")
		b.fail(w, c, &failure{http: http.StatusMethodNotAllowed, code: "method_not_allowed", seed: StatusFailed, msg: "the callback is GET only"})
		return
	}
	q := r.URL.Query()
	p := b.takePending(q.Get("state"))
	if p == nil {
		b.page(w, c, http.StatusBadRequest, "invalid_state", StatusFailed, "Sign-in failed",
			"This sign-in is unknown, has expired or was already completed. Start it again from the application.", nil)
		return
	}
	c.client, c.credential, c.user = p.client, p.credential, p.user
	if idpErr := q.Get("error"); idpErr != "" {
		cause := errors.New("the identity provider answered error " + safetext.Clean(idpErr, 64))
		if idpErr == "access_denied" {
			b.finish(w, c, p, http.StatusForbidden, "access_denied", StatusAborted, "Sign-in aborted",
				"The sign-in was aborted; no token was stored.", cause)
			return
		}
		b.finish(w, c, p, http.StatusBadGateway, "login_failed", StatusFailed, "Sign-in failed",
			"The identity provider answered "+safetext.Clean(idpErr, 64)+"; no token was stored.", cause)
		return
	}
	code := q.Get("code")
	if code == "" {
		b.finish(w, c, p, http.StatusBadRequest, CodeBadRequest, StatusMissing, "Sign-in failed",
			"The identity provider sent no authorization code; no token was stored.", nil)
		return
	}
	if _, err := b.backend.CompleteLogin(r.Context(), p.credential, p.user, code, p.verifier, b.redirectURI); err != nil {
		f := tokenFailure(p.credential, err)
		if f.code == CodeLoginRequired {
			f.http, f.code, f.seed = http.StatusBadGateway, CodeTokenRejected, StatusFailed
		}
		b.finish(w, c, p, f.http, f.code, f.seed, "Sign-in failed", "The sign-in could not be completed: "+f.msg, f.cause)
		return
	}
	b.finish(w, c, p, http.StatusOK, "", StatusOK, "Signed in",
		"Signed in as "+p.user+" for "+p.credential+". You can close this window.", nil)
}

// finish ends a callback whose login was found: a redirect to its R with
// status (and error) added, or a page.
func (b *Broker) finish(w http.ResponseWriter, c *call, p *pendingLogin, status int, code string, seed int, title, msg string, cause error) {
	if p.redirect == nil {
		b.page(w, c, status, code, seed, title, msg, cause)
		return
	}
	c.seed, c.code, c.cause = seed, code, cause
	if code != "" {
		w.Header().Set(ErrorHeader, code)
	}
	w.Header().Set("Location", withStatus(p.redirect, seed, code))
	w.WriteHeader(http.StatusFound)
}

// withStatus is u with status=seed (and error=code, if any) added to its
// query; u's own parameters are kept as they are.
func withStatus(u *url.URL, seed int, code string) string {
	v := *u
	q := v.Query()
	if q.Has("status") || q.Has("error") {
		q.Del("error")
		q.Set("status", strconv.Itoa(seed))
		if code != "" {
			q.Set("error", code)
		}
		v.RawQuery = q.Encode()
		return v.String()
	}
	add := "status=" + strconv.Itoa(seed)
	if code != "" {
		add += "&error=" + url.QueryEscape(code)
	}
	if v.RawQuery == "" {
		v.RawQuery = add
	} else {
		v.RawQuery += "&" + add
	}
	return v.String()
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}.s{color:#666;font-size:.9em}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p><p class="s">status {{.Status}}</p></body></html>
`))

// page answers with a small self-contained HTML page (everything escaped).
func (b *Broker) page(w http.ResponseWriter, c *call, status int, code string, seed int, title, msg string, cause error) {
	c.seed, c.code, c.cause = seed, code, cause
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	if code != "" {
		h.Set(ErrorHeader, code)
	}
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct {
		Title, Message string
		Status         int
	}{title, safetext.Redact(msg), seed})
}

// parseAllowed parses an allowed redirect: an absolute http(s) URL without
// user info; its path defaults to "/".
func parseAllowed(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil {
		return nil, errors.New("not an absolute http(s) URL without user info")
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// allowedRedirect parses raw and reports whether it is under one of the
// allowed redirects: same scheme, same host (case-insensitive, port
// included), its path under the allowed path (at a segment boundary when
// that does not end in "/"), no user info, no dot segments, no encoded
// slash, backslash or dot, nothing but printable ASCII.
func (b *Broker) allowedRedirect(raw string) (*url.URL, bool) {
	if len(raw) > 2048 {
		return nil, false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return nil, false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return nil, false
	}
	esc := strings.ToLower(u.EscapedPath())
	if strings.Contains(esc, "%2f") || strings.Contains(esc, "%5c") || strings.Contains(esc, "%2e") {
		return nil, false
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return nil, false
		}
	}
	for _, a := range b.allowed {
		if !strings.EqualFold(u.Scheme, a.Scheme) || !strings.EqualFold(u.Host, a.Host) {
			continue
		}
		if strings.HasSuffix(a.Path, "/") {
			if strings.HasPrefix(path, a.Path) {
				return u, true
			}
		} else if path == a.Path || strings.HasPrefix(path, a.Path+"/") {
			return u, true
		}
	}
	return nil, false
}

// Adopt takes over the logins old started and that have not finished, so
// that a reload (which builds a new broker) does not break them.
func (b *Broker) Adopt(old *Broker) {
	if old == nil || old == b {
		return
	}
	old.mu.Lock()
	pending := old.pending
	old.pending = map[string]*pendingLogin{}
	old.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for state, p := range pending {
		if len(b.pending) < b.maxPending {
			b.pending[state] = p
		}
	}
}

// Pending counts the logins waiting for their callback.
func (b *Broker) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}
