// Package h1 is a lean HTTP/1.1 client for upstream requests: pooled
// keep-alive connections, requests written with net/http's Request.Write
// and responses read with http.ReadResponse on the caller's goroutine.
//
// net/http's Transport runs a read and a write goroutine per connection and
// hands every request to them over channels; under load those hand-offs,
// wake-ups and selects cost more CPU than the proxying itself. Here a
// request without a body is written and its response read by the goroutine
// that calls RoundTrip; only a request with a body gets a goroutine, which
// writes the body while the response is awaited (so a server may answer
// before it has read the whole upload, and both directions stream). The
// response body returns its connection to the pool when it reaches EOF and
// closes it when it is closed early.
//
// What it keeps from net/http (the wire format is net/http's own code):
// 1xx responses are skipped (a 101 is returned), HEAD, 204 and 304 have no
// body, trailers are read into Response.Trailer, chunked and close-delimited
// bodies stream, the response-header timeout holds, a client that goes
// away (the request's context) aborts the exchange. The last two
// are enforced by one watchdog goroutine per client (while it has open
// connections), which looks at the exchanges in flight every 100 ms (or a
// quarter of a shorter header timeout) and poisons the deadlines of those
// whose context ended or whose header is overdue: no per-request context
// watch or deadline change, at the price of a cancellation or timeout
// taking effect up to a tick late.
//
// Dial and TLS failures are whatever the dialers return (the callers type
// them: nothing was sent). An idle connection the server has closed is
// detected before use (a non-blocking peek) and never used; a
// request that failed on a reused connection before any response byte is
// sent again on another connection when that is safe: nothing reached the
// socket, or it is idempotent and its body can be sent again (net/http's
// own rule).
//
// It speaks HTTP/1.1 only: a TLS connection whose ALPN settled on another
// protocol (h2) is handed back to the caller as a *ProtocolError.
package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DialFunc opens a connection; for TLS, with the handshake done.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config configures a Client.
type Config struct {
	Dial    DialFunc // plain TCP (http://)
	DialTLS DialFunc // TLS (https://)
	// ResponseHeaderTimeout bounds the wait for response headers after
	// the request is written (0: none).
	ResponseHeaderTimeout time.Duration
	IdleTimeout           time.Duration // idle connections older than this are closed (0: 90 s)
	MaxIdlePerHost        int           // (0: 256)
	// MaxResponseHeaderBytes bounds what a server may send before its
	// response header ends, 1xx responses included (0: 10 MiB, as
	// net/http's).
	MaxResponseHeaderBytes int64
}

// Client is a pool of HTTP/1.1 connections per scheme and host. It
// implements http.RoundTripper.
type Client struct {
	cfg Config

	mu    sync.Mutex
	idle  map[key]*hostPool
	sweep *time.Timer // closes expired idle connections; nil when none run
	// open holds every open connection, for the watchdog, which runs
	// while there is one.
	open     map[*conn]struct{}
	watching bool
	scratch  []*conn // the watchdog's copy of open
}

type key struct {
	tls  bool
	host string // the URL's host, as given
}

type hostPool struct{ conns []*conn } // LIFO: the most recently used last

// New returns a client.
func New(cfg Config) *Client {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 90 * time.Second
	}
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = 256
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = 10 << 20
	}
	return &Client{cfg: cfg, idle: map[key]*hostPool{}, open: map[*conn]struct{}{}}
}

// ProtocolError is a TLS connection whose ALPN negotiated a protocol other
// than HTTP/1.1. Conn (to Addr, host:port) is open and handshaken: the
// caller may use it (with an HTTP/2 transport) or close it. RoundTrip
// returns it without closing the request body.
type ProtocolError struct {
	Proto string
	Addr  string
	Conn  net.Conn
}

func (e *ProtocolError) Error() string { return "h1: the server negotiated " + e.Proto }

