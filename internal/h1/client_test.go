package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialErr marks a dial failure, as tlsprofiles' *neterr.ConnectError does.
type dialErr struct{ error }

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	if cfg.Dial == nil {
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, dialErr{err}
			}
			return c, nil
		}
	}
	c := New(cfg)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// countingServer is an httptest server that counts the connections it
// accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			n.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &n
}

func get(t *testing.T, c *Client, method, url string, body io.Reader) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return c.RoundTrip(req)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	_ = resp.Body.Close()
	return string(b)
}

func TestKeepAliveReuse(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path+" "+r.Header.Get("Authorization"))
	})
	c := newClient(t, Config{})
	for i := 0; i < 5; i++ {
		req, _ := http.NewRequest("GET", s.URL+"/x", nil)
		req.Header.Set("Authorization", "Bearer t")
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "hello /x Bearer t" {
			t.Fatalf("body %q", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential requests, want 1", n)
	}
	if c.IdleConns() != 1 {
		t.Fatalf("idle = %d, want 1", c.IdleConns())
	}
}

func TestConcurrentRequestsUseSeveralConnections(t *testing.T) {
	release := make(chan struct{})
	var in sync.WaitGroup
	in.Add(4)
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		in.Done()
		<-release
		_, _ = io.WriteString(w, "ok")
	})
	c := newClient(t, Config{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := get(t, c, "GET", s.URL, nil)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	in.Wait()
	close(release)
	wg.Wait()
	if conns.Load() != 4 || c.IdleConns() != 4 {
		t.Fatalf("conns %d idle %d, want 4 and 4", conns.Load(), c.IdleConns())
	}
}

// rawServer answers each connection with script, which reads the request
// itself.
func rawServer(t *testing.T, script func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func readReq(t *testing.T, br *bufio.Reader) *http.Request {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil
	}
	_, _ = io.Copy(io.Discard, req.Body)
	return req
}

func TestInformationalResponsesAreSkipped(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for readReq(t, br) != nil {
			_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newClient(t, Config{})
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("POST", u, strings.NewReader("body"))
		req.Header.Set("Expect", "100-continue")
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || readAll(t, resp) != "ok" || resp.Header.Get("Link") != "" {
			t.Fatalf("status %d, link %q", resp.StatusCode, resp.Header.Get("Link"))
		}
	}
	if c.IdleConns() != 1 {
		t.Fatalf("idle = %d, want the connection back", c.IdleConns())
	}
}

func TestExpectContinueAgainstNetHTTP(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "got %d", len(b))
	})
	c := newClient(t, Config{})
	req, _ := http.NewRequest("PUT", s.URL, strings.NewReader(strings.Repeat("x", 100000)))
	req.Header.Set("Expect", "100-continue")
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "got 100000" {
		t.Fatalf("%q", got)
	}
}

func TestNoBodyResponses(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}
	})
	c := newClient(t, Config{})
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/204"}, {"GET", "/304"}, {"HEAD", "/"}, {"GET", "/"}} {
		resp, err := get(t, c, tc.method, s.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.method == "HEAD" && (resp.Body != http.NoBody || resp.ContentLength != 5) {
			t.Fatalf("HEAD: body %T, length %d", resp.Body, resp.ContentLength)
		}
		if tc.path != "/" && resp.Body != http.NoBody {
			t.Fatalf("%s: a body", tc.path)
		}
		// No body to read: the connection is back at once.
		if tc.method == "HEAD" || tc.path != "/" {
			if c.IdleConns() != 1 {
				t.Fatalf("%s %s: idle = %d before the body is touched", tc.method, tc.path, c.IdleConns())
			}
		}
		readAll(t, resp)
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections, want 1", conns.Load())
	}
}

