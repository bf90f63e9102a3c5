package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/authgress/authgress/proxy"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestInjectsTokenAndCleansHeaders(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig, up, i)
	req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/v1/things?x=1", nil)
	req.Header.Set("Authorization", "Basic client-supplied")
	req.Header.Set("Proxy-Authorization", "Basic cHJveHk6cHc=")
	req.Header.Set("Connection", "X-Foo")
	req.Header.Set("X-Foo", "hop")
	resp, body := h.do(req)
	if resp.StatusCode != 200 || body != "GET /v1/things?x=1 body=0" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	checks := map[string]string{
		"X-Seen-Authorization":       "Bearer tok-1",
		"X-Seen-Proxy-Authorization": "",
		"X-Seen-Foo":                 "",
		"X-Seen-Scheme":              "https",
	}
	for k, want := range checks {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for n := 0; n < 5; n++ {
		h.get("http://" + up.hostPort() + "/again")
	}
	if i.fetches.Load() != 1 {
		t.Errorf("token fetches = %d, want 1", i.fetches.Load())
	}
	if logs := h.logText(); strings.Contains(logs, "tok-1") || strings.Contains(logs, "canary-client-secret") || strings.Contains(logs, "x=1") {
		t.Errorf("log leaks a token, secret or query value:\n%s", logs)
	}
}

func TestRedirectsGoBackToClient(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/next", http.StatusFound)
	})
	h := newHarness(t, baseConfig, up, i)
	resp, _ := h.get("http://" + up.hostPort() + "/start")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://elsewhere.example/next" {
		t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestUpstreamErrorsPassThrough(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(503)
		_, _ = io.WriteString(w, "upstream says no")
	})
	h := newHarness(t, baseConfig, up, i)
	resp, body := h.get("http://" + up.hostPort() + "/")
	if resp.StatusCode != 503 || body != "upstream says no" || resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get(proxy.ErrorHeader) != "" {
		t.Fatalf("status %d body %q headers %v", resp.StatusCode, body, resp.Header)
	}
}

// TestNDJSONStreams is a regression test for goproxy's plain-HTTP path,
// which flushes only text/event-stream: each line must reach the client
// while the upstream is still writing.
func TestStreamingResponsesArriveAsWritten(t *testing.T) {
	for _, ctype := range []string{"application/x-ndjson", "text/event-stream", "application/octet-stream"} {
		t.Run(ctype, func(t *testing.T) {
			up, i := newUpstream(t), newIDP(t)
			release := make(chan struct{})
			up.handle(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ctype)
				_, _ = io.WriteString(w, "{\"n\":1}\n")
				w.(http.Flusher).Flush()
				<-release
				_, _ = io.WriteString(w, "{\"n\":2}\n")
			})
			h := newHarness(t, baseConfig, up, i)
			resp, err := h.client().Get("http://" + up.hostPort() + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			lines := make(chan string, 2)
			go func() {
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			select {
			case l := <-lines:
				if l != `{"n":1}` {
					t.Fatalf("first line %q", l)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("first line held back until the stream ends")
			}
			close(release)
			if l := <-lines; l != `{"n":2}` {
				t.Fatalf("second line %q", l)
			}
		})
	}
}

func TestUpstreamKeepAliveSurvivesConnectionClose(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig, up, i)
	remotes := map[string]bool{}
	for n := 0; n < 5; n++ {
		req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/", nil)
		req.Close = true // Connection: close from the client
		resp, _ := h.do(req)
		remotes[resp.Header.Get("X-Seen-Remote")] = true
		if c := resp.Header.Get("X-Seen-Connection"); c != "" {
			t.Fatalf("upstream saw Connection: %q", c)
		}
	}
	if len(remotes) != 1 {
		t.Fatalf("upstream saw %d connections for 5 requests: %v", len(remotes), remotes)
	}
}

func TestRetryOnceAfter401WithBody(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	var calls atomic.Int64
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			w.WriteHeader(401)
			return
		}
		echo(w, r)
	})
	h := newHarness(t, baseConfig, up, i)
	req, _ := http.NewRequest("POST", "http://"+up.hostPort()+"/submit", strings.NewReader(strings.Repeat("x", 5000)))
	resp, body := h.do(req)
	if resp.StatusCode != 200 || body != "POST /submit body=5000" || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-2" {
		t.Fatalf("status %d body %q auth %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Authorization"))
	}
	if calls.Load() != 2 || i.fetches.Load() != 2 {
		t.Fatalf("upstream calls %d token fetches %d", calls.Load(), i.fetches.Load())
	}
	// A 401 with the fresh token goes to the client as it is: the last forced
	// refresh was less than min_refresh_interval ago, so no new token and no
	// replay.
	up.handle(func(w http.ResponseWriter, r *http.Request) { calls.Add(1); w.WriteHeader(401) })
	calls.Store(0)
	resp, _ = h.get("http://" + up.hostPort() + "/")
	if resp.StatusCode != 401 || calls.Load() != 1 || i.fetches.Load() != 2 {
		t.Fatalf("status %d calls %d token fetches %d", resp.StatusCode, calls.Load(), i.fetches.Load())
	}
}