// timeoutError is the response-header timeout (a net.Error whose Timeout
// is true, as net/http's).
type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout awaiting response headers" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var (
	errClosedBody  = errors.New("h1: read on closed response body")
	errScheme      = errors.New("h1: unsupported protocol scheme")
	errTooMany1xx  = errors.New("h1: too many 1xx informational responses")
	errNoDialer    = errors.New("h1: no dialer for this scheme")
	errHeaderSize  = errors.New("h1: the server's response header is too large")
	aLongTimeAgo   = time.Unix(1, 0)
	maxInformation = 10 // 1xx responses skipped before one is final
)

// RoundTrip sends req and returns its response. The response body must be
// read to EOF or closed; either returns the connection.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	var k key
	switch req.URL.Scheme {
	case "http":
	case "https":
		k.tls = true
	default:
		closeBody(req)
		return nil, errScheme
	}
	k.host = req.URL.Host
	ctx := req.Context()
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			closeBody(req)
			return nil, err
		}
		// A request that would be sent again anyway if its connection
		// turned out closed skips the liveness check on a connection
		// used moments ago (a server closing idle connections, or
		// sending an unasked 408 before it does, waits much longer).
		check := retried || !canRetry(req, true, io.EOF)
		pc, err := c.get(ctx, k, req.URL.Port(), check)
		if err != nil {
			if _, ok := err.(*ProtocolError); !ok {
				closeBody(req) // a ProtocolError leaves req to be sent another way
			}
			return nil, err
		}
		resp, sent, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		if retried || !pc.reused || !canRetry(req, sent, err) || ctx.Err() != nil {
			return nil, err
		}
		if req, err = rewind(req); err != nil {
			return nil, err
		}
	}
}

// recentlyUsed: an idle connection used this recently is taken without the
// liveness peek by a request that may be sent again.
const recentlyUsed = 100 * time.Millisecond

// get returns an idle connection to k that is still open, or a new one.
func (c *Client) get(ctx context.Context, k key, port string, check bool) (*conn, error) {
	now := time.Now()
	for {
		c.mu.Lock()
		p := c.idle[k]
		if p == nil || len(p.conns) == 0 {
			c.mu.Unlock()
			break
		}
		pc := p.conns[len(p.conns)-1]
		p.conns[len(p.conns)-1] = nil
		p.conns = p.conns[:len(p.conns)-1]
		c.mu.Unlock()
		idle := now.Sub(pc.idleAt)
		if idle < c.cfg.IdleTimeout && pc.br.Buffered() == 0 && (!check && idle < recentlyUsed || pc.alive()) {
			pc.reused = true
			return pc, nil
		}
		pc.close()
	}
	return c.dial(ctx, k, port)
}

func (c *Client) dial(ctx context.Context, k key, port string) (*conn, error) {
	addr := k.host
	if port == "" {
		host := addr
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
		if k.tls {
			addr = net.JoinHostPort(host, "443")
		} else {
			addr = net.JoinHostPort(host, "80")
		}
	}
	dial := c.cfg.Dial
	if k.tls {
		dial = c.cfg.DialTLS
	}
	if dial == nil {
		return nil, errNoDialer
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := nc
	if tc, ok := nc.(*tls.Conn); ok {
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			return nil, &ProtocolError{Proto: p, Addr: addr, Conn: nc}
		}
		raw = tc.NetConn()
	}
	pc := &conn{c: c, nc: nc, key: k, readLimit: math.MaxInt64}
	if sc, ok := raw.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
	pc.br = bufio.NewReaderSize(pc, 4<<10)
	pc.bw = bufio.NewWriterSize(pc, 4<<10)
	pc.peekFn = pc.peek
	c.mu.Lock()
	c.open[pc] = struct{}{}
	if !c.watching {
		c.watching = true
		go c.watch()
	}
	c.mu.Unlock()
	return pc, nil
}

