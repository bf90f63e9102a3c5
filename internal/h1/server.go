package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Server serves HTTP/1.x connections with net/http's own request parser
// (http.ReadRequest) and the request checks net/http's server adds to it
// (one valid Host, valid header names and values, HTTP/1.x only, Expect),
// and writes responses in net/http's wire format. It is what the proxy's
// ways in use instead of http.Server (forward, agent and reverse
// listeners, HTTP/1.1 inside intercepted tunnels); the admin and broker
// listeners, and h2 tunnels, stay on http.Server. FuzzServerVsNetHTTP
// sends the same bytes to both and compares what the handlers see.
//
// What it does differently, and why:
//
//   - Timeouts are kept by one watchdog goroutine per server (a tick of
//     100 ms, or a quarter of a shorter timeout), which ends connections
//     whose header or idle deadline has passed. net/http changes the
//     socket's read deadline several times per request; here a request
//     stores two numbers. A timeout takes effect up to a tick late.
//   - A client that goes away is noticed by a read in the background, as
//     net/http does, but that read is started by the watchdog, for a
//     request still running at a tick with its body read: net/http starts
//     a goroutine, a read and two deadline changes for every request, the
//     most expensive part of its server on a proxy's short requests. So a
//     client that leaves while its request runs is noticed within about a
//     tick; one that leaves during a fast request, when the answer is
//     written.
//   - A request body the handler did not start reading is not drained to
//     keep the connection: the answer says Connection: close (and the rest
//     of the body is read and dropped for up to 500 ms, so the client sees
//     the answer rather than a reset). A body being read when the handler
//     returns is not drained either (another goroutine may hold it): the
//     connection closes after the answer.
//   - No Content-Type is guessed for a response that has none, and a HEAD
//     answer gets no computed Content-Length: a proxy passes what the
//     upstream said.
//   - Smaller things: trailers are not sent; a CR or LF in a header value
//     becomes one space (net/http: one space each); "PRI * HTTP/2.0" is
//     answered 505 and "OPTIONS *" goes to the handler; bytes of a
//     pipelined request already buffered count against MaxHeaderBytes;
//     ReadFrom stops at a declared Content-Length.
//
// The answers to requests that cannot be parsed (400, 431, 501, 505, 417)
// are written by BadRequest, so the proxy can give them its error shape.
type Server struct {
	Handler           http.Handler
	ReadHeaderTimeout time.Duration // from a connection's first byte (or accept) to its request header's end (0: none)
	IdleTimeout       time.Duration // between requests on a kept-alive connection (0: none)
	MaxHeaderBytes    int           // (0: http.DefaultMaxHeaderBytes)
	// BadRequest returns the whole answer, status line to body and with
	// "Connection: close", to a request that cannot be served. detail is
	// net/http's text for it. nil: net/http's plain-text answers.
	BadRequest func(status int, detail string) []byte
	ErrorLog   *log.Logger // handler panics and TLS handshake errors (nil: the log package's)

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*serverConn]struct{}
	watching  bool
	closed    atomic.Bool
	stop      chan struct{} // closed by Shutdown and Close: ends the watchdog

	now  atomic.Int64           // coarse clock (unix ns), set by the watchdog
	date atomic.Pointer[[]byte] // "Date: ...\r\n" for now
}

const (
	stateNew int32 = iota // accepted, no request byte yet
	stateIdle
	stateReading // a request header is being read
	stateActive  // the handler runs
	stateClosed
)

// newConnGrace is how long a connection that has sent nothing may stay
// open during Shutdown (net/http's figure): its client just connected to
// send something.
const newConnGrace = 5 * time.Second

// maxTick is the watchdog's period when no timeout asks for less.
const maxTick = 100 * time.Millisecond

