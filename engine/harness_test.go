package engine

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/logline"
	"github.com/authgress/authgress/tokencache"
)

// idp is a token endpoint issuing tok-1, tok-2, ...
type idp struct {
	*httptest.Server
	fetches atomic.Int64
	ttl     atomic.Int64
}

func newIDP(t testing.TB) *idp {
	i := &idp{}
	i.ttl.Store(300)
	i.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := i.fetches.Add(1)
		if user, pass, _ := r.BasicAuth(); user != "client" || pass != "canary-client-secret" {
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, n, i.ttl.Load())
	}))
	t.Cleanup(i.Close)
	return i
}

// apiServer is a TLS server whose handler tests replace.
type apiServer struct {
	conns atomic.Int64 // connections accepted
	*httptest.Server
	caFile  string
	handler atomic.Value // http.HandlerFunc
}

func newUpstream(t *testing.T) *apiServer {
	u := &apiServer{}
	u.handler.Store(http.HandlerFunc(echo))
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.handler.Load().(http.HandlerFunc)(w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	u.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.Certificate().Raw})
	if err := os.WriteFile(u.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u *apiServer) handle(h http.HandlerFunc) { u.handler.Store(h) }
func (u *apiServer) hostPort() string          { return strings.TrimPrefix(u.URL, "https://") }
func (u *apiServer) port() string              { return u.URL[strings.LastIndex(u.URL, ":")+1:] }

// echo reports what the upstream saw.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
	w.Header().Set("X-Seen-Proxy-Authorization", r.Header.Get("Proxy-Authorization"))
	w.Header().Set("X-Seen-Foo", r.Header.Get("X-Foo"))
	w.Header().Set("X-Seen-Scheme", map[bool]string{true: "https", false: "http"}[r.TLS != nil])
	w.Header().Set("X-Seen-Remote", r.RemoteAddr)
	w.Header().Set("X-Seen-Connection", r.Header.Get("Connection"))
	fmt.Fprintf(w, "%s %s body=%d", r.Method, r.URL.RequestURI(), len(body))
}

type harness struct {
	t    testing.TB
	eng  *Engine
	url  string
	tok  *tokencache.Cache
	logs *strings.Builder
	mu   *sync.Mutex
}

// newHarness builds a proxy from config text; {{UP}}, {{CA}}, {{IDP}} and
// {{SECRETS}} are replaced.
func newHarness(t testing.TB, text string, up *apiServer, i *idp) *harness {
	t.Helper()
	repl := []string{"{{IDP}}", idpURL(i)}
	if up != nil {
		repl = append(repl, "{{UP}}", up.hostPort(), "{{CA}}", up.caFile)
	}
	cfg := loadConfig(t, text, repl...)
	cfg.Server.Listen, cfg.Server.Admin = "127.0.0.1:0", ""
	logs, mu := &strings.Builder{}, &sync.Mutex{}
	log := slog.New(slog.NewTextHandler(lockedWriter{logs, mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Access lines take the fast path, as in `authgress run`.
	opts := Options{Log: log, AccessLines: logline.New(lockedWriter{logs, mu}, false)}
	if slogOnly {
		opts.AccessLines = nil
	}
	eng, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return &harness{t: t, eng: eng, url: "http://" + eng.ProxyAddr(), tok: eng.tokens, logs: logs, mu: mu}
}

// slogOnly makes newHarness give the engine only a logger (no fast path
// for access lines).
var slogOnly bool

// loadConfig writes the secrets file (entries app and wrong) and the
// config text, with {{SECRETS}} and the repl pairs replaced, and loads it.
func loadConfig(t testing.TB, text string, repl ...string) *conf.Config {
	t.Helper()
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets.toml")
	_ = os.WriteFile(secrets, []byte("[app]\nclient_id = \"client\"\nclient_secret = \"canary-client-secret\"\n[wrong]\nclient_id = \"client\"\nclient_secret = \"nope\"\n"), 0o600)
	path := filepath.Join(dir, "authgress.toml")
	_ = os.WriteFile(path, []byte(strings.NewReplacer(append([]string{"{{SECRETS}}", secrets}, repl...)...).Replace(text)), 0o600)
	cfg, probs := conf.Load(path)
	if probs.HasErrors() {
		t.Fatalf("config:\n%v", probs)
	}
	return cfg
}

func idpURL(i *idp) string {
	if i == nil {
		return "http://127.0.0.1:1/token"
	}
	return i.URL + "/token"
}

type lockedWriter struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (h *harness) client() *http.Client {
	pu, _ := url.Parse(h.url)
	return &http.Client{
		Transport:     &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func (h *harness) do(req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (h *harness) get(u string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return h.do(req)
}

func (h *harness) logText() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs.String()
}

const baseConfig = `
[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.up]
ca = "{{CA}}"

[credentials.app]
vault = "local"
id = "app"
token_url = "{{IDP}}"
scopes = ["api.read"]

[connections.api]
hosts = ["{{UP}}"]
credential = "app"
profile = "up"
timeout = "2s"
`

func newPlain(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(s.Close)
	return s.URL
}

func b64std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// underLoad runs workers that send get(c, u) in a loop until the returned
// stop is called; stop waits for them and returns the requests that got a
// 200 and those that did not. after runs after each request (e.g. to force
// new connections).
func underLoad(workers int, c *http.Client, u string, after func()) (stop func() (ok, failed int64)) {
	var okN, failedN atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := c.Get(u)
				if err != nil || resp.StatusCode != 200 {
					failedN.Add(1)
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					okN.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				if after != nil {
					after()
				}
			}
		}()
	}
	return func() (int64, int64) {
		close(done)
		wg.Wait()
		return okN.Load(), failedN.Load()
	}
}