func TestNoReplayForLargeBodies(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	var calls atomic.Int64
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(401)
	})
	h := newHarness(t, baseConfig, up, i)
	big := bytes.Repeat([]byte("y"), proxy.ReplayLimit+1)
	for _, chunked := range []bool{false, true} {
		calls.Store(0)
		var body io.Reader = bytes.NewReader(big)
		if chunked {
			body = io.MultiReader(bytes.NewReader(big)) // unknown length
		}
		req, _ := http.NewRequest("PUT", "http://"+up.hostPort()+"/big", body)
		resp, _ := h.do(req)
		if resp.StatusCode != 401 || calls.Load() != 1 {
			t.Fatalf("chunked=%v: status %d calls %d", chunked, resp.StatusCode, calls.Load())
		}
	}
	// the rejected token was dropped, so the next request fetches a new one
	if f := i.fetches.Load(); f < 2 {
		t.Fatalf("token not invalidated after 401: fetches %d", f)
	}
}

type errBody struct {
	Error, Connection, Message string
}

func decodeErr(t *testing.T, resp *http.Response, body string) errBody {
	t.Helper()
	var e errBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	if resp.Header.Get(proxy.ErrorHeader) != e.Error || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("header %q vs body %q", resp.Header.Get(proxy.ErrorHeader), e.Error)
	}
	for _, leak := range []string{"canary-client-secret", "dial tcp", "tok-"} {
		if strings.Contains(body, leak) {
			t.Fatalf("error body leaks %q: %s", leak, body)
		}
	}
	return e
}