func (s *Server) tick() time.Duration {
	t := maxTick
	for _, d := range []time.Duration{s.ReadHeaderTimeout, s.IdleTimeout} {
		if d > 0 && d/4 < t {
			t = max(d/4, time.Millisecond)
		}
	}
	return t
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Serve accepts connections on ln and serves each on its own goroutine.
// It returns http.ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if !s.startLocked() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[&ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := s.newConn(rwc, nil)
		if c == nil {
			_ = rwc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

// ServeConn serves one connection on the calling goroutine until it
// closes, with h as its handler (nil: the server's) and ctx as the base of
// its requests' contexts. The connection is one of the server's: the
// watchdog keeps its timeouts and Shutdown drains it.
func (s *Server) ServeConn(ctx context.Context, rwc net.Conn, h http.Handler) {
	s.mu.Lock()
	ok := s.startLocked()
	s.mu.Unlock()
	var c *serverConn
	if ok {
		c = s.newConn(rwc, h)
	}
	if c == nil {
		_ = rwc.Close()
		return
	}
	c.base = ctx
	c.serve()
}

// Active is the number of connections being served.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// startLocked readies the server and its watchdog; false once closed.
func (s *Server) startLocked() bool {
	if s.closed.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*serverConn]struct{}{}
		s.stop = make(chan struct{})
	}
	if !s.watching {
		s.watching = true
		s.setClock(time.Now())
		go s.watch()
	}
	return true
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, closes idle connections, lets the requests in
// flight finish (their connections close after the answer) and returns when
// every connection is closed or ctx ends. Hijacked connections are the
// hijacker's.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shut()
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			wait = min(2*wait, 500*time.Millisecond)
			t.Reset(wait)
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.shut()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.closeNow()
	}
	return nil
}

func (s *Server) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed.Swap(true) && s.stop != nil {
		close(s.stop)
	}
	for ln := range s.listeners {
		_ = (*ln).Close()
	}
}

// closeIdle closes the connections between requests, and those that have
// sent nothing for newConnGrace; it reports whether none is left.
func (s *Server) closeIdle() bool {
	s.setClock(time.Now())
	now := s.now.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) ||
			now-c.accepted > int64(newConnGrace) && c.state.CompareAndSwap(stateNew, stateClosed) {
			c.closeNow()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) setClock(t time.Time) {
	s.now.Store(t.UnixNano())
	if d := s.date.Load(); d == nil || !bytes.Equal((*d)[6:35], t.UTC().AppendFormat(nil, http.TimeFormat)) {
		b := append([]byte("Date: "), t.UTC().AppendFormat(nil, http.TimeFormat)...)
		b = append(b, "\r\n"...)
		s.date.Store(&b)
	}
}

// watch is the watchdog: it keeps the coarse clock, closes connections
// past their deadline and starts the background read of requests that have
// run for a tick.
func (s *Server) watch() {
	tick := s.tick()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.setClock(now)
			n := now.UnixNano()
			s.mu.Lock()
			for c := range s.conns {
				if dl := c.deadline.Load(); dl != 0 && n > dl {
					if st := c.state.Load(); st != stateActive && st != stateClosed && c.state.CompareAndSwap(st, stateClosed) {
						c.closeNow()
					}
					continue
				}
				if c.state.Load() == stateActive && n-c.since.Load() >= int64(tick) {
					c.startBackgroundRead()
				}
			}
			s.mu.Unlock()
		}
	}
}

