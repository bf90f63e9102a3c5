// Package broker is the token broker API (SPEC §14, the seeds' Thinkwise
// OAuth connectors): apps that must hold a token (process flows, SDKs) get
// client-credentials tokens, start user logins (authorization code with
// PKCE), read users' tokens and refresh tokens statelessly — over HTTP,
// authenticated with a per-client key. It knows nothing of how tokens are
// obtained: that is the Backend (the engine implements it).
package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/authgress/authgress/internal/safetext"
	"github.com/authgress/authgress/tokencache"
)

// Backend is what the broker needs from the runtime (the engine implements it).
type Backend interface {
	// Credential reports whether name is a configured credential and whether
	// it is delegated (authorization_code).
	Credential(name string) (exists, delegated bool)
	// ServerToken is the client-credentials token of a credential (the same
	// cached token the proxy injects); scopes nil = the credential's.
	ServerToken(ctx context.Context, name string, scopes []string) (*tokencache.Token, error)
	// AuthorizeURL is the IdP authorization URL for a delegated credential:
	// client_id, redirect_uri, scope, prompt, state, PKCE S256 challenge of
	// verifier.
	AuthorizeURL(ctx context.Context, name, state, verifier, redirectURI string) (string, error)
	// CompleteLogin exchanges code (with verifier, redirectURI) and stores
	// the tokens as user's.
	CompleteLogin(ctx context.Context, name, user, code, verifier, redirectURI string) (*tokencache.Token, error)
	// UserToken is user's access token, refreshed ahead;
	// tokencache.ErrLoginRequired when there is none.
	UserToken(ctx context.Context, name, user string) (*tokencache.Token, error)
	// Refresh is the stateless refresh-token grant.
	Refresh(ctx context.Context, name, refreshToken string) (*tokencache.Token, error)
}

// Client is one app that may call the broker: its key and the credentials
// it may use.
type Client struct {
	Name        string
	Key         string
	Credentials []string
}

// Config configures a Broker.
type Config struct {
	// PublicURL is the base URL browsers reach the broker at; the redirect
	// URI is PublicURL + "/oauth-callback".
	PublicURL *url.URL
	Clients   []Client
	// AllowedRedirects are where a finished login may send the browser.
	AllowedRedirects []string
	// LoginTimeout bounds a started login (default DefaultLoginTimeout).
	LoginTimeout time.Duration
	Log          *slog.Logger     // default slog.Default()
	Now          func() time.Time // default time.Now
}

const (
	// DefaultLoginTimeout is how long a login waits for its callback when
	// Config.LoginTimeout is zero.
	DefaultLoginTimeout = 10 * time.Minute
	// MaxPendingLogins caps the logins waiting for their callback.
	MaxPendingLogins = 10000
	// MaxBody caps a request body.
	MaxBody = 64 << 10

	maxUser   = 256 // bytes of a user name
	maxScopes = 64
	maxScope  = 256 // bytes of one scope
)

// Endpoint names, as logged.
const (
	epServerToken = "server_token"
	epLogin       = "login"
	epCallback    = "callback"
	epUserToken   = "user_token"
	epRefresh     = "refresh"
	epUnknown     = "unknown"
)

// Broker is the broker's HTTP API; it is an http.Handler.
type Broker struct {
	backend     Backend
	mux         *http.ServeMux
	clients     []client
	allowed     []*url.URL
	base        string // PublicURL without a trailing slash
	redirectURI string
	timeout     time.Duration
	log         *slog.Logger
	now         func() time.Time

	mu         sync.Mutex
	pending    map[string]*pendingLogin // by state
	maxPending int
}

type client struct {
	name  string
	key   [32]byte // SHA-256 of the key
	valid bool     // false for an empty key: it never matches
	creds map[string]bool
}

// New returns the broker API over b. Invalid allowed redirects (conf
// validates them) are skipped with a warning.
func New(cfg Config, b Backend) *Broker {
	br := &Broker{
		backend:    b,
		mux:        http.NewServeMux(),
		timeout:    cfg.LoginTimeout,
		log:        cfg.Log,
		now:        cfg.Now,
		pending:    map[string]*pendingLogin{},
		maxPending: MaxPendingLogins,
	}
	if br.timeout <= 0 {
		br.timeout = DefaultLoginTimeout
	}
	if br.log == nil {
		br.log = slog.Default()
	}
	if br.now == nil {
		br.now = time.Now
	}
	if cfg.PublicURL != nil {
		br.base = strings.TrimRight(cfg.PublicURL.String(), "/")
	}
	br.redirectURI = br.base + "/oauth-callback"
	for _, c := range cfg.Clients {
		cl := client{name: c.Name, valid: c.Key != "", creds: map[string]bool{}}
		if cl.valid {
			cl.key = sha256.Sum256([]byte(c.Key))
			safetext.Pin(c.Key)
		}
		for _, n := range c.Credentials {
			cl.creds[n] = true
		}
		br.clients = append(br.clients, cl)
	}
	for _, s := range cfg.AllowedRedirects {
		u, err := parseAllowed(s)
		if err != nil {
			br.log.Warn("broker: allowed redirect skipped", "redirect", safetext.Clean(s, 200), "reason", err.Error())
			continue
		}
		br.allowed = append(br.allowed, u)
	}

	br.handle("POST /v1/credentials/{name}/token", "POST", epServerToken, true, br.serverToken)
	br.handle("GET /v1/credentials/{name}/login", "GET, HEAD", epLogin, true, br.login)
	br.handle("GET /v1/credentials/{name}/users/{user}/token", "GET, HEAD", epUserToken, true, br.userToken)
	br.handle("POST /v1/credentials/{name}/refresh", "POST", epRefresh, true, br.refresh)
	br.handle("GET /oauth-callback", "GET", epCallback, false, br.callback)
	br.mux.HandleFunc("/", br.wrap(epUnknown, false, func(w http.ResponseWriter, r *http.Request, c *call) {
		b := &failure{http: http.StatusNotFound, code: "not_found", seed: StatusFailed, msg: "no such broker endpoint"}
		br.fail(w, c, b)
	}))
	return br
}

