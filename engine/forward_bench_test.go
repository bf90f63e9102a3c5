package engine

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discardWriter is a ResponseWriter with ReadFrom, like net/http's.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header                 { return d.h }
func (d *discardWriter) Write(p []byte) (int, error)         { return len(p), nil }
func (d *discardWriter) WriteHeader(int)                     {}
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// BenchmarkForwardCachedToken is the whole forward path in process: goproxy,
// match, cached token, injection, transport to a loopback upstream, metrics.
// (The access log is off: its cost is measured by bench/run.sh.)
func BenchmarkForwardCachedToken(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	i := newIDP(b)
	host := strings.TrimPrefix(up.URL, "http://")
	cfg := strings.NewReplacer("{{UP}}", host).Replace(`
[log]
access = false
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
`)
	h := newHarness(b, cfg, nil, i)
	target := "http://" + host + "/v1/items"
	run := func() {
		req := httptest.NewRequest("GET", target, nil)
		req.RequestURI = target
		w := &discardWriter{h: http.Header{}}
		h.eng.ServeHTTP(w, req)
	}
	run()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		run()
	}
}