func (s *Server) newConn(rwc net.Conn, h http.Handler) *serverConn {
	if h == nil {
		h = s.Handler
	}
	c := &serverConn{s: s, rwc: rwc, handler: h, accepted: s.now.Load()}
	c.cond.L = &c.mu
	if ra := rwc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

// closeNow closes the socket without waiting on the peer (a TLS
// connection's close_notify can block while the client does not read).
func (c *serverConn) closeNow() {
	if tc, ok := c.rwc.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = c.rwc.Close()
}

func (s *Server) forget(c *serverConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serverConn is one client connection.
type serverConn struct {
	s        *Server
	handler  http.Handler
	base     context.Context // nil: context.Background()
	rwc      net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	remote   string
	tls      *tls.ConnectionState
	accepted int64 // coarse unix ns

	state    atomic.Int32
	deadline atomic.Int64 // coarse unix ns past which the watchdog closes the connection (0: none)
	since    atomic.Int64 // when the handler started (coarse)

	// While a request header is read: how much more may be read
	// (MaxHeaderBytes), and a copy of what was read, to count Host lines.
	limit     int64
	limitHit  bool
	recording bool
	scratch   []byte

	// The background read: mu guards it; cond signals its end.
	mu       sync.Mutex
	cond     sync.Cond
	bgOK     bool // the request's body is read and the handler runs
	inRead   bool
	hasByte  bool
	byteBuf  [1]byte
	gone     bool // the client went away (read EOF or an error)
	cancel   context.CancelCauseFunc
	hijacked bool

	header http.Header // the response header, reused
	keys   []string
	pend   []byte // a response body held until its length is known
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// errClientGone cancels a request's context when its client goes away.
var errClientGone = errors.New("client connection closed")

func (c *serverConn) serve() {
	s := c.s
	base := c.base
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(base, http.LocalAddrContextKey, c.rwc.LocalAddr()))
	c.cancel = cancel
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.logf("http: panic serving %v: %v\n%s", c.remote, err, buf)
		}
		cancel(nil)
		if c.hijacked {
			return
		}
		c.abortPendingRead()
		c.state.Store(stateClosed)
		_ = c.rwc.Close()
		s.forget(c)
		if c.br != nil {
			c.br.Reset(nil)
			readers.Put(c.br)
			c.bw.Reset(nil)
			writers.Put(c.bw)
		}
	}()

	c.setDeadline(s.ReadHeaderTimeout)
	if tc, ok := c.rwc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			s.logf("http: TLS handshake error from %s: %v", c.remote, err)
			return
		}
		st := tc.ConnectionState()
		c.tls = &st
	}
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(c.rwc)
	c.header = make(http.Header, 8)

	var lastMethod string
	for st := stateNew; ; st = stateIdle {
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(st, stateReading) {
			return // closed by Shutdown or the watchdog
		}
		if st == stateIdle {
			c.setDeadline(s.ReadHeaderTimeout)
		}
		req, err := c.readRequest(lastMethod)
		if err != nil {
			c.answerBadRequest(err)
			return
		}
		lastMethod = req.Method
		if !c.serveRequest(ctx, req) || c.hijacked {
			return
		}
		c.setDeadline(s.IdleTimeout)
		c.state.Store(stateIdle)
	}
}

func (c *serverConn) setDeadline(d time.Duration) {
	if d <= 0 {
		c.deadline.Store(0)
		return
	}
	c.deadline.Store(c.s.now.Load() + int64(d))
}

// Read is what the connection's bufio.Reader reads from: the socket, the
// byte the background read took, and the header's size limit.
func (c *serverConn) Read(p []byte) (int, error) {
	if c.limit <= 0 && c.recording {
		c.limitHit = true
		return 0, io.EOF
	}
	if c.recording && int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	var n int
	var err error
	if c.hasByte {
		p[0] = c.byteBuf[0]
		c.hasByte = false
		n = 1
	} else {
		n, err = c.rwc.Read(p)
	}
	if c.recording {
		c.limit -= int64(n)
		c.scratch = append(c.scratch, p[:n]...)
	}
	return n, err
}

// errTooLarge stands for a header past MaxHeaderBytes.
var errTooLarge = errors.New("http: request header too large")

// statusError is a request refused with a status of its own.
type statusError struct {
	code int
	text string
}

func (e statusError) Error() string { return http.StatusText(e.code) + ": " + e.text }

