package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// These tests run h1.Server on loopback sockets and speak raw HTTP/1.x to
// it, modelled on net/http's serve_test.go; where the two servers should
// agree, the same bytes go to an http.Server too.

// testServer is an h1.Server serving a loopback listener.
type testServer struct {
	*Server
	addr   string
	log    *testlog.Buffer
	served chan error // Serve's result
	writes atomic.Int64
}

// startServer serves h on 127.0.0.1 with an h1.Server that opts adjust,
// and closes it when the test ends.
func startServer(t testing.TB, h http.Handler, opts ...func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), log: &testlog.Buffer{}, served: make(chan error, 1)}
	ts.Server = &Server{Handler: h, ErrorLog: log.New(ts.log, "", 0)}
	for _, o := range opts {
		o(ts.Server)
	}
	go func() { ts.served <- ts.Serve(countingListener{ln, &ts.writes}) }()
	t.Cleanup(func() {
		_ = ts.Close()
		if err := <-ts.served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
		ts.served <- http.ErrServerClosed // for a test that waits for it again
	})
	return ts
}

// countingListener counts the writes made on its connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{c.(*net.TCPConn), l.n}, nil
}

type countingConn struct {
	*net.TCPConn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.TCPConn.Write(p)
}

// startStd serves h with net/http's server, for comparisons.
func startStd(t testing.TB, h http.Handler, opts ...func(*http.Server)) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// conns lists the server's connections.
func (s *Server) connList() []*serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []*serverConn
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// waitFor polls cond, for state that no channel reports.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !poll(t, what, cond) {
		t.FailNow()
	}
}

// poll is waitFor for a handler's goroutine: it reports a timeout with
// Errorf and returns false.
func poll(t testing.TB, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// client is a raw connection to a server under test.
type client struct {
	t testing.TB
	net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, Conn: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// answer is a response read whole.
type answer struct {
	*http.Response
	body    string
	bodyErr error
}

// read reads the next response (to a request with method) and its body.
func (c *client) read(method string) answer {
	c.t.Helper()
	a, err := c.tryRead(method)
	if err != nil {
		c.t.Fatalf("reading the response to %s: %v", method, err)
	}
	return a
}

func (c *client) tryRead(method string) (answer, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return answer{}, err
	}
	b, err := io.ReadAll(resp.Body)
	return answer{Response: resp, body: string(b), bodyErr: err}, nil
}

// expectClosed asserts that the server closes the connection without
// sending anything more.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Fatalf("read %q, want the connection closed", append([]byte{b}, rest...))
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.Fatalf("the connection is still open")
	case err != io.EOF && !errors.Is(err, syscall.ECONNRESET):
		c.t.Fatalf("read: %v, want EOF", err)
	}
}

func handle(f func(w http.ResponseWriter, r *http.Request)) http.Handler { return http.HandlerFunc(f) }

// echo answers with the method, path and request body.
var echo = handle(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
})

func getReq(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// ---- 1. keep-alive and pipelining ----

func TestServerKeepAlive(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	for i := range 5 {
		path := "/" + strconv.Itoa(i)
		c.send(getReq(path))
		a := c.read("GET")
		if a.StatusCode != 200 || a.body != "GET "+path+" " || a.Close {
			t.Fatalf("request %d: %d %q close=%v", i, a.StatusCode, a.body, a.Close)
		}
	}
	c.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if a := c.read("POST"); a.body != "POST /p abc" || a.Close {
		t.Fatalf("POST: %q close=%v", a.body, a.Close)
	}
	// RFC 7230 section 3: a CRLF after a POST body is tolerated (net/http
	// skips up to 4 CR or LF bytes).
	for _, crlf := range []string{"\r\n", "\n", "\r\n\n", "\r\n\r\n"} {
		c.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + crlf + getReq("/after"))
		c.read("POST")
		if a := c.read("GET"); a.body != "GET /after " {
			t.Fatalf("after POST and %q: %q", crlf, a.body)
		}
	}
}

func TestServerKeepAliveClient(t *testing.T) {
	ts := startServer(t, echo)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Transport: tr}
	for i := range 5 {
		reused := false
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ts.addr+"/k", strings.NewReader("body"))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(b) != "POST /k body" || reused != (i > 0) {
			t.Fatalf("request %d: %q reused=%v", i, b, reused)
		}
	}
}

func TestServerPipelined(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	c.send(getReq("/1") + "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" + "HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n" + getReq("/4"))
	for _, want := range []struct{ method, body string }{
		{"GET", "GET /1 "}, {"POST", "POST /2 hi"}, {"HEAD", ""}, {"GET", "GET /4 "},
	} {
		if a := c.read(want.method); a.body != want.body || a.StatusCode != 200 {
			t.Fatalf("%s: %d %q, want %q", want.method, a.StatusCode, a.body, want.body)
		}
	}
}

// ---- 2. Connection management ----

func TestServerConnectionClose(t *testing.T) {
	ts := startServer(t, echo)
	tests := []struct {
		name      string
		req       string
		body      string
		wantConn  string // the answer's Connection header
		wantClose bool
	}{
		{"1.1 close", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET /a ", "close", true},
		{"1.1 close token", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n", "GET /a ", "close", true},
		{"1.0", "GET /b HTTP/1.0\r\n\r\n", "GET /b ", "close", true}, // an HTTP/1.0 answer without keep-alive
		{"1.0 keep-alive", "GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET /c ", "keep-alive", false},
		{"1.1", getReq("/d"), "GET /d ", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(tt.req)
			a := c.read("GET")
			// http.ReadResponse takes "Connection: close" out into Close.
			conn := a.Header.Get("Connection")
			if a.Close {
				conn = "close"
			}
			if a.body != tt.body || conn != tt.wantConn {
				t.Fatalf("got %q Connection=%q, want %q Connection=%q", a.body, conn, tt.body, tt.wantConn)
			}
			if a.ContentLength != int64(len(tt.body)) {
				t.Errorf("Content-Length %d, want %d", a.ContentLength, len(tt.body))
			}
			if tt.wantClose {
				c.expectClosed()
				return
			}
			c.send(tt.req) // still open: a second request is answered
			if a := c.read("GET"); a.body != tt.body {
				t.Fatalf("second request: %q", a.body)
			}
		})
	}
}

// Whether a connection is kept after an answer, and the answer's
// Connection header, as net/http decides them from the request's
// Connection header (its tokens may be separated by spaces too).
func TestServerConnectionHeaderVsNetHTTP(t *testing.T) {
	h := handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nolength" {
			_, _ = io.WriteString(w, "x")
			w.(http.Flusher).Flush()
			return
		}
		if r.URL.Path == "/handler-close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, "x")
	})
	std := startStd(t, h)
	lean := startServer(t, h)
	outcome := func(addr, req string) string {
		c := dial(t, addr)
		var raw bytes.Buffer
		c.br = bufio.NewReader(io.TeeReader(c.Conn, &raw))
		c.send(req + getReq("/next"))
		a := c.read("GET")
		head, _, _ := strings.Cut(raw.String(), "\r\n\r\n")
		conn := "none"
		for _, line := range strings.Split(head, "\r\n") {
			if v, ok := strings.CutPrefix(line, "Connection: "); ok {
				conn = v
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := http.ReadResponse(c.br, nil)
		return fmt.Sprintf("%s Connection=%q next=%v", a.Proto, conn, err == nil)
	}
	for _, tt := range []struct{ proto, conn, path string }{
		{"HTTP/1.1", "", "/"},
		{"HTTP/1.1", "close", "/"},
		{"HTTP/1.1", "Close", "/"},
		{"HTTP/1.1", "keep-alive, close", "/"},
		{"HTTP/1.1", "closed", "/"},
		{"HTTP/1.1", "0 Close", "/"},
		{"HTTP/1.0", "foo keep-alive", "/"},
		{"HTTP/1.0", "keep-alive, close", "/"},
		{"HTTP/1.1", "", "/handler-close"},
		{"HTTP/1.0", "", "/"},
		{"HTTP/1.0", "keep-alive", "/"},
		{"HTTP/1.0", "Keep-Alive", "/"},
		{"HTTP/1.0", "keep-alive", "/nolength"},
		{"HTTP/1.0", "keep-alive", "/handler-close"},
		{"HTTP/1.0", "keep-alived", "/"},
	} {
		req := "GET " + tt.path + " " + tt.proto + "\r\nHost: x\r\n"
		if tt.conn != "" {
			req += "Connection: " + tt.conn + "\r\n"
		}
		req += "\r\n"
		if want, got := outcome(std, req), outcome(lean.addr, req); got != want {
			t.Errorf("%s Connection: %q %s: h1 %s, net/http %s", tt.proto, tt.conn, tt.path, got, want)
		}
	}
}

func TestServerHTTP10UnknownLength(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "part one ")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "part two")
	}))
	c := dial(t, ts.addr)
	c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	a := c.read("GET")
	if a.body != "part one part two" || a.bodyErr != nil {
		t.Fatalf("body %q, %v", a.body, a.bodyErr)
	}
	if a.ContentLength != -1 || len(a.TransferEncoding) != 0 || a.Header.Get("Connection") != "" {
		t.Errorf("length %d, TE %q, Connection %q: want a body until close", a.ContentLength, a.TransferEncoding, a.Header.Get("Connection"))
	}
	c.expectClosed()
}

