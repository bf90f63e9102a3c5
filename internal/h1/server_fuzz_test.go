package h1

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzServerVsNetHTTP sends the same raw bytes to net/http's server and to
// h1.Server and requires the same verdict on every request in them: both
// refuse it with the same status, or both run the handler with the same
// request (method, target, Host, header, framing and the body it read).
//
//	go test -run xxx -fuzz FuzzServerVsNetHTTP -fuzztime 3m ./internal/h1
func FuzzServerVsNetHTTP(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	std := newFuzzTarget(f, "net/http")
	lean := newFuzzTarget(f, "h1")
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 32<<10 {
			return
		}
		want := std.exchange(t, raw)
		got := lean.exchange(t, raw)
		want, got = knownDifferences(want, got)
		if !slices.Equal(got, want) {
			t.Errorf("input %q\nnet/http: %s\nh1:       %s", raw, strings.Join(want, "\n          "), strings.Join(got, "\n          "))
		}
	})
}

// knownDifferences takes out of the two servers' verdicts the differences
// they are known to have, and what follows them.
func knownDifferences(want, got []string) ([]string, []string) {
	for i := 0; i < len(want) && i < len(got); i++ {
		switch {
		case strings.HasPrefix(want[i], "ran PRI * HTTP/2.0") && got[i] == "refused 505":
			// h1 serves HTTP/1.x only; net/http hands "PRI * HTTP/2.0" to
			// the handler, to hijack for h2c.
			return want[:i], got[:i]
		case want[i] == "refused 200" && strings.HasPrefix(got[i], "ran OPTIONS * "):
			// net/http answers "OPTIONS *" itself (its globalOptionsHandler);
			// h1 passes it to the handler.
			return want[:i], got[:i]
		}
	}
	if len(want) > 0 && len(got) == len(want)+1 && got[len(want)] == "refused 400" && slices.Equal(got[:len(want)], want) {
		// Between requests net/http waits for 4 bytes before it reads a
		// request and closes silently on fewer; h1 reads what there is and
		// answers 400 to a fragment shorter than that.
		return want, got[:len(want)]
	}
	return want, got
}

// fuzzTarget is a server for FuzzServerVsNetHTTP whose handler records
// each request it runs, by connection.
type fuzzTarget struct {
	addr string
	mu   sync.Mutex
	seen map[string][]string // by client address
}

const fuzzMaxHeader = 2 << 10 // a limit the fuzzer can reach (with net/http's slack, 6 KiB)

func newFuzzTarget(f *testing.F, kind string) *fuzzTarget {
	ft := &fuzzTarget{seen: map[string][]string{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rec := fmt.Sprintf("ran %s %s %s url=%q host=%q header=%q len=%d te=%q close=%v body=%q err=%v trailer=%q",
			r.Method, r.RequestURI, r.Proto, r.URL.String(), r.Host, sortedHeader(r.Header), r.ContentLength,
			r.TransferEncoding, r.Close, body, err, sortedHeader(r.Trailer))
		ft.mu.Lock()
		ft.seen[r.RemoteAddr] = append(ft.seen[r.RemoteAddr], rec)
		ft.mu.Unlock()
		w.Header().Set("X-Ran", "1")
		w.Header().Set("Content-Length", "0")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	ft.addr = ln.Addr().String()
	quiet := log.New(io.Discard, "", 0)
	var serve func() error
	var stop func()
	if kind == "h1" {
		s := &Server{Handler: h, MaxHeaderBytes: fuzzMaxHeader, ErrorLog: quiet}
		serve, stop = func() error { return s.Serve(ln) }, func() { _ = s.Close() }
	} else {
		s := &http.Server{Handler: h, MaxHeaderBytes: fuzzMaxHeader, ErrorLog: quiet}
		serve, stop = func() error { return s.Serve(ln) }, func() { _ = s.Close() }
	}
	done := make(chan struct{})
	go func() { _ = serve(); close(done) }()
	f.Cleanup(func() { stop(); <-done })
	return ft
}

func sortedHeader(h http.Header) []string {
	var kv []string
	for k, vs := range h {
		for _, v := range vs {
			kv = append(kv, k+": "+v)
		}
	}
	slices.Sort(kv) // values of one key keep their order: the sort is by the whole line, so check it
	return kv
}

// exchange sends raw on a new connection, then closes its write side,
// reads every answer until the server closes, and returns one line per
// request: what the handler saw, or the status of the refusal.
func (ft *fuzzTarget) exchange(t *testing.T, raw []byte) []string {
	c, err := net.DialTimeout("tcp", ft.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	go func() { // the server may stop reading
		_, _ = c.Write(raw)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var answers []string
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("no answer from %s in 10s", ft.addr)
			}
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode/100 == 1 {
			continue // 100 Continue, when the handler reads the body
		}
		if resp.Header.Get("X-Ran") == "1" {
			answers = append(answers, "") // filled in below
		} else {
			answers = append(answers, fmt.Sprintf("refused %d", resp.StatusCode))
		}
	}
	ft.mu.Lock()
	ran := ft.seen[local]
	delete(ft.seen, local)
	ft.mu.Unlock()
	for i := range answers {
		if answers[i] == "" {
			if len(ran) == 0 {
				answers[i] = "ran, not recorded"
				continue
			}
			answers[i], ran = ran[0], ran[1:]
		}
	}
	for _, r := range ran { // handlers whose answers did not arrive
		answers = append(answers, "unanswered "+r)
	}
	return answers
}

// fuzzSeeds are valid requests, the malformed ones of TestServerBadRequests
// and request smuggling shapes.
var fuzzSeeds = []string{
	"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET /path?q=1&r=%20x HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
	"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nshort",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=v\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer-Field: t\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
	"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /4 HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 3\r\n\r\nabc",
	// absolute form, authority form, CONNECT
	"GET http://example.com/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
	"GET http://user:pw@example.com:80/p HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET https://[::1]:443/ HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
	"GET http://example.com/ HTTP/1.1\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\n\r\nbytes of the tunnel",
	"CONNECT /path HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT [::1]:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
	// Host
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n",
	"GET / HTTP/1.1\r\nX: y\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
	// header names and values
	"GET / HTTP/1.1\r\nHost: x\r\nA B: c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n: c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: b\x7fc\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: \xe2\x82\xac\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: folded\r\n value\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: folded\r\n\t\r\n\r\n",
	"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\nA: b\n\n",
	"GET / HTTP/1.1\r\nHost: x\nA: b\r\n\n",
	"GET / HTTP/1.1\r\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nconnection: close\r\ncontent-type: text/plain\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 7000) + "\r\n\r\n",
	// framing: smuggling shapes
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  3 \r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
	// versions and request lines
	"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
	"GET / HTTP/0.9\r\n\r\n",
	"GET / HTTP/01.1\r\nHost: x\r\n\r\n",
	"GET / http/1.1\r\nHost: x\r\n\r\n",
	"GET /\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GARBAGE\r\n\r\n",
	"\r\n\r\n",
	"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET \x00 HTTP/1.1\r\nHost: x\r\n\r\n",
	"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
	"get / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET //x/../y HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA",
}