func TestTrailersAndChunkedWithoutLength(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := 0; i < 3; i++ {
			_, _ = fmt.Fprintf(w, "part%d\n", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "abc")
	})
	c := newClient(t, Config{})
	for i := 0; i < 2; i++ {
		resp, err := get(t, c, "GET", s.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("length %d, encoding %v", resp.ContentLength, resp.TransferEncoding)
		}
		if got := readAll(t, resp); got != "part0\npart1\npart2\n" {
			t.Fatalf("%q", got)
		}
		if resp.Trailer.Get("X-Sum") != "abc" {
			t.Fatalf("trailer %v", resp.Trailer)
		}
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections, want 1 (chunked bodies keep the connection)", conns.Load())
	}
}

func TestStreamingResponseArrivesChunkByChunk(t *testing.T) {
	next := make(chan struct{})
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			<-next
		}
	})
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		_, _ = br.ReadString('\n')
		next <- struct{}{}
	}
}

func TestStreamingRequestBodyBothWays(t *testing.T) {
	// The server answers while the request body is still coming: each line
	// it receives is echoed at once.
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(200)
		_ = rc.Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			_, _ = fmt.Fprintf(w, "echo %s\n", sc.Text())
			_ = rc.Flush()
		}
	})
	c := newClient(t, Config{})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", s.URL, pr)
	go func() { _, _ = io.WriteString(pw, "one\n") }()
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "echo one\n" {
		t.Fatalf("%q", line)
	}
	_, _ = io.WriteString(pw, "two\n")
	if line, _ := br.ReadString('\n'); line != "echo two\n" {
		t.Fatalf("%q", line)
	}
	pw.Close()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("rest %q", rest)
	}
	resp.Body.Close()
}

func TestLargeBodiesBothWays(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Len", fmt.Sprint(n))
		_, _ = io.Copy(w, io.LimitReader(zeros{}, 16<<20))
	})
	c := newClient(t, Config{})
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	want := fmt.Sprintf("%x", sha256.Sum256(body))
	for i, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(body)
		if chunked {
			rd = struct{ io.Reader }{rd} // unknown length: chunked
		}
		resp, err := get(t, c, "POST", s.URL, rd)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != 16<<20 || resp.Header.Get("X-Sum") != want || resp.Header.Get("X-Len") != fmt.Sprint(len(body)) {
			t.Fatalf("%d: read %d %v, sum ok %v, len %s", i, n, err, resp.Header.Get("X-Sum") == want, resp.Header.Get("X-Len"))
		}
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections, want 1", conns.Load())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestEarlyResponseWhileUploading(t *testing.T) {
	// A server that refuses a large upload without reading it: the client
	// gets the answer, and the connection is not reused.
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
		time.Sleep(200 * time.Millisecond)
	})
	c := newClient(t, Config{})
	resp, err := get(t, c, "POST", u, io.LimitReader(zeros{}, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 413 || readAll(t, resp) != "big" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if c.IdleConns() != 0 {
		t.Fatal("a connection with an unfinished request went back to the pool")
	}
}

func TestCloseDelimitedBody(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil the end")
	})
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "until the end" {
		t.Fatalf("%q", got)
	}
	if c.IdleConns() != 0 {
		t.Fatal("a close-delimited connection went back to the pool")
	}
}

func TestServerClosedIdleConnectionIsNotUsed(t *testing.T) {
	// The server answers one request per connection and then closes it
	// (without saying so): the next request must not fail.
	var conns atomic.Int32
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	c := newClient(t, Config{})
	for i := 0; i < 3; i++ {
		for _, method := range []string{"GET", "POST"} {
			var body io.Reader
			if method == "POST" {
				body = struct{ io.Reader }{strings.NewReader("not replayable")}
			}
			resp, err := get(t, c, method, u, body)
			if err != nil {
				t.Fatalf("%s %d: %v", method, i, err)
			}
			readAll(t, resp)
			time.Sleep(20 * time.Millisecond) // the close reaches us
		}
	}
	if conns.Load() != 6 {
		t.Fatalf("%d connections, want 6", conns.Load())
	}
}

