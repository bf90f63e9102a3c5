package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgress/authgress/intercept"
	"github.com/authgress/authgress/proxy"
)

// interceptConfig is baseConfig plus [intercept] with a fresh CA; it
// returns the config text and a pool that trusts the CA.
func interceptConfig(t *testing.T, extra string) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := intercept.NewCA("test interception CA", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	_ = os.WriteFile(cert, certPEM, 0o600)
	_ = os.WriteFile(key, keyPEM, 0o600)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return fmt.Sprintf("[intercept]\nca_cert = %q\nca_key = %q\n%s\n", cert, key, extra) + baseConfig, pool
}

// httpsClient calls https:// URLs through the proxy (CONNECT), trusting
// roots, and counts its TCP connections to the proxy.
func httpsClient(proxyURL string, roots *x509.CertPool, dials *atomic.Int64) *http.Client {
	pu, _ := url.Parse(proxyURL)
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}, Timeout: 10 * time.Second}
}

func TestInterceptInjectsOverOneKeptAliveTunnel(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	text, roots := interceptConfig(t, "")
	h := newHarness(t, text, up, i)
	var dials atomic.Int64
	c := httpsClient(h.url, roots, &dials)
	for n := range 100 {
		req, _ := http.NewRequest("GET", "https://"+up.hostPort()+fmt.Sprintf("/v1/items/%d", n), nil)
		req.Header.Set("Authorization", "Bearer client-supplied")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-1" || resp.Header.Get("X-Seen-Scheme") != "https" {
			t.Fatalf("request %d: %d %q, upstream saw %q", n, resp.StatusCode, body, resp.Header.Get("X-Seen-Authorization"))
		}
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("100 requests opened %d connections to the proxy, want 1 (one CONNECT, one client TLS handshake)", d)
	}
	if u := up.conns.Load(); u != 1 {
		t.Errorf("100 requests opened %d upstream connections, want 1", u)
	}
	if f := i.fetches.Load(); f != 1 {
		t.Errorf("token fetches = %d, want 1", f)
	}
	if m := h.eng.cur.Load().proxy.Intercept.Mints(); m != 1 {
		t.Errorf("leaves minted = %d, want 1", m)
	}
	logs := h.logText()
	if n := strings.Count(logs, "reason=\"inside an intercepted tunnel\""); n != 100 {
		t.Errorf("%d access lines for inner requests, want 100:\n%s", n, logs)
	}
	if !strings.Contains(logs, "method=CONNECT") || !strings.Contains(logs, `reason="matched: tunnel intercepted"`) {
		t.Errorf("no access line for the CONNECT:\n%s", logs)
	}
	if strings.Contains(logs, "tok-1") || strings.Contains(logs, "PRIVATE KEY") {
		t.Errorf("log leaks a token or key:\n%s", logs)
	}
}

func TestInterceptRefusesAnotherHostInsideTheTunnel(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	var seen atomic.Int64
	up.handle(func(w http.ResponseWriter, r *http.Request) { seen.Add(1); echo(w, r) })
	text, roots := interceptConfig(t, "")
	h := newHarness(t, text, up, i)

	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", up.hostPort(), up.hostPort())
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	host, _, _ := net.SplitHostPort(up.hostPort())
	tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: host})
	tw := bufio.NewReader(tc)
	for _, target := range []string{"evil.example", "https://evil.example/v1", host + ":1"} {
		reqLine, hostHdr := "/v1/x", target
		if strings.HasPrefix(target, "https://") {
			reqLine, hostHdr = target, up.hostPort()
		}
		fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", reqLine, hostHdr)
		r, err := http.ReadResponse(tw, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusMisdirectedRequest || r.Header.Get(proxy.ErrorHeader) != proxy.CodeMisdirected {
			t.Fatalf("%s: %d %s", target, r.StatusCode, body)
		}
	}
	// The tunnel is still usable for its own target.
	fmt.Fprintf(tc, "GET /v1/ok HTTP/1.1\r\nHost: %s\r\n\r\n", up.hostPort())
	r, err := http.ReadResponse(tw, nil)
	if err != nil || r.StatusCode != 200 || r.Header.Get("X-Seen-Authorization") != "Bearer tok-1" {
		t.Fatalf("own target: %v %v", r, err)
	}
	if n := seen.Load(); n != 1 {
		t.Fatalf("the upstream saw %d requests, want only the one for its own host", n)
	}
}