// ---- 3. response framing ----

func TestServerResponseFraming(t *testing.T) {
	big := strings.Repeat("b", 3000)
	tests := []struct {
		name    string
		method  string
		h       func(w http.ResponseWriter, r *http.Request)
		status  int
		cl      int64 // -1: none
		chunked bool
		body    string
	}{
		{"handler's length", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}, 200, 5, false, "hello"},
		{"handler's length, big", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3000")
			_, _ = io.WriteString(w, big)
		}, 200, 3000, false, big},
		{"small body, length computed", "GET", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "small")
			_, _ = io.WriteString(w, " body")
		}, 200, 10, false, "small body"},
		{"no body", "GET", func(w http.ResponseWriter, r *http.Request) {}, 200, 0, false, ""},
		{"status only", "GET", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, 404, 0, false, ""},
		{"big body, chunked", "GET", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, big)
		}, 200, -1, true, big},
		{"flushed, chunked", "GET", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "b")
		}, 200, -1, true, "ab"},
		{"HEAD keeps the length", "HEAD", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}, 200, 5, false, ""},
		{"HEAD without length", "HEAD", func(w http.ResponseWriter, r *http.Request) {
		}, 200, -1, false, ""},
		{"204", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				t.Errorf("Write after 204: %v", err)
			}
		}, 204, -1, false, ""},
		{"304", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(304)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				t.Errorf("Write after 304: %v", err)
			}
		}, 304, -1, false, ""},
		{"304 flushed", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(304)
			w.(http.Flusher).Flush()
		}, 304, -1, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, handle(tt.h))
			c := dial(t, ts.addr)
			c.send(tt.method + " / HTTP/1.1\r\nHost: x\r\n\r\n")
			a := c.read(tt.method)
			if a.StatusCode != tt.status || a.body != tt.body || a.bodyErr != nil {
				t.Fatalf("%d %q %v, want %d %q", a.StatusCode, a.body, a.bodyErr, tt.status, tt.body)
			}
			cl, hasCL := int64(-1), a.Header["Content-Length"] != nil
			if hasCL {
				cl, _ = strconv.ParseInt(a.Header.Get("Content-Length"), 10, 64)
			}
			if cl != tt.cl {
				t.Errorf("Content-Length %d (%v), want %d", cl, a.Header["Content-Length"], tt.cl)
			}
			if chunked := len(a.TransferEncoding) > 0; chunked != tt.chunked {
				t.Errorf("chunked %v, want %v", chunked, tt.chunked)
			}
			// The connection stays usable: nothing was left behind.
			c.send(getReq("/next"))
			if a := c.read("GET"); a.StatusCode != 200 && a.StatusCode != tt.status {
				t.Errorf("next request: %d", a.StatusCode)
			}
		})
	}
}

// The client gets a flushed chunk while the handler still runs.
func TestServerFlushStreams(t *testing.T) {
	release := make(chan struct{})
	done := make(chan struct{})
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second")
	}))
	c := dial(t, ts.addr)
	c.send(getReq("/"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("TransferEncoding %q, want chunked", resp.TransferEncoding)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first chunk: %q %v", buf, err)
	}
	select {
	case <-done:
		t.Fatal("the handler returned before the client read the first chunk")
	default:
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest: %q %v", rest, err)
	}
}

func TestServerContentLengthMismatch(t *testing.T) {
	werr := make(chan error, 1)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/long":
			w.Header().Set("Content-Length", "3")
			_, err := io.WriteString(w, "too long")
			werr <- err
		case "/short":
			w.Header().Set("Content-Length", "10")
			_, err := io.WriteString(w, "short")
			werr <- err
		}
	}))
	t.Run("long", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(getReq("/long"))
		if err := <-werr; err != http.ErrContentLength {
			t.Errorf("Write: %v, want http.ErrContentLength", err)
		}
		a := c.read("GET")
		if a.ContentLength != 3 || a.bodyErr != io.ErrUnexpectedEOF {
			t.Errorf("Content-Length %d, body %q %v: want 3 and a short body", a.ContentLength, a.body, a.bodyErr)
		}
		c.expectClosed()
	})
	t.Run("short", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(getReq("/short"))
		if err := <-werr; err != nil {
			t.Errorf("Write: %v", err)
		}
		a := c.read("GET")
		if a.ContentLength != 10 || a.body != "short" || a.bodyErr != io.ErrUnexpectedEOF {
			t.Errorf("Content-Length %d, body %q %v: want 10 and a short body", a.ContentLength, a.body, a.bodyErr)
		}
		c.expectClosed()
	})
}

// ---- 4. ReadFrom ----

// plainReader hides a reader's WriterTo, as an upstream body does.
type plainReader struct{ r io.Reader }