// watch is the watchdog: every tick it aborts the connections whose
// request's context has ended (the client went away) or whose response
// header is overdue. One goroutine per client, while it has connections,
// instead of a context watch and deadline changes per request; a
// cancellation or a timeout takes effect within a tick.
func (c *Client) watch() {
	t := time.NewTicker(c.tick())
	defer t.Stop()
	for now := range t.C {
		c.mu.Lock()
		if len(c.open) == 0 {
			c.watching = false
			c.mu.Unlock()
			return
		}
		conns := c.scratch[:0]
		for pc := range c.open {
			conns = append(conns, pc)
		}
		c.scratch = conns
		c.mu.Unlock()
		for _, pc := range conns {
			pc.check(now)
		}
		clear(conns)
	}
}

// tick is the watchdog's period: 100 ms, or a quarter of a shorter
// response-header timeout.
func (c *Client) tick() time.Duration {
	d := 100 * time.Millisecond
	if t := c.cfg.ResponseHeaderTimeout; t > 0 && t/4 < d {
		d = max(t/4, time.Millisecond)
	}
	return d
}

// put returns pc to its pool, or closes it when the pool is full.
func (c *Client) put(pc *conn) {
	pc.idleAt = time.Now()
	c.mu.Lock()
	p := c.idle[pc.key]
	if p == nil {
		p = &hostPool{}
		c.idle[pc.key] = p
	}
	if len(p.conns) >= c.cfg.MaxIdlePerHost {
		c.mu.Unlock()
		pc.close()
		return
	}
	p.conns = append(p.conns, pc)
	if c.sweep == nil {
		c.sweep = time.AfterFunc(c.cfg.IdleTimeout, c.closeExpired)
	}
	c.mu.Unlock()
}

// closeExpired closes idle connections older than the idle timeout, and
// runs again while any connection is idle.
func (c *Client) closeExpired() {
	now := time.Now()
	var expired []*conn
	c.mu.Lock()
	n := 0
	for k, p := range c.idle {
		keep := p.conns[:0]
		for _, pc := range p.conns {
			if now.Sub(pc.idleAt) >= c.cfg.IdleTimeout {
				expired = append(expired, pc)
			} else {
				keep = append(keep, pc)
			}
		}
		clear(p.conns[len(keep):])
		p.conns = keep
		if len(keep) == 0 {
			delete(c.idle, k)
		}
		n += len(keep)
	}
	if n > 0 {
		c.sweep = time.AfterFunc(c.cfg.IdleTimeout/2, c.closeExpired)
	} else {
		c.sweep = nil
	}
	c.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

// CloseIdleConnections closes every idle connection. Connections in use
// return to the pool when their response is done.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	idle := c.idle
	c.idle = map[key]*hostPool{}
	c.mu.Unlock()
	for _, p := range idle {
		for _, pc := range p.conns {
			pc.close()
		}
	}
}

// IdleConns reports how many connections are idle (for tests).
func (c *Client) IdleConns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.idle {
		n += len(p.conns)
	}
	return n
}

// conn is one pooled connection.
type conn struct {
	c       *Client
	key     key
	nc      net.Conn
	raw     syscall.RawConn // the TCP socket under TLS, for the liveness peek (nil: not checked)
	br      *bufio.Reader
	bw      *bufio.Writer // writes through conn.Write, which counts bytes sent
	written atomic.Int64  // bytes written to nc (the body writer adds to it)
	// readLimit is what br may still read from nc: the header limit while
	// a response header is read, unlimited otherwise.
	readLimit int64
	idleAt    time.Time
	reused    bool // it has served a response before this request
	peekFn    func(fd uintptr) bool
	peekOK    bool

	// The exchange in flight, as the watchdog sees it.
	mu         sync.Mutex
	ctx        context.Context // nil: idle, or a context that never ends
	headerBy   time.Time       // zero: not waiting for a response header (or no timeout)
	gotHeaders bool            // the response header has come (the body writer's view)
	aborted    abortReason     // set once: the connection's deadlines are poisoned
}

type abortReason uint8

const (
	notAborted abortReason = iota
	abortCanceled
	abortTimeout
)

// Read reads from the socket within readLimit (br reads through it).
func (pc *conn) Read(p []byte) (int, error) {
	if pc.readLimit <= 0 {
		return 0, errHeaderSize
	}
	if int64(len(p)) > pc.readLimit {
		p = p[:pc.readLimit]
	}
	n, err := pc.nc.Read(p)
	pc.readLimit -= int64(n)
	return n, err
}