// A server that reads the request on a kept-alive connection and closes it
// without a word (the idle-close race): an idempotent request is sent again
// on a new connection; a POST whose body cannot be sent again fails, as
// sent.
func TestClosedWhileSendingOnReusedConnection(t *testing.T) {
	var n atomic.Int32
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if readReq(t, br) == nil {
				return
			}
			if i == 1 && n.Add(1) <= 2 {
				return // the second request on this connection: close it
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newClient(t, Config{})
	first := func() {
		resp, err := get(t, c, "GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	first()
	resp, err := get(t, c, "GET", u, nil)
	if err != nil {
		t.Fatalf("GET on a connection closed as it was sent: %v (want a transparent retry)", err)
	}
	readAll(t, resp)

	c.CloseIdleConnections()
	first()
	_, err = get(t, c, "POST", u, struct{ io.Reader }{strings.NewReader("x")})
	if err == nil {
		t.Fatal("a POST with a one-shot body was sent twice")
	}
	var de dialErr
	if errors.As(err, &de) {
		t.Fatalf("error %v typed as a dial error: it was sent", err)
	}
}

func TestDeadPooledConnectionAndServerGone(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	s.CloseClientConnections()
	s.Listener.Close()
	time.Sleep(20 * time.Millisecond)
	_, err = get(t, c, "GET", s.URL, nil)
	var de dialErr
	if !errors.As(err, &de) {
		t.Fatalf("error %v: want the dialer's (nothing was sent)", err)
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		time.Sleep(2 * time.Second)
	})
	c := newClient(t, Config{ResponseHeaderTimeout: 100 * time.Millisecond})
	for _, method := range []string{"GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("data")
		}
		start := time.Now()
		_, err := get(t, c, method, u, body)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "awaiting response headers") {
			t.Fatalf("%s: error %v, want the header timeout", method, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s: took %v", method, d)
		}
	}
}

func TestResponseHeaderTimeoutDoesNotCutSlowBodies(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "late")
	})
	c := newClient(t, Config{ResponseHeaderTimeout: 100 * time.Millisecond})
	for i := 0; i < 2; i++ {
		resp, err := get(t, c, "GET", s.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "late" {
			t.Fatalf("%q", got)
		}
	}
}

func TestClientGoesAwayWhileWaitingForHeaders(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		time.Sleep(2 * time.Second)
	})
	c := newClient(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.RoundTrip(req)
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("error %v after %v", err, time.Since(start))
	}
}

func TestClientGoesAwayMidBody(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100; i++ {
			_, _ = io.WriteString(w, "tick\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	c := newClient(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL, nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	start := time.Now()
	_, err = io.Copy(io.Discard, br)
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("read after cancel: %v after %v", err, time.Since(start))
	}
	resp.Body.Close()
	if c.IdleConns() != 0 {
		t.Fatal("an aborted connection went back to the pool")
	}
	// The client stays usable.
	resp, err = get(t, c, "HEAD", s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if conns.Load() != 2 {
		t.Fatalf("%d connections, want 2", conns.Load())
	}
}

func TestEarlyCloseClosesTheConnection(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, io.LimitReader(zeros{}, 1<<20))
	})
	c := newClient(t, Config{})
	for i := 0; i < 2; i++ {
		resp, err := get(t, c, "GET", s.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = resp.Body.Read(make([]byte, 10))
		resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after close")
		}
	}
	if conns.Load() != 2 || c.IdleConns() != 0 {
		t.Fatalf("conns %d idle %d", conns.Load(), c.IdleConns())
	}
}

func TestUpstreamClosesMidBody(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
	})
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "only ten b" {
		t.Fatalf("%q %v", b, err)
	}
	resp.Body.Close()
	if c.IdleConns() != 0 {
		t.Fatal("a broken connection went back to the pool")
	}
}

func TestUpstreamClosesMidChunkedBody(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	})
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil || string(b) != "hello" {
		t.Fatalf("%q %v", b, err)
	}
}

func TestSwitchingProtocolsIsReturned(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
	})
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", u, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	if c.IdleConns() != 0 {
		t.Fatal("an upgraded connection went back to the pool")
	}
}