func (p *plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// pattern returns n bytes that differ from one position to the next.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestServerReadFrom(t *testing.T) {
	for _, n := range []int{0, 1, 100, 4095, 4096, 4097, 64 << 10, 1 << 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			body := pattern(n)
			ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(n))
				m, err := w.(io.ReaderFrom).ReadFrom(&plainReader{bytes.NewReader(body)})
				if m != int64(n) || err != nil {
					t.Errorf("ReadFrom: %d %v", m, err)
				}
			}))
			c := dial(t, ts.addr)
			c.send(getReq("/"))
			a := c.read("GET")
			if a.ContentLength != int64(n) || a.bodyErr != nil || a.body != string(body) {
				t.Fatalf("Content-Length %d, %d bytes (%v), equal=%v", a.ContentLength, len(a.body), a.bodyErr, a.body == string(body))
			}
			if n <= 100 {
				if w := ts.writes.Load(); w != 1 {
					t.Errorf("%d writes for a %d-byte answer, want it in one with the header", w, n)
				}
			}
			c.send(getReq("/"))
			if a := c.read("GET"); a.body != string(body) {
				t.Fatal("second answer differs")
			}
		})
	}
	t.Run("unknown length", func(t *testing.T) {
		body := pattern(100 << 10)
		ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
			if _, err := w.(io.ReaderFrom).ReadFrom(&plainReader{bytes.NewReader(body)}); err != nil {
				t.Error(err)
			}
		}))
		c := dial(t, ts.addr)
		c.send(getReq("/"))
		a := c.read("GET")
		if len(a.TransferEncoding) != 1 || a.body != string(body) || a.bodyErr != nil {
			t.Fatalf("TE %q, %d bytes %v", a.TransferEncoding, len(a.body), a.bodyErr)
		}
	})
	t.Run("source longer than length", func(t *testing.T) {
		ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5000")
			_, _ = w.(io.ReaderFrom).ReadFrom(&plainReader{bytes.NewReader(pattern(9000))})
		}))
		c := dial(t, ts.addr)
		c.send(getReq("/") + getReq("/"))
		for range 2 {
			if a := c.read("GET"); a.body != string(pattern(5000)) {
				t.Fatalf("%d bytes", len(a.body))
			}
		}
	})
	t.Run("source shorter than length", func(t *testing.T) {
		ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "50000")
			_, _ = w.(io.ReaderFrom).ReadFrom(&plainReader{bytes.NewReader(pattern(40000))})
		}))
		c := dial(t, ts.addr)
		c.send(getReq("/"))
		if a := c.read("GET"); len(a.body) != 40000 || a.bodyErr != io.ErrUnexpectedEOF {
			t.Fatalf("%d bytes %v", len(a.body), a.bodyErr)
		}
		c.expectClosed()
	})
}

// ---- 5. request bodies ----

func TestServerRequestBody(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		_, _ = fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	body := pattern(1 << 20)
	want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body))
	cl := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(cl.CloseIdleConnections)
	for _, chunked := range []bool{false, true} {
		for range 2 { // the second on the kept-alive connection
			var r io.Reader = bytes.NewReader(body)
			if chunked {
				r = &plainReader{r}
			}
			resp, err := cl.Post("http://"+ts.addr+"/", "application/octet-stream", r)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(got) != want {
				t.Errorf("chunked=%v: handler read %q, want %q", chunked, got, want)
			}
		}
	}
	// chunked on the wire, with extensions and a trailer
	c := dial(t, ts.addr)
	c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
	if a := c.read("POST"); a.body != fmt.Sprintf("5 %x", sha256.Sum256([]byte("abcde"))) {
		t.Errorf("chunked: %q", a.body)
	}
}

func TestServerExpectContinue(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			b, err := io.ReadAll(r.Body)
			_, _ = fmt.Fprintf(w, "%s %v", b, err)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	hdr := "POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"

	t.Run("read", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(fmt.Sprintf(hdr, "/read"))
		if a := c.read("POST"); a.StatusCode != 100 {
			t.Fatalf("first answer %d, want 100", a.StatusCode)
		}
		c.send("hello")
		a := c.read("POST")
		if a.StatusCode != 200 || a.body != "hello <nil>" || a.Close {
			t.Fatalf("%d %q close=%v", a.StatusCode, a.body, a.Close)
		}
		c.send(getReq("/read")) // kept alive
		if a := c.read("GET"); a.body != " <nil>" {
			t.Fatalf("next: %q", a.body)
		}
	})
	t.Run("in a list", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(strings.Replace(fmt.Sprintf(hdr, "/read"), "100-continue", "foo, 100-Continue", 1))
		if a := c.read("POST"); a.StatusCode != 100 {
			t.Fatalf("first answer %d, want 100", a.StatusCode)
		}
		c.send("hello")
		if a := c.read("POST"); a.StatusCode != 200 || a.body != "hello <nil>" {
			t.Fatalf("%d %q", a.StatusCode, a.body)
		}
	})
	t.Run("not read", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(fmt.Sprintf(hdr, "/deny"))
		a := c.read("POST")
		if a.StatusCode != http.StatusForbidden || !a.Close {
			t.Fatalf("%d close=%v, want 403 and Connection: close", a.StatusCode, a.Close)
		}
		c.expectClosed()
	})
	t.Run("HTTP/1.0", func(t *testing.T) { // no 100 Continue for HTTP/1.0
		c := dial(t, ts.addr)
		c.send(strings.Replace(fmt.Sprintf(hdr, "/read"), "HTTP/1.1", "HTTP/1.0", 1) + "hello")
		if a := c.read("POST"); a.StatusCode != 200 || a.body != "hello <nil>" {
			t.Fatalf("%d %q", a.StatusCode, a.body)
		}
	})
}

func TestServerUnreadBody(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/some" {
			_, _ = io.ReadFull(r.Body, make([]byte, 2))
		}
		_, _ = io.WriteString(w, "ignored")
	}))
	for _, path := range []string{"/none", "/some"} {
		t.Run(path, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send("POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + getReq("/next"))
			a := c.read("POST")
			if a.body != "ignored" || !a.Close {
				t.Fatalf("%q close=%v, want Connection: close", a.body, a.Close)
			}
			c.expectClosed()
		})
	}
}

// A client still sending a body the handler refused without reading gets
// the answer, not a reset: the server stops writing and lingers before it
// closes (net/http's closeWriteAndWait).
func TestServerUnreadBigBody(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/some" {
			_, _ = io.ReadFull(r.Body, make([]byte, 100))
		}
		http.Error(w, "refused", http.StatusForbidden)
	}))
	body := make([]byte, 8<<20)
	for i := range 10 {
		path := []string{"/none", "/some"}[i%2]
		tr := &http.Transport{}
		resp, err := (&http.Client{Transport: tr}).Post("http://"+ts.addr+path, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusForbidden || !resp.Close || string(b) != "refused\n" {
			t.Fatalf("%s: %d close=%v %q", path, resp.StatusCode, resp.Close, b)
		}
	}
	waitFor(t, "the connections' end", func() bool { return len(ts.connList()) == 0 })
}

