package engine

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/authgress/authgress/internal/logline"
)

// discardWriter is a ResponseWriter with ReadFrom, like net/http's.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header                 { return d.h }
func (d *discardWriter) Write(p []byte) (int, error)         { return len(p), nil }
func (d *discardWriter) WriteHeader(int)                     {}
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// BenchmarkForwardCachedToken is the whole forward path in process: match,
// cached token, injection, transport to a loopback upstream (an httptest
// server, whose own allocations count too), metrics. (The access log is
// off: its cost is measured by bench/run.sh and BenchmarkForwardFakeUpstream.)
func BenchmarkForwardCachedToken(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	benchForward(b, strings.TrimPrefix(up.URL, "http://"), false)
}

// BenchmarkForwardFakeUpstream is the same path against a fake upstream
// that answers every request with the same bytes and allocates nothing
// per request, so that allocs/op are authgress's alone: the wrapper, the
// pipeline and the upstream client. /access_log runs with the access log
// on (to io.Discard).
func BenchmarkForwardFakeUpstream(b *testing.B) {
	host := fakeUpstream(b)
	b.Run("access_log_off", func(b *testing.B) { benchForward(b, host, false) })
	b.Run("access_log", func(b *testing.B) { benchForward(b, host, true) })
}

// BenchmarkForwardOverTheWire is the forward path as a client sees it:
// absolute-URI GETs on one kept-alive connection to the engine's listener
// (the server half included), to the fake upstream, access log on. The
// client writes the same bytes and reads the answers without allocating,
// so allocs/op are the whole proxy's: server, wrapper, pipeline, upstream
// client. /net_http is the same with AUTHGRESS_SERVER=net/http.
func BenchmarkForwardOverTheWire(b *testing.B) {
	host := fakeUpstream(b)
	b.Run("h1", func(b *testing.B) { benchWire(b, host) })
	b.Run("net_http", func(b *testing.B) {
		b.Setenv("AUTHGRESS_SERVER", "net/http")
		benchWire(b, host)
	})
}

func benchWire(b *testing.B, host string) {
	eng := benchEngine(b, host, true)
	if err := eng.Start(); err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", eng.ProxyAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET http://" + host + "/v1/items HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: bench\r\n\r\n")
	br := bufio.NewReader(conn)
	one := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		status, length := "", -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if status == "" {
				status = string(line[9:12]) // constant strings: no allocation
				if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
					b.Fatalf("answer %q", line)
				}
				continue
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				length = 0
				for _, c := range bytes.TrimSpace(v) {
					length = length*10 + int(c-'0')
				}
			}
		}
		if length < 0 {
			b.Fatal("no Content-Length")
		}
		if _, err := br.Discard(length); err != nil {
			b.Fatal(err)
		}
	}
	one()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		one()
	}
}

func benchForward(b *testing.B, host string, access bool) {
	eng := benchEngine(b, host, access)
	target := "http://" + host + "/v1/items"
	run := func() {
		// A cancellable context per request, as net/http's server gives.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "GET", target, nil)
		req.RequestURI = target
		w := &discardWriter{h: http.Header{}}
		eng.ServeHTTP(w, req)
	}
	run()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		run()
	}
}

// benchEngine is an engine with one connection to host and its forward
// listener on a free port (not started).
func benchEngine(b *testing.B, host string, access bool) *Engine {
	i := newIDP(b)
	c := loadConfig(b, `
[log]
access = {{ACCESS}}
[vaults.local]
type = "file"
path = "{{SECRETS}}"
[credentials.app]
vault = "local"
id = "app"
token_url = "{{IDP}}"
[connections.api]
hosts = ["{{UP}}"]
credential = "app"
allow_insecure = true
`, "{{UP}}", host, "{{IDP}}", idpURL(i), "{{ACCESS}}", strconv.FormatBool(access))
	c.Server.Listen, c.Server.Admin = "127.0.0.1:0", ""
	eng, err := New(context.Background(), c, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), AccessLines: logline.New(io.Discard, false)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	return eng
}

// fakeUpstream serves keep-alive connections with one canned response per
// request (a request ends at its blank line; the benchmark sends no
// bodies).
func fakeUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if bytes.Equal(line, []byte("\r\n")) {
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
