// Package dashboard is the connections dashboard of the admin listener: a
// self-contained page at / (HTML, CSS and JavaScript embedded in the
// binary: no external script, font or stylesheet) that lists every
// connection from /status, refreshes itself, and runs connection tests
// through POST /api/test/{connection}. It never shows a token or secret:
// it only has what /status and the test report hold.
//
// Every POST must carry the page's CSRF token (generated once per process,
// sent in the X-CSRF-Token header) and a same-origin Origin; otherwise it
// is refused with 403. Authentication ([server.admin_auth]) is the admin
// listener's: see Users.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

//go:embed assets
var assets embed.FS

var pageTemplate = template.Must(template.ParseFS(assets, "assets/index.html"))

// CSRFHeader carries the page's CSRF token on every POST.
const CSRFHeader = "X-CSRF-Token"

// ErrNotFound is what a Tester returns for a connection that does not exist.
var ErrNotFound = errors.New("no such connection")

// Tester runs the connection test of `authgress test` on the named
// connection and returns its report (JSON-encoded as it is).
type Tester func(ctx context.Context, connection string) (report any, err error)

// Options configure a dashboard.
type Options struct {
	Version string
	Test    Tester
	// MaxTests bounds the connection tests running at once (default 4);
	// past it a POST gets 429.
	MaxTests int
}

// Dashboard serves the page, its assets and the test API.
type Dashboard struct {
	opts  Options
	csrf  string
	tests chan struct{}
}

// New returns a dashboard with a fresh CSRF token.
func New(opts Options) *Dashboard {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	if opts.MaxTests <= 0 {
		opts.MaxTests = 4
	}
	return &Dashboard{opts: opts, csrf: base64.RawURLEncoding.EncodeToString(b[:]), tests: make(chan struct{}, opts.MaxTests)}
}

// Register adds the dashboard's routes to mux: GET / (the page), GET
// /assets/… (its stylesheet and script) and POST /api/test/{connection}.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", d.page)
	mux.Handle("GET /assets/", http.HandlerFunc(d.asset))
	mux.Handle("POST /api/test/{connection}", d.Guard(http.HandlerFunc(d.test)))
}

// securityHeaders: the page loads nothing but its own assets and /status,
// may not be framed, and sends no referrer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (d *Dashboard) page(w http.ResponseWriter, _ *http.Request) {
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplate.Execute(w, struct{ CSRF, Version string }{d.csrf, d.opts.Version})
}

var assetTypes = map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	ctype := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		ctype = assetTypes[name[i:]]
	}
	b, err := assets.ReadFile(name)
	if err != nil || ctype == "" || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(b)
}

// Guard refuses (403) a request that changes something — any method but
// GET, HEAD and OPTIONS — unless it carries the page's CSRF token in
// X-CSRF-Token and an Origin header naming this very origin (the scheme
// may be http or https, for a TLS-terminating proxy in front; the host
// must be the request's Host). A browser's Sec-Fetch-Site, when sent, must
// say same-origin.
func (d *Dashboard) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			h.ServeHTTP(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(d.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "csrf_token_invalid", "this request needs the dashboard's CSRF token in "+CSRFHeader+": use the dashboard page")
			return
		}
		if !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "cross_origin", "this request needs an Origin header naming the admin listener itself")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func (d *Dashboard) test(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("connection")
	if d.opts.Test == nil {
		writeError(w, http.StatusNotFound, "not_found", "connection tests are not available")
		return
	}
	select {
	case d.tests <- struct{}{}:
		defer func() { <-d.tests }()
	default:
		writeError(w, http.StatusTooManyRequests, "busy", "other connection tests are running: try again in a moment")
		return
	}
	rep, err := d.opts.Test(r.Context(), name)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no connection is named "+strconvQuote(name))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "test_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}