// readRequest reads one request header with http.ReadRequest and checks it
// as net/http's server does.
func (c *serverConn) readRequest(lastMethod string) (*http.Request, error) {
	maxHeader := c.s.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	if lastMethod == http.MethodPost {
		// RFC 7230 section 3: tolerate a CRLF after a POST body (up to
		// 4 CR or LF bytes, as net/http).
		peek, _ := c.br.Peek(4)
		if n := numLeadingCRorLF(peek); n > 0 {
			_, _ = c.br.Discard(n)
		}
	}
	buffered, _ := c.br.Peek(c.br.Buffered())
	c.scratch = append(c.scratch[:0], buffered...)
	c.limit = int64(maxHeader) + 4096 - int64(len(buffered)) // net/http's slack for the bufio.Reader
	c.limitHit, c.recording = false, true
	req, err := http.ReadRequest(c.br)
	c.recording = false
	scratch := c.scratch
	if cap(c.scratch) > 16<<10 {
		c.scratch = nil
	}
	if err != nil {
		if c.limitHit || c.limit <= 0 { // net/http: the limit reached, whatever the error
			return nil, errTooLarge
		}
		return nil, err
	}
	if req.ProtoMajor != 1 {
		return nil, statusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	hosts, host := hostLines(scratch)
	if req.ProtoAtLeast(1, 1) && hosts == 0 && req.Method != http.MethodConnect {
		return nil, statusError{http.StatusBadRequest, "missing required Host header"}
	}
	if hosts > 1 || hosts == 1 && !validHost(host, req.Host) {
		return nil, statusError{http.StatusBadRequest, "malformed Host header"}
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, statusError{http.StatusBadRequest, "invalid header name"}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, statusError{http.StatusBadRequest, "invalid header value"}
			}
		}
	}
	if expect := req.Header.Get("Expect"); expect != "" && !hasToken(expect, "100-continue") {
		return nil, statusError{http.StatusExpectationFailed, "unsupported Expect header"}
	}
	req.RemoteAddr = c.remote
	req.TLS = c.tls
	return req, nil
}