// Write counts what reaches the socket (bw writes through it).
func (pc *conn) Write(p []byte) (int, error) {
	n, err := pc.nc.Write(p)
	pc.written.Add(int64(n))
	return n, err
}

func (pc *conn) close() {
	c := pc.c
	c.mu.Lock()
	delete(c.open, pc)
	c.mu.Unlock()
	_ = pc.nc.Close()
}

// check aborts the exchange in flight if its context has ended or its
// response header is overdue: every read and write on the connection fails
// from then on.
func (pc *conn) check(now time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch {
	case pc.aborted != notAborted:
		return
	case pc.ctx != nil && pc.ctx.Err() != nil:
		pc.aborted = abortCanceled
	case !pc.headerBy.IsZero() && now.After(pc.headerBy):
		pc.aborted = abortTimeout
	default:
		return
	}
	_ = pc.nc.SetDeadline(aLongTimeAgo)
}

// begin shows the watchdog a new exchange. Its header deadline is set
// once the request is written.
func (pc *conn) begin(ctx context.Context) {
	if ctx.Done() == nil {
		ctx = nil
	}
	pc.mu.Lock()
	pc.ctx, pc.headerBy, pc.gotHeaders = ctx, time.Time{}, false
	pc.mu.Unlock()
}

// headers tells the watchdog the response header has come; end, that the
// exchange is over. Both report whether the exchange was aborted.
func (pc *conn) headers() abortReason {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.headerBy, pc.gotHeaders = time.Time{}, true
	return pc.aborted
}

func (pc *conn) end() abortReason {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.ctx, pc.headerBy = nil, time.Time{}
	return pc.aborted
}

func (pc *conn) abortedNow() abortReason {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.aborted
}

// alive reports whether an idle connection can carry a request: the server
// has not closed it and sent nothing unasked.
func (pc *conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	if pc.raw == nil {
		return true
	}
	pc.peekOK = false
	err := pc.raw.Read(pc.peekFn)
	return err == nil && pc.peekOK
}

// roundTrip sends req on pc and reads the response header. sent reports
// whether any byte of the request reached the socket.
func (pc *conn) roundTrip(req *http.Request) (resp *http.Response, sent bool, err error) {
	ctx := req.Context()
	start := pc.written.Load()
	timeout := pc.c.cfg.ResponseHeaderTimeout
	var wrote chan error // the body writer's result; nil: written here
	pc.begin(ctx)
	if hasBody(req) {
		wrote = make(chan error, 1)
		go pc.writeBody(req, wrote, timeout) // the header timeout starts when the body is written
	} else {
		err = writeRequest(pc.bw, req)
		if err == nil {
			err = pc.bw.Flush()
		}
		if err != nil {
			return nil, pc.written.Load() > start, pc.fail(ctx, err)
		}
		if timeout > 0 {
			pc.mu.Lock()
			pc.headerBy = time.Now().Add(timeout)
			pc.mu.Unlock()
		}
	}
	resp, err = pc.readHeader(req)
	if err == nil && pc.headers() != notAborted {
		err = errAborted // the watchdog fired as the header came: the body is cut
	}
	if err != nil {
		if wrote != nil {
			// A failed write says more than the read error it caused
			// (never wait for it: it may be blocked reading the client).
			pc.close()
			select {
			case werr := <-wrote:
				var ne net.Error
				if werr != nil && !(errors.As(err, &ne) && ne.Timeout()) {
					err = werr
				}
			default:
			}
		}
		return nil, pc.written.Load() > start, pc.fail(ctx, err)
	}
	b := &body{pc: pc, wrote: wrote, keep: !resp.Close && !req.Close}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		b.keep = false
		resp.Body = b
		b.rc = http.NoBody
		return resp, true, nil
	}
	if resp.Body == http.NoBody {
		b.release(true)
		return resp, true, nil
	}
	b.rc = resp.Body
	resp.Body = b
	return resp, true, nil
}