// LoginURL is the login endpoint of credential name for user on the
// broker at base (its public URL): what a login_required answer points to.
func LoginURL(base, name, user string) string {
	return base + "/v1/credentials/" + url.PathEscape(name) + "/login?user=" + url.QueryEscape(user)
}

// ServeHTTP serves the broker API.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mux.ServeHTTP(w, r)
}

// handle registers pattern ("METHOD /path") and, for the same path with any
// other method, a JSON 405 naming allow.
func (b *Broker) handle(pattern, allow, endpoint string, keyed bool, h handler) {
	b.mux.HandleFunc(pattern, b.wrap(endpoint, keyed, h))
	_, path, _ := strings.Cut(pattern, " ")
	b.mux.HandleFunc(path, b.wrap(endpoint, false, func(w http.ResponseWriter, r *http.Request, c *call) {
		w.Header().Set("Allow", allow)
		b.fail(w, c, &failure{http: http.StatusMethodNotAllowed, code: "method_not_allowed", seed: StatusFailed, msg: "method " + safetext.Clean(r.Method, 32) + " is not allowed here; allowed: " + allow})
	}))
}

// call is what one request's log line says.
type call struct {
	endpoint   string
	client     *client
	credential string
	user       string
	seed       int
	code       string // authgress error code, if any
	cause      error
}

type handler func(w http.ResponseWriter, r *http.Request, c *call)

// wrap sets the common headers, authenticates keyed endpoints, and logs one
// line per call.
func (b *Broker) wrap(endpoint string, keyed bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		c := &call{endpoint: endpoint}
		if keyed {
			c.client = b.authenticate(r)
		}
		if keyed && c.client == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="authgress-broker"`)
			b.fail(sw, c, &failure{http: http.StatusUnauthorized, code: "unauthorized", seed: StatusFailed, msg: "a broker client key is required: Authorization: Bearer <key>"})
		} else {
			h(sw, r, c)
		}
		b.logCall(c, sw.status, time.Since(start))
	}
}

// authenticate returns the client whose key the request carries, or nil.
// Both sides are hashed (so lengths do not leak) and compared with every
// client's key in constant time (so the timing does not say which matched).
func (b *Broker) authenticate(r *http.Request) *client {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i := range b.clients {
		eq := subtle.ConstantTimeCompare(sum[:], b.clients[i].key[:])
		if !b.clients[i].valid {
			eq = 0
		}
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil
	}
	return &b.clients[found]
}

func (b *Broker) logCall(c *call, status int, d time.Duration) {
	attrs := []any{"endpoint", c.endpoint, "status", status, "seed_status", c.seed,
		"duration_ms", float64(d.Microseconds()) / 1000}
	if c.client != nil {
		attrs = append(attrs, "client", c.client.name)
	}
	if c.credential != "" {
		attrs = append(attrs, "credential", c.credential)
	}
	if c.user != "" {
		attrs = append(attrs, "user", safetext.Clean(c.user, 64))
	}
	if c.code != "" {
		attrs = append(attrs, "error", c.code)
	}
	if c.cause != nil {
		attrs = append(attrs, "cause", safetext.Clean(c.cause.Error(), 300))
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	b.log.Log(context.Background(), level, "broker", attrs...)
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// credential resolves the {name} of the path for c's client: an unknown
// credential is 404 (status -2), one the client does not list 403, one of
// the wrong grant 400. It reports whether the call may go on.
func (b *Broker) credential(w http.ResponseWriter, r *http.Request, c *call, wantDelegated bool) (string, bool) {
	name := r.PathValue("name")
	exists, delegated := b.backend.Credential(name)
	if !exists {
		b.fail(w, c, &failure{http: http.StatusNotFound, code: "unknown_credential", seed: StatusNoConfig, msg: "no credential " + quote(name) + " is configured"})
		return "", false
	}
	c.credential = name
	if !c.client.creds[name] {
		b.fail(w, c, &failure{http: http.StatusForbidden, code: "forbidden", seed: StatusFailed, msg: "client " + quote(c.client.name) + " may not use credential " + quote(name)})
		return "", false
	}
	if delegated != wantDelegated {
		msg := "credential " + quote(name) + " is delegated (grant = \"authorization_code\"): use /v1/credentials/" + url.PathEscape(name) + "/login and /v1/credentials/" + url.PathEscape(name) + "/users/{user}/token"
		if !delegated {
			msg = "credential " + quote(name) + " is not delegated (grant = \"client_credentials\"): use POST /v1/credentials/" + url.PathEscape(name) + "/token"
		}
		b.fail(w, c, &failure{http: http.StatusBadRequest, code: "bad_request", seed: StatusFailed, msg: msg})
		return "", false
	}
	return name, true
}

// quote quotes a name for a message, clipped and redacted.
func quote(s string) string {
	return `"` + safetext.Clean(s, 128) + `"`
}

// readJSON decodes a request body of at most MaxBody bytes into v; an
// empty body leaves v as it is.
func readJSON(r *http.Request, v any) (empty bool, err error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return false, err
	}
	if len(body) > MaxBody {
		return false, errTooLarge
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true, nil
	}
	return false, decodeStrict(body, v)
}