// A proxy reads the request body on another goroutine (the upstream
// request's) while the handler writes the answer.
func TestServerBodyOnAnotherGoroutine(t *testing.T) {
	type result struct {
		body []byte
		err  error
	}
	readDone := make(chan result, 1)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" {
			return
		}
		got := make(chan []byte, 1)
		answered := make(chan struct{})
		go func() {
			if r.URL.Path == "/answer" {
				<-answered
			}
			b, err := io.ReadAll(r.Body)
			got <- b
			readDone <- result{b, err}
		}()
		switch r.URL.Path {
		case "/return": // the handler does not wait for the reader
			return
		case "/reading": // the answer begins once the body is being read (after 100 Continue)
			rw := w.(*response)
			poll(t, "the body's read", func() bool {
				rw.continueMu.Lock()
				defer rw.continueMu.Unlock()
				return rw.body.read.Load() && (r.Header.Get("Expect") == "" || rw.continueSent)
			})
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "answer while reading;")
		w.(http.Flusher).Flush()
		close(answered)
		b := <-got
		_, _ = fmt.Fprintf(w, " read %d bytes", len(b))
	}))
	for _, tt := range []struct {
		name, path string
		expect     bool
		readErr    error
		keep       bool
	}{
		{"reading", "/reading", false, nil, true},
		{"reading, 100-continue", "/reading", true, nil, true},
		// The answer began before the body's read: the body is not
		// drained, and with Expect: 100-continue no longer read.
		{"answer first, 100-continue", "/answer", true, http.ErrBodyReadAfterClose, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			hdr := "POST " + tt.path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
			if tt.expect {
				hdr += "Expect: 100-continue\r\n"
			}
			c.send(hdr + "\r\n")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.expect == (tt.readErr == nil) {
				if resp.StatusCode != 100 {
					t.Fatalf("%d, want 100 Continue", resp.StatusCode)
				}
				if resp, err = http.ReadResponse(c.br, nil); err != nil {
					t.Fatal(err)
				}
			}
			first := make([]byte, len("answer while reading;"))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("%q %v", first, err)
			}
			if tt.readErr == nil {
				c.send("0123456789")
			}
			rest, _ := io.ReadAll(resp.Body)
			if res := <-readDone; res.err != tt.readErr {
				t.Fatalf("body read: %v, want %v", res.err, tt.readErr)
			}
			if want := map[bool]string{true: " read 10 bytes", false: " read 0 bytes"}[tt.readErr == nil]; string(rest) != want {
				t.Errorf("%q, want %q", rest, want)
			}
			if resp.Close == tt.keep {
				t.Errorf("Connection: close %v, want %v", resp.Close, !tt.keep)
			}
			if tt.keep {
				c.send(getReq("/"))
				c.read("GET")
			} else {
				c.expectClosed()
			}
		})
	}
	t.Run("handler returns first", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /return HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
		a := c.read("POST")
		if !a.Close {
			t.Error("the connection is kept with a body being read")
		}
		c.send("56789")
		select {
		case res := <-readDone: // the read in flight may end with the body or with an error
			if res.err == nil && string(res.body) != "0123456789" {
				t.Errorf("body read after the handler returned: %q", res.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the body read after the handler returned did not end")
		}
	})
}

func TestServerBodyAfterHandler(t *testing.T) {
	bodies := make(chan io.ReadCloser, 1)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			_, _ = io.ReadAll(r.Body)
		}
		if r.Method == "POST" {
			bodies <- r.Body
		}
	}))
	t.Run("read", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		c.read("POST")
		c.send(getReq("/")) // the first request is over once the second is answered
		c.read("GET")
		if n, err := (<-bodies).Read(make([]byte, 10)); err == nil {
			t.Errorf("Read after the handler: %d, nil", n)
		}
	})
	t.Run("unread", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		c.read("POST")
		c.expectClosed()
		waitFor(t, "the connection's end", func() bool { return len(ts.connList()) == 0 })
		if n, err := (<-bodies).Read(make([]byte, 10)); err != http.ErrBodyReadAfterClose {
			t.Errorf("Read after the handler: %d, %v", n, err)
		}
	})
}

// ---- 6. requests that cannot be served, against net/http ----

// rawStatus sends raw on a new connection and returns the answer's
// status (0: the connection closed without one).
func rawStatus(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	c := dial(t, addr)
	go func() { _, _ = io.WriteString(c.Conn, raw) }() // a big header may not be read whole
	for {
		a, err := c.tryRead("GET")
		if err != nil {
			return 0, err.Error()
		}
		if a.StatusCode != http.StatusContinue {
			return a.StatusCode, a.body
		}
	}
}

func TestServerBadRequests(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want int // 200: both run the handler
	}{
		{"no Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"no Host on 1.0", "GET / HTTP/1.0\r\n\r\n", 200},
		{"no Host on CONNECT", "CONNECT x:443 HTTP/1.1\r\n\r\n", 200},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 200},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"two Hosts, cases", "GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n", 400},
		{"two Hosts on 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"invalid Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"invalid Host byte", "GET / HTTP/1.1\r\nHost: \xff\r\n\r\n", 400},
		{"invalid Host, absolute URI", "GET http://a/ HTTP/1.1\r\nHost: {\r\n\r\n", 400},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200},
		{"folded Host", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400},
		{"folded Host, tab", "GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", 400},
		{"folded Host, blank fold", "GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n", 400},
		{"folded Host, empty first line", "GET / HTTP/1.1\r\nHost:\r\n example.com\r\n\r\n", 200},
		{"folded Host, absolute URI", "GET http://a/ HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400},
		{"folded header before Host", "GET / HTTP/1.1\r\nX: a\r\n b\r\nHost: c\r\n\r\n", 200},
		{"Host ending in CR", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400},
		{"Host with tabs", "GET / HTTP/1.1\r\nHost:\ta\t\r\n\r\n", 200},
		{"invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nA B: c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nA : c\r\n\r\n", 400},
		{"empty header name", "GET / HTTP/1.1\r\nHost: x\r\n: c\r\n\r\n", 400},
		{"binary header name", "GET / HTTP/1.1\r\nHost: x\r\nA\x00: c\r\n\r\n", 400},
		{"bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", 400},
		{"DEL in a value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x7fc\r\n\r\n", 400},
		{"bare LF lines", "GET / HTTP/1.1\nHost: x\nA: b\n\n", 200},
		{"Content-Length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200},
		{"two Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400},
		{"bad Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc", 400},
		{"bad Content-Length, chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"unknown Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"two Transfer-Encoding lines", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"Expect: something else", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417},
		{"Expect: a list with 100-continue", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\nContent-Length: 1\r\n\r\nx", 200},
		{"Expect: 100-Continue later in a list", "POST / HTTP/1.1\r\nHost: x\r\nExpect: foo,100-Continue\r\nContent-Length: 1\r\n\r\nx", 200},
		{"Expect: 100-continue as a prefix", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continuex\r\nContent-Length: 1\r\n\r\nx", 417},
		{"Expect on a bodyless request", "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", 200},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431},
		// An error in a line that ends within the limit, in a header that
		// goes past it: net/http answers 431 when the limit was reached.
		{"header too large, bad line inside", "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 4470) + "\x7f\r\nB: " + strings.Repeat("b", 2000) + "\r\n\r\n", 431},
		{"header within the limit, bad line", "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 4470) + "\x7f\r\n\r\n", 400},
		{"many headers too large", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: b\r\n", 2000) + "\r\n", 431},
		{"garbage request line", "GARBAGE\r\n\r\n", 400},
		{"no version", "GET / \r\nHost: x\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"obs-fold first line", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400},
		{"truncated header", "GET / HTTP/1.1\r\nHost: x\r\n", 0},
	}
	var stdRan, leanRan atomic.Int32
	std := startStd(t, handle(func(w http.ResponseWriter, r *http.Request) {
		stdRan.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}), func(s *http.Server) { s.MaxHeaderBytes = 1 << 10 })
	lean := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		leanRan.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}), func(s *Server) { s.MaxHeaderBytes = 1 << 10 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdRan.Store(0)
			leanRan.Store(0)
			if tt.want == 0 { // the client half-closes after a partial header
				stdCode, _ := halfClosedStatus(t, std, tt.raw)
				leanCode, _ := halfClosedStatus(t, lean.addr, tt.raw)
				if stdCode != 400 || leanCode != 400 {
					t.Errorf("net/http %d, h1 %d; want 400 for a header cut short", stdCode, leanCode)
				}
				return
			}
			stdCode, stdBody := rawStatus(t, std, tt.raw)
			leanCode, leanBody := rawStatus(t, lean.addr, tt.raw)
			if stdCode != leanCode || stdCode != tt.want {
				t.Errorf("net/http %d %q, h1 %d %q; want %d", stdCode, stdBody, leanCode, leanBody, tt.want)
			}
			if tt.want != 200 && stdBody != leanBody && tt.want != 417 { // net/http's 417 is a handler-less answer with no body
				t.Errorf("bodies differ: net/http %q, h1 %q", stdBody, leanBody)
			}
			if s, l := stdRan.Load(), leanRan.Load(); s != l || (s == 1) != (tt.want == 200) {
				t.Errorf("handler ran: net/http %d, h1 %d", s, l)
			}
		})
	}
}

// halfClosedStatus sends raw, closes the connection's write side and
// returns the status of the answer.
func halfClosedStatus(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	c := dial(t, addr)
	c.send(raw)
	_ = c.Conn.(*net.TCPConn).CloseWrite()
	a, err := c.tryRead("GET")
	if err != nil {
		return 0, err.Error()
	}
	return a.StatusCode, a.body
}

func TestServerBadRequestHook(t *testing.T) {
	type call struct {
		status int
		detail string
	}
	calls := make(chan call, 1)
	ts := startServer(t, echo, func(s *Server) {
		s.MaxHeaderBytes = 1 << 10
		s.BadRequest = func(status int, detail string) []byte {
			calls <- call{status, detail}
			return []byte(fmt.Sprintf("HTTP/1.1 %d Custom\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncustom", status))
		}
	})
	for _, tt := range []struct {
		raw    string
		status int
		detail string
	}{
		{"GET / HTTP/1.1\r\n\r\n", 400, "400 Bad Request: missing required Host header"},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "400 Bad Request: malformed Host header"},
		{"GARBAGE\r\n\r\n", 400, "400 Bad Request"},
		{"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Unsupported transfer encoding"},
		{"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "Unsupported transfer encoding"},
		{"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "505 HTTP Version Not Supported: unsupported protocol version"},
		{"POST / HTTP/1.1\r\nHost: x\r\nExpect: x\r\nContent-Length: 1\r\n\r\nx", 417, "417 Expectation Failed: unsupported Expect header"},
		{"GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431, "431 Request Header Fields Too Large"},
	} {
		c := dial(t, ts.addr)
		go func() { _, _ = io.WriteString(c.Conn, tt.raw) }()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c.br)
		want := fmt.Sprintf("HTTP/1.1 %d Custom\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncustom", tt.status)
		if string(got) != want {
			t.Errorf("%.30q: got %q (%v), want %q", tt.raw, got, err, want)
		}
		if cl := <-calls; cl != (call{tt.status, tt.detail}) {
			t.Errorf("%.30q: BadRequest(%d, %q), want (%d, %q)", tt.raw, cl.status, cl.detail, tt.status, tt.detail)
		}
	}
}

// ---- 8. timeouts ----

// closedWithin waits for the server to close c and returns how long it
// took from start.
func (c *client) closedAfter(start time.Time) time.Duration {
	c.t.Helper()
	c.expectClosed()
	return time.Since(start)
}

func TestServerReadHeaderTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := startServer(t, echo, func(s *Server) { s.ReadHeaderTimeout = timeout })
	t.Run("half a header", func(t *testing.T) {
		c := dial(t, ts.addr)
		start := time.Now()
		c.send("GET / HTTP/1.1\r\nHost: x\r\n")
		if d := c.closedAfter(start); d < timeout/2 || d > timeout+2*time.Second {
			t.Errorf("closed after %v, want about %v", d, timeout)
		}
	})
	t.Run("slowloris", func(t *testing.T) { // a byte at a time does not extend it
		c := dial(t, ts.addr)
		start := time.Now()
		closed := make(chan time.Duration)
		go func() { closed <- c.closedAfter(start) }()
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\n") {
			if _, err := c.Conn.Write([]byte{b}); err != nil {
				break
			}
			select {
			case d := <-closed:
				if d < timeout/2 || d > timeout+2*time.Second {
					t.Errorf("closed after %v, want about %v", d, timeout)
				}
				return
			case <-time.After(timeout / 10):
			}
		}
		t.Errorf("still open after %v", time.Since(start))
	})
	t.Run("nothing sent", func(t *testing.T) {
		c := dial(t, ts.addr)
		if d := c.closedAfter(time.Now()); d > timeout+2*time.Second {
			t.Errorf("closed after %v", d)
		}
	})
	t.Run("after an idle period", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(getReq("/"))
		c.read("GET")
		time.Sleep(2 * timeout) // idle: no header timeout runs (IdleTimeout is 0)
		c.send(getReq("/"))
		c.read("GET")
	})
}

func TestServerIdleTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := startServer(t, echo, func(s *Server) { s.IdleTimeout = timeout })
	c := dial(t, ts.addr)
	c.send(getReq("/"))
	c.read("GET")
	start := time.Now()
	if d := c.closedAfter(start); d < timeout/2 || d > timeout+2*time.Second {
		t.Errorf("closed after %v, want about %v", d, timeout)
	}
	// A connection that keeps sending requests stays open.
	c = dial(t, ts.addr)
	for range 6 {
		c.send(getReq("/"))
		c.read("GET")
		time.Sleep(timeout / 2)
	}
}

func TestServerTimeoutsSpareHandlers(t *testing.T) {
	const timeout = 100 * time.Millisecond
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * timeout) // longer than both timeouts
		b, err := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %v", b, err)
	}), func(s *Server) { s.ReadHeaderTimeout, s.IdleTimeout = timeout, timeout })
	c := dial(t, ts.addr)
	c.send(getReq("/"))
	if a := c.read("GET"); a.body != " <nil>" {
		t.Fatalf("%q", a.body)
	}
	// A body sent slowly is not cut by the header timeout either.
	c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na")
	time.Sleep(3 * timeout)
	c.send("bc")
	if a := c.read("POST"); a.body != "abc <nil>" {
		t.Fatalf("%q", a.body)
	}
}

// ---- 9. a client that goes away ----

func TestServerClientGone(t *testing.T) {
	// The client leaves once the background read runs, or before it
	// starts (the handler has run for less than a tick).
	for _, early := range []bool{false, true} {
		t.Run(fmt.Sprintf("early=%v", early), func(t *testing.T) {
			started := make(chan *serverConn)
			cause := make(chan error, 1)
			ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				started <- w.(*response).c
				select {
				case <-r.Context().Done():
					cause <- context.Cause(r.Context())
				case <-time.After(10 * time.Second):
					cause <- nil
				}
			}))
			c := dial(t, ts.addr)
			c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
			sc := <-started
			if !early {
				waitFor(t, "the background read", func() bool {
					sc.mu.Lock()
					defer sc.mu.Unlock()
					return sc.inRead
				})
			}
			start := time.Now()
			_ = c.Close()
			err := <-cause
			if err == nil {
				t.Fatal("the handler's context was not cancelled")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cancelled %v after the client left", d)
			}
			if !errors.Is(err, errClientGone) {
				t.Errorf("cause %v", err)
			}
		})
	}
}

// A request pipelined behind a slow one does not cancel it, and the byte
// the background read took is the next request's.
func TestServerPipelinedBehindSlowHandler(t *testing.T) {
	release := make(chan struct{})
	ctxErr := make(chan error, 1)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
			ctxErr <- r.Context().Err()
		}
		_, _ = fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(getReq("/slow"))
	var sc *serverConn
	waitFor(t, "the background read", func() bool {
		cs := ts.connList()
		if len(cs) != 1 {
			return false
		}
		sc = cs[0]
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return sc.inRead
	})
	c.send(getReq("/second"))
	waitFor(t, "the background read's byte", func() bool {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return sc.hasByte
	})
	close(release)
	if err := <-ctxErr; err != nil {
		t.Errorf("the slow handler's context: %v", err)
	}
	for _, want := range []string{"GET /slow", "GET /second"} {
		if a := c.read("GET"); a.body != want {
			t.Fatalf("%q, want %q", a.body, want)
		}
	}
	// and the connection goes on
	c.send(getReq("/third"))
	if a := c.read("GET"); a.body != "GET /third" {
		t.Fatalf("%q", a.body)
	}
}