func TestErrorCodes(t *testing.T) {
	up := newUpstream(t)
	t.Run("token endpoint down", func(t *testing.T) {
		h := newHarness(t, baseConfig, up, nil) // token_url on port 1
		resp, body := h.get("http://" + up.hostPort() + "/")
		e := decodeErr(t, resp, body)
		if resp.StatusCode != 502 || e.Error != proxy.CodeTokenUnavailable || e.Connection != "api" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%d %+v retry-after %q", resp.StatusCode, e, resp.Header.Get("Retry-After"))
		}
	})
	t.Run("client rejected", func(t *testing.T) {
		i := newIDP(t)
		h := newHarness(t, strings.Replace(baseConfig, `id = "app"`, `id = "wrong"`, 1), up, i)
		resp, body := h.get("http://" + up.hostPort() + "/")
		e := decodeErr(t, resp, body)
		if resp.StatusCode != 502 || e.Error != proxy.CodeTokenRejected || !strings.Contains(e.Message, "invalid_client") {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("credential not in vault", func(t *testing.T) {
		i := newIDP(t)
		h := newHarness(t, strings.Replace(baseConfig, `id = "app"`, `id = "absent"`, 1), up, i)
		resp, body := h.get("http://" + up.hostPort() + "/")
		if e := decodeErr(t, resp, body); resp.StatusCode != 502 || e.Error != proxy.CodeCredentialNotFound {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("upstream refused", func(t *testing.T) {
		i := newIDP(t)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		h := newHarness(t, strings.Replace(baseConfig, `hosts = ["{{UP}}"]`, `hosts = ["`+addr+`"]`, 1), up, i)
		resp, body := h.get("http://" + addr + "/")
		if e := decodeErr(t, resp, body); resp.StatusCode != 502 || e.Error != proxy.CodeUpstreamUnreachable || !strings.Contains(e.Message, "connection refused") {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("upstream untrusted", func(t *testing.T) {
		i := newIDP(t)
		h := newHarness(t, strings.Replace(baseConfig, `profile = "up"`, ``, 1), up, i)
		resp, body := h.get("http://" + up.hostPort() + "/")
		if e := decodeErr(t, resp, body); resp.StatusCode != 502 || e.Error != proxy.CodeUpstreamUnreachable || !strings.Contains(e.Message, "unknown authority") {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("upstream timeout", func(t *testing.T) {
		i := newIDP(t)
		slow := newUpstream(t)
		slow.handle(func(w http.ResponseWriter, r *http.Request) { time.Sleep(3 * time.Second) })
		h := newHarness(t, baseConfig, slow, i)
		resp, body := h.get("http://" + slow.hostPort() + "/")
		if e := decodeErr(t, resp, body); resp.StatusCode != 504 || e.Error != proxy.CodeUpstreamTimeout {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("origin-form request", func(t *testing.T) {
		h := newHarness(t, baseConfig, up, nil)
		resp, err := http.Get(h.url + "/direct")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if e := decodeErr(t, resp, string(b)); resp.StatusCode != 400 || e.Error != proxy.CodeBadRequest {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
}

// connect sends a CONNECT through the proxy and returns the status line and body.
func connect(t *testing.T, proxyURL, target string, extra string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, extra)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 200 {
		return 200, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get(proxy.ErrorHeader) + " " + string(b)
}

func TestEgressPolicy(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	plain := newPlainServer(t)
	t.Run("deny", func(t *testing.T) {
		h := newHarness(t, baseConfig, up, i)
		resp, body := h.get("http://unmatched.example/")
		if e := decodeErr(t, resp, body); resp.StatusCode != 403 || e.Error != proxy.CodeEgressDenied {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
		if code, b := connect(t, h.url, "unmatched.example:443", ""); code != 403 || !strings.HasPrefix(b, proxy.CodeEgressDenied) {
			t.Fatalf("CONNECT %d %s", code, b)
		}
		if code, b := connect(t, h.url, up.hostPort(), ""); code != 403 || !strings.HasPrefix(b, proxy.CodeInterceptDisabled) {
			t.Fatalf("CONNECT matched %d %s", code, b)
		}
	})
	t.Run("tunnel refuses private and loopback names", func(t *testing.T) {
		h := newHarness(t, baseConfig+"\n[egress]\nunmatched = \"tunnel\"\n", up, i)
		for _, u := range []string{"http://" + strings.Replace(plain, "127.0.0.1", "localhost", 1) + "/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:1/"} {
			resp, body := h.get(u)
			if e := decodeErr(t, resp, body); resp.StatusCode != 403 || e.Error != proxy.CodeEgressDenied {
				t.Fatalf("%s: %d %+v", u, resp.StatusCode, e)
			}
		}
		if code, b := connect(t, h.url, strings.Replace(plain, "127.0.0.1", "localhost", 1), ""); code != 403 || !strings.HasPrefix(b, proxy.CodeEgressDenied) {
			t.Fatalf("CONNECT loopback %d %s", code, b)
		}
	})
	t.Run("tunnel with allow_private passes without injection", func(t *testing.T) {
		h := newHarness(t, baseConfig+"\n[egress]\nunmatched = \"tunnel\"\nallow_private = true\n", up, i)
		req, _ := http.NewRequest("GET", "http://"+strings.Replace(plain, "127.0.0.1", "localhost", 1)+"/p", nil)
		req.Header.Set("Authorization", "Bearer app-own")
		resp, body := h.do(req)
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Authorization") != "Bearer app-own" || body != "GET /p body=0" {
			t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get("X-Seen-Authorization"), body)
		}
		if code, _ := connect(t, h.url, plain, ""); code != 200 {
			t.Fatalf("CONNECT allowed: %d", code)
		}
	})
}

func newPlainServer(t *testing.T) string {
	s := newPlain(t)
	return strings.TrimPrefix(s, "http://")
}

func TestProxyAuthentication(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	t.Setenv("AG_PROXY_PW", "pw-1")
	h := newHarness(t, baseConfig+"\n[server.auth]\nusers = [{ name = \"app1\", password = { env = \"AG_PROXY_PW\" } }]\n", up, i)
	resp, body := h.get("http://" + up.hostPort() + "/")
	if e := decodeErr(t, resp, body); resp.StatusCode != 407 || e.Error != proxy.CodeProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") == "" {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
	for _, cred := range []string{"app1:wrong", "nobody:pw-1"} {
		req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/", nil)
		req.Header.Set("Proxy-Authorization", "Basic "+b64std(cred))
		if resp, _ := h.do(req); resp.StatusCode != 407 {
			t.Fatalf("%s accepted", cred)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/", nil)
	req.Header.Set("Proxy-Authorization", "Basic "+b64std("app1:pw-1"))
	resp, _ = h.do(req)
	if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Proxy-Authorization") != "" {
		t.Fatalf("%d, upstream saw %q", resp.StatusCode, resp.Header.Get("X-Seen-Proxy-Authorization"))
	}
	if code, _ := connect(t, h.url, "unmatched.example:443", ""); code != 407 {
		t.Fatalf("CONNECT without auth: %d", code)
	}
}

func TestConcurrentFirstRequestsShareOneFetch(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	// 200 first requests open 200 upstream TLS connections at once: on a
	// loaded 2-core machine under -race that can take longer than the 2s
	// header timeout of baseConfig, which is not what this test is about.
	h := newHarness(t, strings.Replace(baseConfig, `timeout = "2s"`, `timeout = "30s"`, 1), up, i)
	c := h.client()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for n := 0; n < 200; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("http://" + up.hostPort() + "/")
			if err != nil || resp.StatusCode != 200 {
				if failed.Add(1) == 1 && err == nil {
					b, _ := io.ReadAll(resp.Body)
					t.Logf("first failure: %d %s", resp.StatusCode, b)
				} else if err != nil {
					t.Logf("failure: %v", err)
				}
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || i.fetches.Load() != 1 {
		t.Fatalf("failed %d fetches %d", failed.Load(), i.fetches.Load())
	}
}
