package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An upstream that closes every connection after one response, without
// saying so: each request through authgress still succeeds (the pooled
// connection is found closed before use, or the request is sent again when
// nothing came back and that is safe), bodies included.
func TestUpstreamClosingIdleConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				b, _ := io.ReadAll(req.Body)
				body := req.Method + " " + string(b) + " " + req.Header.Get("Authorization")
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			}()
		}
	}()
	host := ln.Addr().String()
	i := newIDP(t)
	h := newHarness(t, strings.ReplaceAll(`
[vaults.local]
type = "file"
path = "{{SECRETS}}"
[credentials.app]
vault = "local"
id = "app"
token_url = "{{IDP}}"
[connections.api]
hosts = ["HOST"]
credential = "app"
allow_insecure = true
`, "HOST", host), nil, i)
	for n := 0; n < 4; n++ {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("payload")
			}
			req, _ := http.NewRequest(method, "http://"+host+"/x", body)
			resp, got := h.do(req)
			want := method + " " + map[bool]string{true: "payload"}[method == "POST"] + " Bearer tok-1"
			if resp.StatusCode != 200 || got != want {
				t.Fatalf("%d %s: %d %q, want %q", n, method, resp.StatusCode, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if conns.Load() < 12 {
		t.Fatalf("%d upstream connections for 12 requests", conns.Load())
	}
}
