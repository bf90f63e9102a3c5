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

func benchForward(b *testing.B, host string, access bool) {
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
	defer eng.Close()
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