func TestIdleTimeout(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	c := newClient(t, Config{IdleTimeout: 50 * time.Millisecond})
	resp, err := get(t, c, "GET", s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if c.IdleConns() != 1 {
		t.Fatal("not pooled")
	}
	deadline := time.Now().Add(2 * time.Second)
	for c.IdleConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTLSAndALPN(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }
	h1s := httptest.NewUnstartedServer(http.HandlerFunc(h))
	h1s.StartTLS()
	defer h1s.Close()
	h2s := httptest.NewUnstartedServer(http.HandlerFunc(h))
	h2s.EnableHTTP2 = true
	h2s.StartTLS()
	defer h2s.Close()
	tlsDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}}
		return d.DialContext(ctx, network, addr)
	}
	c := newClient(t, Config{DialTLS: tlsDial})
	for i := 0; i < 2; i++ {
		resp, err := get(t, c, "GET", h1s.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "HTTP/1.1" {
			t.Fatalf("%q", got)
		}
	}
	if c.IdleConns() != 1 {
		t.Fatalf("idle %d", c.IdleConns())
	}
	_, err := get(t, c, "GET", h2s.URL, nil)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Proto != "h2" || pe.Conn == nil {
		t.Fatalf("error %v, want a ProtocolError for h2", err)
	}
	pe.Conn.Close()
}

// A header deadline left set on a connection whose body was all buffered
// must not fail the next request after an idle spell longer than it.
func TestHeaderDeadlineLeftOnIdleConnection(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	c := newClient(t, Config{ResponseHeaderTimeout: 50 * time.Millisecond})
	for i, method := range []string{"GET", "GET", "POST", "DELETE", "POST", "GET"} {
		var body io.Reader
		if method == "POST" && i == 4 {
			body = strings.NewReader("data")
		}
		resp, err := get(t, c, method, s.URL, body)
		if err != nil {
			t.Fatalf("%d %s: %v", i, method, err)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("%q", got)
		}
		time.Sleep(120 * time.Millisecond)
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections, want 1", conns.Load())
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("client went away")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

// A request body that fails mid-upload (the client went away) ends the
// round trip at once, not when the server gives up waiting.
func TestRequestBodyFailsMidUpload(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	c := newClient(t, Config{})
	req, _ := http.NewRequest("POST", s.URL, &failingReader{n: 100000})
	req.ContentLength = 200000
	start := time.Now()
	_, err := c.RoundTrip(req)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("error %v after %v", err, time.Since(start))
	}
}

// The watchdog runs only while the client has open connections.
func TestWatchdogStopsWithoutConnections(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	c := newClient(t, Config{})
	resp, err := get(t, c, "GET", s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	watching := func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.watching }
	if !watching() {
		t.Fatal("no watchdog with an open connection")
	}
	c.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Second)
	for watching() {
		if time.Now().After(deadline) {
			t.Fatal("the watchdog still runs without connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A server that never ends its response header cannot make the client
// hold more than the limit.
func TestResponseHeaderSizeIsBounded(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Big: " + strings.Repeat("a", 1000) + "\r\n"
		for i := 0; i < 10000; i++ {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	c := newClient(t, Config{MaxResponseHeaderBytes: 64 << 10})
	_, err := get(t, c, "GET", u, nil)
	if !errors.Is(err, errHeaderSize) {
		t.Fatalf("error %v, want the header size limit", err)
	}
	// Within the limit, 1xx included, and a body larger than it: fine.
	u2 := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for readReq(t, br) != nil {
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n")
			_, _ = c.Write(make([]byte, 200000))
		}
	})
	for i := 0; i < 2; i++ {
		resp, err := get(t, c, "GET", u2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(readAll(t, resp)); n != 200000 {
			t.Fatalf("body %d bytes", n)
		}
	}
}

// A server that sends an unasked response on an idle connection (a 408
// before it closes it): the next request must not take it for its own.
func TestUnaskedResponseOnIdleConnection(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(t, br)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		time.Sleep(time.Second)
	})
	c := newClient(t, Config{})
	for i := 0; i < 2; i++ {
		resp, err := get(t, c, "GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || readAll(t, resp) != "ok" {
			t.Fatalf("request %d got the unasked %d", i, resp.StatusCode)
		}
		time.Sleep(150 * time.Millisecond) // idle long enough to be checked
	}
}