// A fast request's handler is not disturbed by a pipelined one.
func TestServerPipelinedFast(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if err := r.Context().Err(); err != nil {
			t.Errorf("%s: context %v", r.URL.Path, err)
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	c := dial(t, ts.addr)
	var all strings.Builder
	for i := range 50 {
		all.WriteString(getReq("/" + strconv.Itoa(i)))
	}
	c.send(all.String())
	_ = c.Conn.(*net.TCPConn).CloseWrite() // and the client is done sending
	for i := range 50 {
		if a := c.read("GET"); a.body != "/"+strconv.Itoa(i) {
			t.Fatalf("%q", a.body)
		}
	}
	c.expectClosed()
}

// ---- 10. Hijack ----

func TestServerHijack(t *testing.T) {
	type hijacked struct {
		conn     net.Conn
		buffered string
	}
	got := make(chan hijacked, 1)
	returned := make(chan struct{}, 1)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		defer func() { returned <- struct{}{} }()
		if r.URL.Path == "/slow" || r.Host == "slow:443" {
			// the background read runs and takes the tunnel's first byte
			cs := w.(*response).c
			poll(t, "the background byte", func() bool {
				cs.mu.Lock()
				defer cs.mu.Unlock()
				return cs.hasByte
			})
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if _, _, err := w.(http.Hijacker).Hijack(); err != http.ErrHijacked {
			t.Errorf("second Hijack: %v", err)
		}
		if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
			t.Errorf("Write after Hijack: %v", err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(brw, buf); err != nil {
			t.Error(err)
		}
		got <- hijacked{conn, string(buf)}
	}))

	for _, host := range []string{"fast:443", "slow:443"} {
		t.Run(host, func(t *testing.T) {
			c := dial(t, ts.addr)
			req := "CONNECT " + host + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
			if host == "fast:443" {
				c.send(req + "HELLO") // in the same write as the request
			} else {
				c.send(req)
				waitFor(t, "the background read", func() bool {
					for _, sc := range ts.connList() {
						sc.mu.Lock()
						in := sc.inRead
						sc.mu.Unlock()
						if in {
							return true
						}
					}
					return false
				})
				c.send("HELLO")
			}
			h := <-got
			<-returned
			if h.buffered != "HELLO" {
				t.Fatalf("the hijacker read %q", h.buffered)
			}
			if len(ts.connList()) != 0 {
				t.Error("the server still tracks the hijacked connection")
			}
			// The server neither closed nor wrote to it after the handler.
			if _, err := io.WriteString(h.conn, "HTTP/1.1 200 OK\r\n\r\nWORLD"); err != nil {
				t.Fatal(err)
			}
			c.send("more")
			buf := make([]byte, 4)
			_ = h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(h.conn, buf); err != nil || string(buf) != "more" {
				t.Fatalf("hijacker read %q %v", buf, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			all := make([]byte, len("HTTP/1.1 200 OK\r\n\r\nWORLD"))
			if _, err := io.ReadFull(c.br, all); err != nil || string(all) != "HTTP/1.1 200 OK\r\n\r\nWORLD" {
				t.Fatalf("client read %q %v", all, err)
			}
			// Shutdown does not wait for it, nor close it.
			if host == "slow:443" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := ts.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				if _, err := io.WriteString(h.conn, "after"); err != nil {
					t.Fatalf("write after Shutdown: %v", err)
				}
				all := make([]byte, 5)
				if _, err := io.ReadFull(c.br, all); err != nil || string(all) != "after" {
					t.Fatalf("client read %q %v", all, err)
				}
			}
			_ = h.conn.Close()
			c.expectClosed()
		})
	}
}

// ---- 11. Shutdown and Close ----

func TestServerShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	idle := dial(t, ts.addr)
	idle.send(getReq("/idle"))
	idle.read("GET")
	busy := dial(t, ts.addr)
	busy.send(getReq("/slow"))
	<-started

	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	idle.expectClosed() // at once, while a request is in flight
	if err := <-ts.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	ts.served <- http.ErrServerClosed
	if c, err := net.DialTimeout("tcp", ts.addr, 5*time.Second); err == nil {
		_ = c.Close()
		t.Error("a new connection was accepted after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	a := busy.read("GET")
	if a.body != "/slow" || !a.Close {
		t.Errorf("%q close=%v, want Connection: close", a.body, a.Close)
	}
	busy.expectClosed()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := ts.Serve(countingListener{}); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestServerShutdownTimeout(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	}))
	c := dial(t, ts.addr)
	c.send(getReq("/"))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
}

func TestServerClose(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
	}))
	idle := dial(t, ts.addr)
	idle.send(getReq("/"))
	idle.read("GET")
	fresh := dial(t, ts.addr) // has sent nothing
	half := dial(t, ts.addr)
	half.send("GET / HTTP/1.1\r\n")
	busy := dial(t, ts.addr)
	busy.send(getReq("/slow"))
	<-started
	waitFor(t, "four connections", func() bool { return len(ts.connList()) == 4 })
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{idle, fresh, half, busy} {
		c.expectClosed()
	}
}

// A connection that has not sent its first byte is left its grace
// period by Shutdown, like net/http's StateNew.
func TestServerShutdownNewConn(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	waitFor(t, "the connection", func() bool { return len(ts.connList()) == 1 })
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	waitFor(t, "the shutdown", ts.closed.Load)
	c.send(getReq("/"))
	if a := c.read("GET"); a.body != "GET / " || !a.Close {
		t.Errorf("%q close=%v", a.body, a.Close)
	}
	c.expectClosed()
	if err := <-shut; err != nil {
		t.Error(err)
	}
}

// ---- 12. the response header ----

// rawAnswer sends req to addr and returns everything the server sends
// until it closes, with the Date header's value blanked.
func rawAnswer(t *testing.T, addr, req string) string {
	t.Helper()
	c := dial(t, addr)
	c.send(req)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatalf("read: %v (%q)", err, b)
	}
	return blankDate(string(b))
}

func blankDate(s string) string {
	var out strings.Builder
	for line := range strings.SplitAfterSeq(s, "\r\n") {
		if strings.HasPrefix(line, "Date: ") && strings.HasSuffix(line, " GMT\r\n") && len(line) == len("Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n") {
			line = "Date: X\r\n"
		}
		out.WriteString(line)
	}
	return out.String()
}

