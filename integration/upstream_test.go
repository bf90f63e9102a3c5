package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// seenTokens are the bearer tokens upstreams received: canaries too.
var seenTokens sync.Map

// Upstream is a real TLS server on 127.0.0.1 that records what it saw.
type Upstream struct {
	Addr    string // 127.0.0.1:port
	srv     *http.Server
	handler atomic.Value // http.HandlerFunc
	mu      sync.Mutex
	auths   []string
	count   atomic.Int64
}

func startUpstream(t *testing.T) *Upstream {
	t.Helper()
	p := getPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstream{Addr: ln.Addr().String()}
	u.handler.Store(http.HandlerFunc(echo))
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serve), ErrorLog: nil}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12})
	go func() { _ = u.srv.Serve(tln) }()
	t.Cleanup(func() { _ = u.srv.Close() })
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.count.Add(1)
	a := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(a, "Bearer "); ok {
		seenTokens.Store(tok, true)
	}
	u.mu.Lock()
	u.auths = append(u.auths, a)
	u.mu.Unlock()
	u.handler.Load().(http.HandlerFunc)(w, r)
}

func (u *Upstream) Handle(h http.HandlerFunc) { u.handler.Store(h) }

// Auths returns the Authorization headers seen so far.
func (u *Upstream) Auths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...)
}

// echo answers with what the upstream saw.
func echo(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
	w.Header().Set("X-Seen-Proxy-Authorization", r.Header.Get("Proxy-Authorization"))
	w.Header().Set("X-Seen-TLS", fmt.Sprint(r.TLS != nil))
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), n)
}