// hasToken reports whether v holds token (ASCII) in any case, between
// the ends of v, spaces, commas and tabs: net/http's test for
// "100-continue" in Expect, which accepts "100-continue, foo".
func hasToken(v, token string) bool {
	for i := 0; i+len(token) <= len(v); i++ {
		if (i == 0 || isTokenBoundary(v[i-1])) && (i+len(token) == len(v) || isTokenBoundary(v[i+len(token)])) &&
			asciiEqualFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func numLeadingCRorLF(v []byte) (n int) {
	for _, b := range v {
		if b == '\r' || b == '\n' {
			n++
			continue
		}
		break
	}
	return
}

// hostLines counts the Host lines of the request header at the start of b
// and returns the first one's value as textproto reads it: continuation
// lines (obs-fold) joined to it with a space. A line counts when it starts
// with "Host:" in any case; continuation lines start with a space or a tab
// and never count. http.ReadRequest has accepted the header, so its lines
// are well formed.
func hostLines(b []byte) (n int, first []byte) {
	i := bytes.IndexByte(b, '\n') // the request line
	for i >= 0 && i+1 < len(b) {
		line := b[i+1:]
		if line[0] == '\r' || line[0] == '\n' {
			break // the end of the header
		}
		j := bytes.IndexByte(line, '\n')
		if j < 0 {
			break
		}
		if len(line) >= 5 && (line[0]|0x20) == 'h' && (line[1]|0x20) == 'o' && (line[2]|0x20) == 's' && (line[3]|0x20) == 't' && line[4] == ':' {
			if n++; n == 1 {
				first = headerLineValue(line[5:j])
				for rest := line[j+1:]; len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t'); {
					e := bytes.IndexByte(rest, '\n')
					if e < 0 {
						break
					}
					folded := append(append(append([]byte(nil), first...), ' '), headerLineValue(rest[:e])...)
					first = bytes.TrimLeft(folded, " \t")
					rest = rest[e+1:]
				}
			}
		}
		i += 1 + j
	}
	return n, first
}

// headerLineValue trims a header line's text as textproto does: the CR of
// its CRLF, then spaces and tabs at both ends.
func headerLineValue(v []byte) []byte {
	v = bytes.TrimSuffix(v, []byte("\r"))
	return bytes.Trim(v, " \t")
}

// validHost is httpguts.ValidHostHeader of b, without a copy when b is
// known (an origin-form request's Host is the header's value).
func validHost(b []byte, known string) bool {
	if string(b) == known {
		return httpguts.ValidHostHeader(known)
	}
	return httpguts.ValidHostHeader(string(b))
}

// answerBadRequest writes the answer to a request that could not be read
// (nothing for a connection that closed or timed out).
func (c *serverConn) answerBadRequest(err error) {
	var status int
	var body string // net/http's text for it
	var se statusError
	switch {
	case errors.Is(err, errTooLarge):
		status, body = http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large"
	case fmt.Sprintf("%T", err) == "*http.unsupportedTEError": // "unsupported transfer encoding", "too many transfer encodings"
		status, body = http.StatusNotImplemented, "Unsupported transfer encoding"
	case isCommonNetReadError(err):
		return
	case errors.As(err, &se):
		status, body = se.code, fmt.Sprintf("%d %s: %s", se.code, http.StatusText(se.code), se.text)
	default:
		status, body = http.StatusBadRequest, "400 Bad Request"
	}
	var answer []byte
	if c.s.BadRequest != nil {
		answer = c.s.BadRequest(status, body)
	} else {
		line := fmt.Sprintf("%d %s", status, http.StatusText(status))
		if se.code != 0 {
			line = body
		}
		answer = []byte("HTTP/1.1 " + line + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + body)
	}
	_, _ = c.rwc.Write(answer)
	if status == http.StatusRequestHeaderFieldsTooLarge {
		// Let the client read the answer before it sees a reset for the
		// rest of its header (net/http's closeWriteAndWait).
		if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func isCommonNetReadError(err error) bool {
	if err == io.EOF || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// serveRequest runs the handler for req and finishes its answer; it
// reports whether the connection can serve another request.
func (c *serverConn) serveRequest(connCtx context.Context, req *http.Request) bool {
	ctx, cancel := context.WithCancel(connCtx)
	defer cancel()
	*req = *req.WithContext(ctx) // a copy on the stack, not a second request

	w := &response{c: c, req: req, contentLength: -1}
	clear(c.header)
	// net/http's reading of Connection (tokens between spaces or commas):
	// HTTP/1.1 closes on close, HTTP/1.0 is kept on keep-alive.
	if conn := req.Header.Get("Connection"); req.ProtoAtLeast(1, 1) {
		w.closeAfter = req.Close || hasToken(conn, "close")
	} else {
		w.closeAfter = !hasToken(conn, "keep-alive")
	}
	w.closeAfter = w.closeAfter || c.s.closed.Load()
	var rb *reqBody
	if req.Body != nil && req.Body != http.NoBody {
		rb = &reqBody{rc: req.Body, w: w}
		rb.expect = req.ProtoAtLeast(1, 1) && req.ContentLength != 0 && hasToken(req.Header.Get("Expect"), "100-continue")
		req.Body = rb
		w.body = rb
	}
	c.mu.Lock()
	c.bgOK = rb == nil
	c.mu.Unlock()
	c.deadline.Store(0)
	c.since.Store(c.s.now.Load())
	c.state.Store(stateActive)

	c.handler.ServeHTTP(w, req)

	if c.hijacked { // Hijack ended the background read
		c.mu.Lock()
		w.handlerDone, c.bgOK = true, false
		c.mu.Unlock()
		return false
	}
	if c.endRequest(w) || rb != nil && !rb.sawEOF.Load() {
		w.closeAfter = true // the client went away, or its body was not read to the end
	}
	w.finish()
	if rb != nil {
		if w.closeAfter && !rb.sawEOF.Load() {
			c.closeLingering()
		} else if w.closeAfter {
			_ = c.rwc.Close() // wakes a read of the body still in flight
		}
		rb.close()
	}
	return !w.closeAfter && !c.s.closed.Load()
}

// rstAvoidanceDelay is how long a connection closed with a request body
// unread lingers (net/http's figure).
const rstAvoidanceDelay = 500 * time.Millisecond

// closeLingering closes a connection whose client may still be sending a
// body the handler did not read. Closing a socket with unread bytes sends a
// reset, which can destroy the answer before the client reads it; so the
// write side is shut first (the client sees the answer's end) and what
// arrives is read and dropped until the client closes or rstAvoidanceDelay
// passes (RFC 9112 section 9.6). The deadline also wakes a read of the body
// still in flight.
func (c *serverConn) closeLingering() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(rstAvoidanceDelay))
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		if _, err := c.rwc.Read(*buf); err != nil {
			break
		}
	}
	_ = c.rwc.Close()
}

// startBackgroundRead starts the read that notices a client going away,
// if the request's body is read and the handler still runs (the watchdog
// calls it, with s.mu held).
func (c *serverConn) startBackgroundRead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.bgOK || c.inRead || c.hasByte || c.gone || c.hijacked {
		return
	}
	c.inRead = true
	go c.backgroundRead()
}

