package engine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/proxy"
)

// rawExchange writes raw bytes to the proxy and reads one response.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestGoServerErrorsAreShaped(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, "[server]\nmax_header_bytes = 4096\n"+baseConfig, up, i)
	addr := strings.TrimPrefix(h.url, "http://")
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", 400},
		{"missing Host", "GET http://x/ HTTP/1.1\r\n\r\n", 400},
		{"headers too large", "GET http://" + up.hostPort() + "/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"unknown transfer coding", "POST http://" + up.hostPort() + "/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, tc.raw)
			var e struct{ Error, Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != tc.status ||
				resp.Header.Get(proxy.ErrorHeader) != proxy.CodeBadRequest || e.Error != proxy.CodeBadRequest {
				t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get(proxy.ErrorHeader), body)
			}
		})
	}
	// An upstream's own plain-text 400 passes through untouched.
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "400 Bad Request", http.StatusBadRequest)
	})
	resp, body := h.get("http://" + up.hostPort() + "/x")
	if resp.StatusCode != 400 || resp.Header.Get(proxy.ErrorHeader) != "" || body != "400 Bad Request\n" {
		t.Fatalf("upstream 400 was reshaped: %d %q %q", resp.StatusCode, resp.Header.Get(proxy.ErrorHeader), body)
	}
}

func TestUpstreamSwitchingProtocolsIsAnError(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		c, buf, _ := w.(http.Hijacker).Hijack()
		defer c.Close()
		fmt.Fprint(buf, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = buf.Flush()
		time.Sleep(3 * time.Second) // keeps the connection open and silent
	})
	h := newHarness(t, baseConfig, up, i)
	start := time.Now()
	resp, body := h.get("http://" + up.hostPort() + "/ws")
	if resp.StatusCode != 502 || resp.Header.Get(proxy.ErrorHeader) != proxy.CodeUpstreamUnreachable || !strings.Contains(body, "101") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the client waited %s for an answer", d)
	}
}

func TestMessagesKeepThePort(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig, up, i)
	resp, body := h.get("http://127.0.0.1:9/x")
	if resp.StatusCode != 403 || !strings.Contains(body, "127.0.0.1:9 ") {
		t.Fatalf("unmatched: %s", body)
	}
	up.Close()
	resp, body = h.get("http://" + up.hostPort() + "/x")
	if resp.StatusCode != 502 || !strings.Contains(body, "could not reach "+up.hostPort()) {
		t.Fatalf("unreachable: %s", body)
	}
}
