package tlsprofiles

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/neterr"
)

func testSet(t *testing.T) *Set {
	t.Helper()
	s := NewSet()
	if err := s.Add(context.Background(), "test", &conf.Profile{InsecureSkipVerify: true}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.CloseIdle)
	return s
}

func proto(t *testing.T, rt http.RoundTripper, url string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != resp.Proto {
		t.Fatalf("server saw %s, client %s", b, resp.Proto)
	}
	return resp.Proto
}

// HTTP/1.1 upstreams (plain, or TLS whose ALPN says http/1.1) go through the
// lean client; an upstream whose ALPN picks h2 goes through http.Transport,
// on the connection the lean client handshook, and stays there.
func TestUpstreamProtocols(t *testing.T) {
	if !leanHTTP1 {
		t.Skip("AUTHGRESS_UPSTREAM_CLIENT=net/http")
	}
	var conns atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	start := func(tls, h2 bool) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
		s.EnableHTTP2 = h2
		if tls {
			s.StartTLS()
		} else {
			s.Start()
		}
		t.Cleanup(s.Close)
		return s
	}
	plain, h1s, h2s := start(false, false), start(true, false), start(true, true)
	up := testSet(t).Upstream("test", 5*time.Second)
	for i := 0; i < 3; i++ {
		if p := proto(t, up, plain.URL); p != "HTTP/1.1" {
			t.Fatal(p)
		}
		if p := proto(t, up, h1s.URL); p != "HTTP/1.1" {
			t.Fatal(p)
		}
		if p := proto(t, up, h2s.URL); p != "HTTP/2.0" {
			t.Fatal(p)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections for three upstreams, want 3 (the h2 one handed over, not dialled again)", n)
	}
	if n := up.cur.Load().h1.IdleConns(); n != 2 {
		t.Fatalf("lean client holds %d idle connections, want 2", n)
	}
}

// Many first requests to an h2 upstream at once: each handshake's
// connection goes to http.Transport or is closed; all succeed.
func TestUpstreamH2FirstRequestsAtOnce(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }))
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	up := testSet(t).Upstream("test", 5*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", s.URL, nil)
			resp, err := up.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Proto != "HTTP/2.0" {
				t.Error(resp.Proto)
			}
		}()
	}
	wg.Wait()
	p := up.cur.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.handoff) != 0 {
		t.Fatalf("connections left in the hand-off: %v", p.handoff)
	}
}

// Dial and handshake failures of the lean client are ConnectErrors
// (nothing was sent).
func TestUpstreamConnectErrorsAreTyped(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	up := testSet(t).Upstream("test", time.Second)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	_, err := up.RoundTrip(req)
	var ce *neterr.ConnectError
	if !errors.As(err, &ce) || ce.TLS {
		t.Fatalf("refused: %v", err)
	}
	// A server that does not speak TLS.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	req, _ = http.NewRequest("GET", "https://"+plain.Listener.Addr().String()+"/", nil)
	_, err = up.RoundTrip(req)
	if !errors.As(err, &ce) || !ce.TLS {
		t.Fatalf("not TLS: %v", err)
	}
}

// After a rotation, new requests use new connections; the old pool's idle
// connections are closed.
func TestUpstreamRenewStartsNewPools(t *testing.T) {
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	s.StartTLS()
	defer s.Close()
	set := testSet(t)
	up := set.Upstream("test", time.Second)
	proto(t, up, s.URL)
	old := up.cur.Load()
	set.renew("test")
	proto(t, up, s.URL)
	if conns.Load() != 2 {
		t.Fatalf("%d connections, want 2 (a new pool after renew)", conns.Load())
	}
	if old.h1 != nil && old.h1.IdleConns() != 0 {
		t.Fatal("the old pool kept an idle connection")
	}
}
