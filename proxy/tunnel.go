package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/authgress/authgress/internal/h1"
	"github.com/elazarl/goproxy"
)

// tlsHandshakeTimeout bounds the client's TLS handshake inside an
// intercepted tunnel.
const tlsHandshakeTimeout = 10 * time.Second

type dialedKey struct{}

// newSplicer returns the goproxy server that confirms plain CONNECT tunnels
// and splices them to the connection tunnel() dialled. It never dials by
// itself and never writes an error text of its own.
func newSplicer(log *slog.Logger) *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{Proxy: nil, DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("goproxy's own transport is not used")
	}}
	gp.ConnectDial = nil // never chain through HTTPS_PROXY from our own environment
	gp.ConnectDialWithReq = func(r *http.Request, _, _ string) (net.Conn, error) {
		if c, ok := r.Context().Value(dialedKey{}).(net.Conn); ok {
			return c, nil
		}
		return nil, errors.New("tunnel target was not dialled")
	}
	gp.Logger = goproxyLogger{log}
	gp.ConnectionErrHandler = func(_ io.Writer, _ *goproxy.ProxyCtx, _ error) {} // copy errors inside a tunnel: nothing may be written
	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return goproxy.OkConnect, host
	})
	return gp
}

// tunnel splices an unmatched CONNECT (egress "tunnel") to its
// destination: the name is resolved once, checked by the guard, and the
// checked address dialled before the client is told 200, so a failed dial
// is answered — and logged — as the failure it is.
func (h *Handler) tunnel(x *exchange, r *http.Request) {
	addrs, err := h.guard.Resolve(r.Context(), x.d.Host)
	if err == nil {
		var conn net.Conn
		conn, err = h.guard.dialAddrs(r.Context(), "tcp", addrs, x.d.Port)
		if err == nil {
			x.sw.status = http.StatusOK
			ctx := context.WithValue(r.Context(), dialedKey{}, newIdleConn(conn, h.tunnelIdle))
			h.gp.ServeHTTP(x.sw.ResponseWriter, r.WithContext(ctx))
			return
		}
	}
	h.fail(x, r, failureOf(&UpstreamError{Stage: StageConnect, Host: authority(x.d.Host, x.d.Port), Err: err}, &x.d))
}

// intercept terminates a matched CONNECT's TLS with a leaf certificate for
// its host and serves the requests inside on our own server: each goes
// through the wrapper (one access line, metric and span per inner request),
// pinned to the CONNECT target.
func (h *Handler) intercept(x *exchange, r *http.Request) {
	leaf, err := h.leaves.Leaf(x.d.Host)
	if err != nil {
		h.fail(x, r, &Failure{Code: CodeUpstreamUnreachable, Connection: x.d.connection(), Message: "authgress could not mint a certificate for " + x.d.Host, Cause: err})
		return
	}
	if r.ProtoMajor != 1 {
		h.fail(x, r, &Failure{Code: CodeBadRequest, Connection: x.d.connection(), Message: "CONNECT over HTTP/2 cannot be intercepted: connect to the proxy with HTTP/1.1"})
		return
	}
	conn, buf, ok := hijack(x)
	if !ok {
		h.fail(x, r, &Failure{Code: CodeBadRequest, Connection: x.d.connection(), Message: "this connection cannot be intercepted"})
		return
	}
	x.sw.status = http.StatusOK
	if _, err := fmt.Fprintf(buf, "HTTP/1.%d 200 Connection established\r\n\r\n", r.ProtoMinor); err == nil {
		err = buf.Flush()
	}
	var client net.Conn = conn
	if buf.Reader.Buffered() > 0 { // the client sent its ClientHello without waiting
		client = &bufferedConn{Conn: conn, r: buf.Reader}
	}
	tc := tls.Server(client, h.tunnels.tlsConfig(leaf))
	ctx, cancel := context.WithTimeout(r.Context(), tlsHandshakeTimeout)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		x.tlsFailed = true
		h.finish(x, r)
		_ = conn.Close()
		return
	}
	h.finish(x, r) // the CONNECT's own line: the tunnel is established
	pin := &tunnelTarget{host: x.d.Host, port: x.d.Port, client: x.client}
	h.tunnels.serve(r.Context(), tc, pin, h.inner, h.limits, h.log)
}