// The same handler answers the same bytes from both servers (except for
// the Date's value).
func TestServerResponseBytes(t *testing.T) {
	tests := []struct {
		name   string
		method string
		h      func(w http.ResponseWriter, r *http.Request)
	}{
		{"empty", "GET", func(w http.ResponseWriter, r *http.Request) {}},
		{"empty HEAD", "HEAD", func(w http.ResponseWriter, r *http.Request) {}},
		{"sorted keys", "GET", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Zeta", "z")
			h.Set("Alpha", "a")
			h["X-Multi"] = []string{"1", "2"}
			h.Set("Content-Type", "text/plain")
			h.Set("Mid", "m")
			_, _ = io.WriteString(w, "body")
		}},
		{"invalid names dropped", "GET", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Bad Name"] = []string{"x"}
			h["Bad:Colon"] = []string{"x"}
			h["Bad\x00Nul"] = []string{"x"}
			h["Bad\r\nInjected"] = []string{"x"}
			h[""] = []string{"x"}
			h["Good"] = []string{"y"}
			h.Set("Content-Type", "text/plain")
		}},
		{"no Date", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Date"] = nil
			w.Header().Set("Content-Type", "text/plain")
		}},
		{"own Date", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", "yesterday")
		}},
		{"103 then 200", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "final")
		}},
		{"two 1xx", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusProcessing)
			w.Header().Set("Link", "</a>")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusNoContent)
		}},
		{"unknown status", "GET", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) }},
		{"status 999", "GET", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(999) }},
		{"status 404 with body", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(404)
			_, _ = io.WriteString(w, "not here")
		}},
		{"handler's Connection: close", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
		}},
		{"handler's Connection with close", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "foo, close")
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "body")
		}},
		{"chunked", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "one")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, strings.Repeat("x", 5000))
			_, _ = io.WriteString(w, "")
			_, _ = io.WriteString(w, "end")
		}},
		{"flush with nothing", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.(http.Flusher).Flush()
		}},
		{"big, own length", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "10000")
			_, _ = io.WriteString(w, strings.Repeat("y", 10000))
		}},
		{"HEAD with own length", "HEAD", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "42")
		}},
		{"header changed after WriteHeader", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusAccepted)
			w.Header().Set("X-Late", "1")
			w.Header().Del("Content-Type")
			_, _ = io.WriteString(w, "body")
		}},
		{"length set after WriteHeader", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, strings.Repeat("z", 3000))
		}},
		{"204 with own length", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(204)
		}},
		{"304 with length and type", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1234")
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Etag", `"v1"`)
			w.WriteHeader(304)
		}},
		{"103 with a length set", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Link", "</a>")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "hello")
		}},
		{"304 with validators", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(304)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			std := startStd(t, handle(tt.h))
			lean := startServer(t, handle(tt.h))
			for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
				req := tt.method + " / " + proto + "\r\nHost: x\r\nConnection: close\r\n\r\n"
				stdRaw := rawAnswer(t, std, req)
				leanRaw := rawAnswer(t, lean.addr, req)
				want, _ := canonicalAnswer(stdRaw)
				got, sorted := canonicalAnswer(leanRaw)
				if got != want {
					t.Errorf("%s\nh1:       %q\nnet/http: %q", proto, leanRaw, stdRaw)
				}
				if !sorted {
					t.Errorf("%s: header not in key order: %q", proto, leanRaw)
				}
				if strings.Contains(leanRaw, "\r\nInjected") || strings.Contains(leanRaw, "\nInjected") {
					t.Errorf("%s: %q", proto, leanRaw)
				}
			}
		})
	}
}

// canonicalAnswer puts raw answers in a form where the two servers'
// choices that no client depends on do not show: the order of header
// lines (net/http writes its own after the handler's) and the sizes of
// chunks. It also reports whether the lines other than Date were in key
// order.
func canonicalAnswer(raw string) (string, bool) {
	var out strings.Builder
	sorted := true
	for {
		head, rest, ok := strings.Cut(raw, "\r\n\r\n")
		if !ok {
			out.WriteString("unterminated: " + raw)
			return out.String(), sorted
		}
		lines := strings.Split(head, "\r\n")
		status := lines[0]
		fields := lines[1:]
		var keys []string
		for _, f := range fields {
			if k, _, _ := strings.Cut(f, ":"); k != "Date" {
				keys = append(keys, k)
			}
		}
		sorted = sorted && slices.IsSorted(keys)
		slices.SortStableFunc(fields, func(a, b string) int {
			ka, _, _ := strings.Cut(a, ":")
			kb, _, _ := strings.Cut(b, ":")
			return strings.Compare(ka, kb)
		})
		out.WriteString(status + "\n" + strings.Join(fields, "\n") + "\n\n")
		raw = rest
		if code, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(status, "HTTP/1.1 "), "HTTP/1.0 "), " "); code[0] != '1' {
			if slices.Contains(fields, "Transfer-Encoding: chunked") { // chunk sizes are the servers' choice
				b, err := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(rest)))
				rest = fmt.Sprintf("chunked %q %v", b, err)
			}
			out.WriteString(rest)
			return out.String(), sorted
		}
	}
}

// The framing is decided once: a Content-Length put in the header after
// WriteHeader, through a map taken before it, is not sent beside chunked.
func TestServerLateContentLength(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		w.WriteHeader(http.StatusOK)
		h.Set("Content-Length", "5")
		_, _ = io.WriteString(w, strings.Repeat("z", 3000))
	}))
	raw := rawAnswer(t, ts.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.Contains(raw, "Transfer-Encoding: chunked\r\n") || strings.Contains(raw, "Content-Length") {
		t.Errorf("want chunked and no Content-Length: %.200q", raw)
	}
}

// Header values cannot split the answer; line breaks become spaces. (net/http
// makes each of CR and LF a space, h1 makes CRLF one space.)
func TestServerHeaderValues(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Split"] = []string{"a\r\nInjected: 1", "b\nc", "d\re", "\r\nlead", "trail\r\n", "\r\n\r\nHTTP/1.1 200 OK"}
		h.Set("Padded", " \t pad \t ")
		h["Bad\r\nInjected"] = []string{"x"}
		h.Set("Content-Type", "text/plain")
	}))
	got := rawAnswer(t, ts.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	want := "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\nContent-Type: text/plain\r\nPadded: pad\r\n" +
		"Split: a Injected: 1\r\nSplit: b c\r\nSplit: d e\r\nSplit: lead\r\nSplit: trail\r\nSplit: HTTP/1.1 200 OK\r\nDate: X\r\n\r\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// An invalid Content-Length from the handler is logged and dropped, and
// the length computed. (net/http sends it on HTTP/1.0.)
func TestServerInvalidContentLength(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "ten")
		_, _ = io.WriteString(w, "ten")
	}))
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		c := dial(t, ts.addr)
		c.send("GET / " + proto + "\r\nHost: x\r\n\r\n")
		if a := c.read("GET"); a.ContentLength != 3 || a.body != "ten" {
			t.Errorf("%s: Content-Length %d %q", proto, a.ContentLength, a.body)
		}
	}
	if l := ts.log.String(); !strings.Contains(l, `invalid Content-Length of "ten"`) {
		t.Errorf("log %q", l)
	}
}

// ---- 13. panics ----

func TestServerPanic(t *testing.T) {
	ts := startServer(t, handle(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/panic-after-write":
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("boom after write")
		case "/abort":
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	for _, path := range []string{"/panic", "/panic-after-write", "/abort"} {
		t.Run(path, func(t *testing.T) {
			other := dial(t, ts.addr) // a connection open across the panic
			other.send(getReq("/"))
			other.read("GET")
			before := ts.log.String()
			c := dial(t, ts.addr)
			c.send(getReq(path) + getReq("/")) // the pipelined request is not served
			if path == "/panic-after-write" {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				if string(b) != "partial" || err == nil {
					t.Errorf("body %q %v, want a chunked body cut short", b, err)
				}
			}
			c.expectClosed()
			other.send(getReq("/"))
			if a := other.read("GET"); a.body != "ok" {
				t.Errorf("other connection: %q", a.body)
			}
			fresh := dial(t, ts.addr)
			fresh.send(getReq("/"))
			if a := fresh.read("GET"); a.body != "ok" {
				t.Errorf("new connection: %q", a.body)
			}
			logged := strings.TrimPrefix(ts.log.String(), before) // written before the connection closed
			if path == "/abort" {
				if logged != "" {
					t.Errorf("http.ErrAbortHandler logged: %q", logged)
				}
				return
			}
			want := "http: panic serving " + c.LocalAddr().String() + ": " + map[string]string{"/panic": "boom\n", "/panic-after-write": "boom after write\n"}[path]
			if !strings.HasPrefix(logged, want) || !strings.Contains(logged, "goroutine ") {
				t.Errorf("log %q, want %q and a stack", logged, want)
			}
		})
	}
	if n := strings.Count(ts.log.String(), "http: panic serving"); n != 2 {
		t.Errorf("%d panics logged, want 2", n)
	}
}

// ---- 14. TLS ----

// testPKI is a throwaway CA with a server and a client certificate.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "h1 test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"proxy.test"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		pool:   pool,
		server: leaf(2, "server", x509.ExtKeyUsageServerAuth),
		client: leaf(3, "agent-7", x509.ExtKeyUsageClientAuth),
	}
}