var errAborted = errors.New("h1: exchange aborted")

// readHeader reads the response header, skipping 1xx informational
// responses other than 101.
func (pc *conn) readHeader(req *http.Request) (*http.Response, error) {
	pc.readLimit = pc.c.cfg.MaxResponseHeaderBytes
	defer func() { pc.readLimit = math.MaxInt64 }()
	// io.EOF here (ReadResponse would say io.ErrUnexpectedEOF) means the
	// server closed the connection without sending a byte.
	if _, err := pc.br.Peek(1); err != nil {
		return nil, err
	}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 100 {
			return resp, nil
		}
		if n >= maxInformation {
			return nil, errTooMany1xx
		}
	}
}

// writeBody writes req (with its body) and then arms the response-header
// timeout, unless the response header has already come.
func (pc *conn) writeBody(req *http.Request, done chan<- error, timeout time.Duration) {
	err := req.Write(pc.bw)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		// The body could not be read (the client went away) or the
		// connection broke: the server would wait for the rest forever.
		pc.close()
	}
	if err == nil && timeout > 0 {
		pc.mu.Lock()
		if !pc.gotHeaders {
			pc.headerBy = time.Now().Add(timeout)
		}
		pc.mu.Unlock()
	}
	done <- err
}

// fail closes pc after a failed round trip and names the failure: the
// context's error when the client went away, the header timeout when the
// watchdog found it overdue.
func (pc *conn) fail(ctx context.Context, err error) error {
	why := pc.end()
	pc.close()
	switch {
	case why == abortCanceled || ctx.Err() != nil:
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return context.Canceled
	case why == abortTimeout:
		return timeoutError{}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return timeoutError{}
	}
	return err
}

// body is a response body: at EOF its connection goes back to the pool; an
// early Close closes the connection.
type body struct {
	rc    io.ReadCloser
	pc    *conn
	wrote chan error  // the body writer's result (nil: the request was written inline)
	keep  bool        // the connection may carry another request
	done  atomic.Bool // released
	eof   bool        // released at EOF (Read keeps saying EOF)
}

func (b *body) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.eof {
			return 0, io.EOF
		}
		return 0, errClosedBody
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
		b.release(true)
	case err != nil:
		aborted := b.pc.abortedNow()
		b.release(false)
		if aborted == abortCanceled {
			return n, context.Canceled
		}
	}
	return n, err
}

func (b *body) Close() error {
	b.release(false)
	return nil
}

// maxWriteWait is how long a finished response waits for its request's
// body to be written before the connection is given up (net/http's value).
const maxWriteWait = 50 * time.Millisecond

// release ends the exchange once: the connection goes back to the pool if
// the response was read to its end, the request fully written, and the
// context never fired; otherwise it is closed.
func (b *body) release(eof bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	ok := eof && b.keep
	if b.pc.end() != notAborted {
		ok = false // the watchdog fired: deadlines are poisoned
	}
	if ok && b.wrote != nil {
		t := time.NewTimer(maxWriteWait)
		select {
		case err := <-b.wrote:
			ok = err == nil
		case <-t.C:
			ok = false
		}
		t.Stop()
	}
	if ok && b.pc.br.Buffered() == 0 {
		b.pc.c.put(b.pc)
		return
	}
	b.pc.close()
}

func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// canRetry reports whether a request that failed on a reused connection
// before any response byte may be sent again on another: nothing of it
// reached the socket, or the server closed the connection without a word
// and the request is idempotent (net/http's rule: the server most likely
// closed the idle connection as the request went out).
func canRetry(req *http.Request, sent bool, err error) bool {
	if hasBody(req) && req.GetBody == nil {
		return false
	}
	if !sent {
		return true
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// rewind returns req ready to be sent again (a shallow copy with a fresh
// body when it has one).
func rewind(req *http.Request) (*http.Request, error) {
	if !hasBody(req) {
		return req, nil
	}
	b, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r2 := *req
	r2.Body = b
	return &r2, nil
}