// bufferedConn reads what the server buffered before the hijack first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ServerLimits are the client-side timeouts and limits of a listener; the
// server inside each intercepted tunnel has the same ones.
type ServerLimits struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// Tunnels tracks the servers of intercepted tunnels, so that a shutdown
// drains the requests inside them like those on the listener. HTTP/1.1
// tunnels are connections of one shared h1.Server (its watchdog keeps
// every tunnel's timeouts); a tunnel whose client negotiated h2 gets
// net/http's server, as does every tunnel with AUTHGRESS_SERVER=net/http.
type Tunnels struct {
	mu      sync.Mutex
	servers map[*http.Server]struct{}
	lean    *h1.Server // nil until the first HTTP/1.1 tunnel
	closed  bool

	// Session tickets shared by every tunnel, so a returning client
	// resumes its TLS session (each tunnel has its own tls.Config, whose
	// automatic keys would be its own). Rotated daily; a ticket stays
	// good for a day after its key is replaced.
	tickets   [][32]byte
	ticketsAt time.Time
}

// ticketRotation is how long a session-ticket key encrypts new tickets.
const ticketRotation = 24 * time.Hour

// tlsConfig is the server side of an intercepted tunnel with leaf.
func (t *Tunnels) tlsConfig(leaf *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*leaf},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	t.mu.Lock()
	if len(t.tickets) == 0 || time.Since(t.ticketsAt) > ticketRotation {
		var k [32]byte
		if _, err := rand.Read(k[:]); err == nil {
			t.tickets = append([][32]byte{k}, t.tickets[:min(len(t.tickets), 1)]...)
			t.ticketsAt = time.Now()
		}
	}
	keys := t.tickets
	t.mu.Unlock()
	if len(keys) > 0 {
		cfg.SetSessionTicketKeys(keys)
	}
	return cfg
}

// NewTunnels returns an empty registry.
func NewTunnels() *Tunnels { return &Tunnels{servers: map[*http.Server]struct{}{}} }

// LeanServer reports whether the proxy's ways in (listeners and HTTP/1.1
// tunnels) are served by h1.Server: yes unless AUTHGRESS_SERVER=net/http.
func LeanServer() bool { return os.Getenv("AUTHGRESS_SERVER") != "net/http" }

// Active is the number of intercepted tunnels being served.
func (t *Tunnels) Active() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.servers)
	if t.lean != nil {
		n += t.lean.Active()
	}
	return n
}

// serve serves the requests of one terminated TLS connection until the
// client closes it, it idles out, or the registry shuts down.
func (t *Tunnels) serve(ctx context.Context, conn *tls.Conn, pin *tunnelTarget, h http.Handler, lim ServerLimits, log *slog.Logger) {
	ctx = context.WithValue(ctx, tunnelKey{}, pin)
	if LeanServer() && conn.ConnectionState().NegotiatedProtocol != "h2" {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = conn.Close()
			return
		}
		if t.lean == nil {
			// The limits are the first tunnel's: a listener keeps its
			// limits until restart, and so do its tunnels.
			t.lean = &h1.Server{
				ReadHeaderTimeout: lim.ReadHeaderTimeout,
				IdleTimeout:       lim.IdleTimeout,
				MaxHeaderBytes:    lim.MaxHeaderBytes,
				BadRequest:        BadRequestAnswer,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			}
		}
		lean := t.lean
		t.mu.Unlock()
		lean.ServeConn(ctx, conn, h)
		return
	}
	ln := &oneConnListener{conn: conn, closed: make(chan struct{})}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				ln.Close()
			}
		},
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = conn.Close()
		return
	}
	t.servers[srv] = struct{}{}
	t.mu.Unlock()
	_ = srv.Serve(ln)
	t.mu.Lock()
	delete(t.servers, srv)
	t.mu.Unlock()
}

// Shutdown refuses new tunnels and waits for the requests inside every
// tunnel to finish (idle tunnels close at once), or for ctx to end, after
// which the remaining tunnels are closed.
func (t *Tunnels) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	servers := make([]*http.Server, 0, len(t.servers))
	for s := range t.servers {
		servers = append(servers, s)
	}
	lean := t.lean
	t.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(servers)+1)
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = s.Shutdown(ctx); errs[i] != nil {
				_ = s.Close()
			}
		}()
	}
	if lean != nil {
		if errs[len(servers)] = lean.Shutdown(ctx); errs[len(servers)] != nil {
			_ = lean.Close()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// oneConnListener hands one connection to an http.Server, then blocks
// until closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	mu     sync.Mutex
	taken  bool
	closed chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.taken {
		l.taken = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