func TestServerTLS(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	lg := &testlog.Buffer{}
	s := &Server{
		ErrorLog: log.New(lg, "", 0),
		Handler: handle(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil {
				http.Error(w, "no TLS", 500)
				return
			}
			if r.URL.Path == "/slow" {
				<-release
			}
			names := []string{}
			for _, c := range r.TLS.PeerCertificates {
				names = append(names, c.Subject.CommonName)
			}
			_, _ = fmt.Fprintf(w, "%s %v %s", r.TLS.ServerName, names, r.Host)
		}),
		ReadHeaderTimeout: 200 * time.Millisecond,
	}
	served := make(chan error, 1)
	go func() {
		served <- s.Serve(tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{pki.server},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    pki.pool,
		}))
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-served
	})
	addr := ln.Addr().String()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, ServerName: "proxy.test"}}
	t.Cleanup(tr.CloseIdleConnections)
	for range 2 {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if want := "proxy.test [agent-7] " + addr; string(b) != want {
			t.Errorf("%q, want %q", b, want)
		}
	}
	// without a client certificate: r.TLS is set, with no peer certificates
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}
	t.Cleanup(tr2.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr2}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if want := " [] " + addr; string(b) != want {
		t.Errorf("%q, want %q", b, want)
	}
	// the background read over TLS: a request pipelined behind a slow one
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	tcl := &client{t: t, Conn: tc, br: bufio.NewReader(tc)}
	tcl.send(getReq("/slow"))
	var sc *serverConn
	waitFor(t, "the background read", func() bool {
		for _, c := range s.connList() {
			c.mu.Lock()
			in := c.inRead
			c.mu.Unlock()
			if in {
				sc = c
				return true
			}
		}
		return false
	})
	tcl.send(getReq("/next"))
	waitFor(t, "the background byte", func() bool {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return sc.hasByte
	})
	close(release)
	for range 2 {
		if a := tcl.read("GET"); a.body != " [] x" { // no SNI for an IP address
			t.Errorf("%q", a.body)
		}
	}
	// a handshake that fails is logged and closed
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.expectClosed()
	waitFor(t, "the handshake error logged", func() bool {
		return strings.Contains(lg.String(), "http: TLS handshake error from "+c.LocalAddr().String())
	})
	// a client that does not finish its handshake is closed at ReadHeaderTimeout
	c = dial(t, addr)
	if d := c.closedAfter(time.Now()); d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}
}

// ---- 15. allocations ----

// benchServe measures one kept-alive connection's GET with a small known
// length body against addr. The client side reads the answer's bytes into
// a buffer it reuses (the answer's length does not change), so the
// allocations reported are the server's.
func benchServe(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	const body = "hello, world"
	// The first answer, parsed, gives the length of every answer.
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	var raw bytes.Buffer
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &raw)), nil)
	if err != nil {
		b.Fatal(err)
	}
	if got, err := io.ReadAll(resp.Body); err != nil || string(got) != body || resp.ContentLength != int64(len(body)) {
		b.Fatalf("%q %v", got, err)
	}
	if !bytes.HasSuffix(raw.Bytes(), []byte("\r\n\r\n"+body)) {
		b.Fatalf("more than one answer read: %q", raw.Bytes())
	}
	buf := make([]byte, raw.Len())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		if !bytes.HasSuffix(buf, []byte(body)) {
			b.Fatalf("%q", buf)
		}
	}
}

var benchHandler = handle(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "12")
	_, _ = io.WriteString(w, "hello, world")
})

// BenchmarkServerGET reports the allocations of the client and the server
// together; BenchmarkServerGETNetHTTP is the same against net/http.
func BenchmarkServerGET(b *testing.B) {
	benchServe(b, startServer(b, benchHandler).addr)
}

func BenchmarkServerGETNetHTTP(b *testing.B) {
	benchServe(b, startStd(b, benchHandler))
}

// stallConn is a server-side connection whose writes block once stalled,
// as on a socket whose client stopped reading: until release, or until
// the write deadline (crypto/tls gives its close_notify alert 5 s).
type stallConn struct {
	net.Conn
	stalled  atomic.Bool
	blocked  chan struct{} // a write is blocked (closed once)
	once     sync.Once
	release  chan struct{}
	mu       sync.Mutex
	deadline time.Time
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) Write(p []byte) (int, error) {
	if c.stalled.Load() {
		c.once.Do(func() { close(c.blocked) })
		c.mu.Lock()
		dl := c.deadline
		c.mu.Unlock()
		var expire <-chan time.Time
		if !dl.IsZero() {
			expire = time.After(time.Until(dl))
		}
		select {
		case <-c.release:
		case <-expire:
			return 0, os.ErrDeadlineExceeded
		}
	}
	return c.Conn.Write(p)
}

// stallListener makes each accepted connection a TLS server over a
// stallConn, and hands the stallConns to the test.
type stallListener struct {
	net.Listener
	cfg     *tls.Config
	release chan struct{}
	conns   chan *stallConn
}

func (l *stallListener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &stallConn{Conn: raw, blocked: make(chan struct{}), release: l.release}
	l.conns <- sc
	return tls.Server(sc, l.cfg), nil
}

// Closing a TLS connection sends an alert, which blocks while the client
// does not read; the watchdog closing an idle one must not stop the
// server meanwhile (accepting, other timeouts).
func TestServerTimeoutCloseDoesNotStall(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &stallListener{Listener: ln, cfg: &tls.Config{Certificates: []tls.Certificate{pki.server}},
		release: make(chan struct{}), conns: make(chan *stallConn, 10)}
	s := &Server{Handler: echo, IdleTimeout: 200 * time.Millisecond, ErrorLog: log.New(io.Discard, "", 0)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(sl) }()
	t.Cleanup(func() {
		close(sl.release)
		_ = s.Close()
		<-served
	})
	tlsDial := func() *client {
		start := time.Now()
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS handshake: %v after %v", err, time.Since(start))
		}
		t.Cleanup(func() { _ = tc.Close() })
		return &client{t: t, Conn: tc, br: bufio.NewReader(tc)}
	}
	a := tlsDial()
	a.send(getReq("/a"))
	a.read("GET")
	sa := <-sl.conns
	sa.stalled.Store(true) // the client stops reading
	select {
	case <-sa.blocked: // the idle timeout's close is sending its alert
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	b := tlsDial()
	_ = b.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(b.Conn, getReq("/b")); err != nil {
		t.Fatalf("a new connection while an idle one is closed: %v", err)
	}
	if a, err := b.tryRead("GET"); err != nil || a.body != "GET /b " {
		t.Fatalf("a new connection while an idle one is closed: %v", err)
	}
}