func (c *serverConn) backgroundRead() {
	n, err := c.rwc.Read(c.byteBuf[:])
	c.mu.Lock()
	if n == 1 {
		c.hasByte = true // the next request's first byte
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.gone = true
		c.cancel(errClientGone)
	}
	c.inRead = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// endRequest marks w's handler done, so the watchdog starts no background
// read for it, and ends the one that runs; it reports whether the client
// has gone away.
func (c *serverConn) endRequest(w *response) (gone bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.handlerDone, c.bgOK = true, false
	c.abortPendingReadLocked()
	return c.gone
}

// abortPendingRead ends the background read, if one runs, and waits for
// it; it reports whether the client has gone away.
func (c *serverConn) abortPendingRead() (gone bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abortPendingReadLocked()
	return c.gone
}

func (c *serverConn) abortPendingReadLocked() {
	if c.inRead {
		_ = c.rwc.SetReadDeadline(aLongTimeAgo)
		for c.inRead {
			c.cond.Wait()
		}
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
}

// reqBody is a request body as the handler sees it: it notes its end (the
// background read may start), answers Expect: 100-continue on the first
// read, and never drains the connection on Close.
type reqBody struct {
	mu     sync.Mutex
	rc     io.ReadCloser
	w      *response
	expect bool // send 100 Continue before the first read
	closed bool
	sawEOF atomic.Bool
	read   atomic.Bool // a read was attempted
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	b.read.Store(true)
	if b.expect {
		b.expect = false
		if !b.w.continueDone() {
			return 0, http.ErrBodyReadAfterClose
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF && !b.sawEOF.Swap(true) {
		c := b.w.c
		c.mu.Lock()
		if !b.w.handlerDone {
			c.bgOK = true
		}
		c.mu.Unlock()
	}
	return n, err
}

// Close only stops further reads: draining the rest is the server's call.
func (b *reqBody) Close() error {
	b.close()
	return nil
}

func (b *reqBody) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// response is the http.ResponseWriter of one request.
type response struct {
	c             *serverConn
	req           *http.Request
	body          *reqBody // nil: the request has none
	status        int      // 0 until WriteHeader
	committed     bool     // the header is in the write buffer
	contentLength int64    // -1: unknown
	written       int64
	chunked       bool
	noBody        bool // HEAD, 1xx, 204, 304
	closeAfter    bool
	late          http.Header // the handler's copy of the header after WriteHeader
	handlerDone   bool        // guarded by c.mu
	err           error

	continueMu   sync.Mutex // orders 100 Continue before the header
	continueSent bool
}

// Header is the header to send until WriteHeader; after it, a copy whose
// changes are not sent, as with net/http.
func (w *response) Header() http.Header {
	if w.late != nil {
		return w.late
	}
	if w.status != 0 && !w.committed {
		w.late = w.c.header.Clone()
		return w.late
	}
	return w.c.header
}

func (w *response) WriteHeader(code int) {
	if w.status != 0 || w.c.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.status = code
	h := w.c.header
	if cl := h.Get("Content-Length"); cl != "" {
		if v, ok := parseContentLength(cl); ok {
			w.contentLength = v
		} else {
			w.c.s.logf("http: invalid Content-Length of %q", cl)
			h.Del("Content-Length")
		}
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
}

func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// writeInformational sends a 1xx answer now (the final one follows).
func (w *response) writeInformational(code int) {
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	bw := w.c.bw
	writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), code)
	w.writeHeaderLines(bw, true)
	_, _ = bw.WriteString("\r\n")
	w.err = bw.Flush()
}

// continueDone sends 100 Continue unless the final answer has begun; it
// reports whether the body may be read.
func (w *response) continueDone() bool {
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	if w.committed {
		return false
	}
	if !w.continueSent {
		w.continueSent = true
		if _, err := w.c.rwc.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
			return false
		}
	}
	return true
}

func (w *response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed {
		if w.contentLength < 0 && len(w.c.pend)+len(p) <= 2048 {
			w.c.pend = append(w.c.pend, p...) // the length may yet be known
			return len(p), nil
		}
		w.commit()
	}
	return w.writeBody(p)
}

// writeBody writes p to the buffer, as a chunk when chunked.
func (w *response) writeBody(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		_, _ = bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// ReadFrom copies a body: into the write buffer's free space first (a small
// answer leaves in one write with its header), then straight to the
// connection through a pooled buffer.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked || w.noBody || w.contentLength < 0 || w.c.hijacked || w.err != nil {
		buf := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(buf)
		return io.CopyBuffer(writerOnly{w}, src, *buf)
	}
	if !w.committed {
		w.commit()
	}
	bw := w.c.bw
	var total int64
	for empty := 0; w.written < w.contentLength && bw.Available() > 0; {
		room := bw.AvailableBuffer()
		room = room[:min(int64(cap(room)), w.contentLength-w.written)]
		n, err := src.Read(room)
		if n == 0 && err == nil {
			if empty++; empty > 100 {
				return total, io.ErrNoProgress
			}
			continue
		}
		_, _ = bw.Write(room[:n])
		w.written += int64(n)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	if w.written >= w.contentLength {
		return total, nil
	}
	if err := bw.Flush(); err != nil {
		w.err = err
		return total, err
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	n, err := io.CopyBuffer(writerOnly{w.c.rwc}, io.LimitReader(src, w.contentLength-w.written), *buf)
	w.written += n
	total += n
	if err != nil {
		w.err = err
	}
	return total, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type writerOnly struct{ io.Writer }

// Flush sends what is buffered: the header, and the body so far (as
// chunks when the length is unknown).
func (w *response) Flush() {
	if w.c.hijacked {
		return
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit()
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
}

// Hijack hands the connection over, with what is buffered for it.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.committed {
		_ = c.bw.Flush()
	}
	c.mu.Lock()
	c.hijacked = true // before the abort: the watchdog starts no read after it
	c.mu.Unlock()
	c.abortPendingRead()
	c.mu.Lock()
	hasByte := c.hasByte
	c.mu.Unlock()
	if hasByte {
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			return nil, nil, fmt.Errorf("h1: reading the buffered byte: %w", err)
		}
	}
	c.state.Store(stateClosed)
	c.s.forget(c)
	return c.rwc, bufio.NewReadWriter(c.br, c.bw), nil
}

// commit puts the status line and header in the write buffer, deciding the
// body's framing: Content-Length (given, or known because the handler is
// done), chunked, or until close (HTTP/1.0).
func (w *response) commit() {
	c := w.c
	if w.body != nil {
		w.continueMu.Lock()
		w.committed = true
		w.continueMu.Unlock()
		if !w.body.read.Load() {
			w.closeAfter = true // the body is not drained to keep the connection
		}
	} else {
		w.committed = true
	}
	h := c.header
	h.Del("Transfer-Encoding")
	if !w.noBody && w.contentLength < 0 {
		if w.handlerDone {
			w.contentLength = int64(len(c.pend))
			h.Set("Content-Length", strconv.FormatInt(w.contentLength, 10))
		} else if w.req.ProtoAtLeast(1, 1) {
			w.chunked = true
		} else {
			w.closeAfter = true
		}
	}
	if !w.req.ProtoAtLeast(1, 1) && !w.closeAfter {
		// HTTP/1.0 that asked for keep-alive
		if w.contentLength < 0 && !w.noBody {
			w.closeAfter = true
		} else if _, ok := h["Connection"]; !ok {
			h.Set("Connection", "keep-alive") // unless the handler said something
		}
	}
	if w.chunked || w.contentLength < 0 {
		h.Del("Content-Length") // one the handler put in the map after WriteHeader
	}
	if w.status < 200 || w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		// what net/http leaves out of answers that cannot have a body
		h.Del("Content-Length")
		if w.status == http.StatusNotModified {
			h.Del("Content-Type")
		}
	}
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	if c.s.closed.Load() {
		w.closeAfter = true
	}
	if w.closeAfter && !hasToken(h.Get("Connection"), "close") {
		// as net/http: Connection: close, or for HTTP/1.0 nothing (the
		// default), unless the handler's Connection says close
		h.Del("Connection")
		if w.req.ProtoAtLeast(1, 1) {
			h.Set("Connection", "close")
		}
	}
	bw := c.bw
	writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), w.status)
	w.writeHeaderLines(bw, false)
	if _, ok := h["Date"]; !ok {
		_, _ = bw.Write(*c.s.date.Load())
	}
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if len(c.pend) > 0 {
		pend := c.pend
		c.pend = c.pend[:0]
		_, _ = w.writeBody(pend)
	}
}