func TestUnmatchedTunnelsAreNeverIntercepted(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	other := newUpstream(t)
	text, roots := interceptConfig(t, "[egress]\nunmatched = \"tunnel\"\nallow_private = true\n")
	h := newHarness(t, text, up, i)
	// other's certificate comes from its own test CA: through a plain
	// tunnel the client sees it, not a leaf of ours.
	roots.AddCert(other.Certificate())
	resp, err := httpsClient(h.url, roots, nil).Get(other.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].Issuer.CommonName == "test interception CA" || resp.Header.Get("X-Seen-Authorization") != "" {
		t.Fatalf("%d, issuer %q, upstream saw %q", resp.StatusCode, resp.TLS.PeerCertificates[0].Issuer.CommonName, resp.Header.Get("X-Seen-Authorization"))
	}
	if m := h.eng.cur.Load().proxy.Intercept.Mints(); m != 0 {
		t.Fatalf("%d leaves minted for an unmatched host", m)
	}
}

func TestFailedTunnelDialIsLoggedAsTheFailure(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, "[egress]\nunmatched = \"tunnel\"\nallow_private = true\n"+baseConfig, up, i)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	code, body := connect(t, h.url, closed, "")
	if code != 502 || !strings.HasPrefix(body, proxy.CodeUpstreamUnreachable) {
		t.Fatalf("CONNECT to a closed port: %d %s", code, body)
	}
	waitFor(t, func() bool { return strings.Contains(h.logText(), "method=CONNECT") })
	line := ""
	for _, l := range strings.Split(h.logText(), "\n") {
		if strings.Contains(l, "method=CONNECT") {
			line = l
		}
	}
	if !strings.Contains(line, "status=502") || !strings.Contains(line, "error=upstream_unreachable") || !strings.Contains(line, "host="+closed) {
		t.Fatalf("access line: %s", line)
	}
}

func TestInterceptDisabledSaysHowToFixItInTheStatusLine(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig, up, i)
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", up.hostPort(), up.hostPort())
	line, _ := bufio.NewReader(c).ReadString('\n')
	want := "call http://" + up.hostPort() + "/..."
	if !strings.HasPrefix(line, "HTTP/1.1 403 ") || !strings.Contains(line, want) || !strings.Contains(line, "[intercept]") {
		t.Fatalf("status line %q does not say %q", line, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

func TestInterceptServesHTTP2(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	text, roots := interceptConfig(t, "")
	h := newHarness(t, text, up, i)
	c := httpsClient(h.url, roots, nil)
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	for n := range 20 {
		resp, err := c.Get("https://" + up.hostPort() + "/v1/h2")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-1" {
			t.Fatalf("request %d: %s %d %q", n, resp.Proto, resp.StatusCode, body)
		}
	}
	// Pinning holds on h2 too: :authority naming another host is refused.
	req, _ := http.NewRequest("GET", "https://"+up.hostPort()+"/v1/x", nil)
	req.Host = "evil.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("h2 request for another authority: %d", resp.StatusCode)
	}
}

// A client that comes back in a new tunnel resumes its TLS session: every
// tunnel has its own tls.Config, and they share the session-ticket keys.
func TestInterceptTunnelsResumeTLSSessions(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	text, roots := interceptConfig(t, "")
	h := newHarness(t, text, up, i)
	pu, _ := url.Parse(h.url)
	resumed := make([]bool, 3)
	cache := tls.NewLRUClientSessionCache(8)
	for n := range resumed {
		var state tls.ConnectionState
		tr := &http.Transport{
			Proxy:             http.ProxyURL(pu),
			TLSClientConfig:   &tls.Config{RootCAs: roots, ClientSessionCache: cache},
			DisableKeepAlives: true, // a new tunnel per request
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := c.Get("https://" + up.hostPort() + "/v1/items")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.TLS != nil {
			state = *resp.TLS
		}
		resumed[n] = state.DidResume
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-1" {
			t.Fatalf("tunnel %d: %d, upstream saw %q", n, resp.StatusCode, resp.Header.Get("X-Seen-Authorization"))
		}
	}
	if resumed[0] || !resumed[1] || !resumed[2] {
		t.Errorf("resumed per tunnel = %v, want [false true true]", resumed)
	}
}