// writeHeaderLines writes the header in key order, as net/http does: names
// that are not valid tokens are left out, line breaks in values become
// spaces; a 1xx answer (informational) has no framing lines.
func (w *response) writeHeaderLines(bw *bufio.Writer, informational bool) {
	h := w.c.header
	keys := w.c.keys[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.c.keys = keys
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) || informational && (k == "Content-Length" || k == "Transfer-Encoding") {
			continue
		}
		for _, v := range h[k] {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			writeValue(bw, v)
			_, _ = bw.WriteString("\r\n")
		}
	}
}

// newlineToSpace makes a header value one line (no response splitting).
var newlineToSpace = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")

func writeValue(bw *bufio.Writer, v string) {
	v = textproto.TrimString(v)
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	_, _ = bw.WriteString(v)
}

// writeStatusLine writes the status line in the request's version, as
// net/http does: HTTP/1.0 to HTTP/1.0 requests.
func writeStatusLine(bw *bufio.Writer, is11 bool, code int) {
	if is11 {
		_, _ = bw.WriteString("HTTP/1.1 ")
	} else {
		_, _ = bw.WriteString("HTTP/1.0 ")
	}
	digits := func() {
		_ = bw.WriteByte(byte('0' + code/100%10))
		_ = bw.WriteByte(byte('0' + code/10%10))
		_ = bw.WriteByte(byte('0' + code%10))
	}
	digits()
	_ = bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		_, _ = bw.WriteString(text)
	} else {
		_, _ = bw.WriteString("status code ")
		digits()
	}
	_, _ = bw.WriteString("\r\n")
}

// finish completes the answer after the handler: the header if none was
// written, the end of a chunked body, and the write of what is buffered.
func (w *response) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit()
	}
	bw := w.c.bw
	if w.chunked {
		_, _ = bw.WriteString("0\r\n\r\n")
	}
	if w.contentLength >= 0 && w.written < w.contentLength && !w.noBody {
		w.closeAfter = true // the client sees a short body and a close
	}
	if err := bw.Flush(); err != nil || w.err != nil {
		w.closeAfter = true
	}
	if cap(w.c.pend) > 2048 {
		w.c.pend = nil
	}
	w.c.pend = w.c.pend[:0]
}
