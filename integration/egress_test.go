package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// rawConnect sends CONNECT target through the proxy; it returns the status
// and, for refusals, the error code and body.
func rawConnect(t *testing.T, proxyAddr, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 200 {
		return 200, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Authgress-Error") + " " + string(b)
}

func TestEgressPolicy(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	plain := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(plain.Close)
	plainPort := plain.URL[strings.LastIndex(plain.URL, ":")+1:]
	localhost := "localhost:" + plainPort // a name that resolves to loopback

	t.Run("deny by default", func(t *testing.T) {
		a := startAuthgress(t, config(idp.TokenURL(), up.Addr, ""))
		resp, body := a.Get("http://unmatched.example/")
		if e := decodeError(t, resp, body); resp.StatusCode != 403 || e.Error != "egress_denied" {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
		if code, b := rawConnect(t, a.Addr, "unmatched.example:443"); code != 403 || !strings.HasPrefix(b, "egress_denied") {
			t.Fatalf("CONNECT unmatched: %d %s", code, b)
		}
		code, b := rawConnect(t, a.Addr, up.Addr)
		if code != 403 || !strings.HasPrefix(b, "intercept_disabled") || !strings.Contains(b, "http://") {
			t.Fatalf("CONNECT matched: %d %s", code, b)
		}
	})
	t.Run("tunnel refuses loopback and metadata addresses", func(t *testing.T) {
		a := startAuthgress(t, config(idp.TokenURL(), up.Addr, "")+"\n[egress]\nunmatched = \"tunnel\"\n")
		for _, u := range []string{"http://" + localhost + "/", "http://169.254.169.254/latest/meta-data/"} {
			resp, body := a.Get(u)
			if e := decodeError(t, resp, body); resp.StatusCode != 403 || e.Error != "egress_denied" {
				t.Fatalf("%s: %d %+v", u, resp.StatusCode, e)
			}
		}
		if code, b := rawConnect(t, a.Addr, localhost); code != 403 || !strings.HasPrefix(b, "egress_denied") {
			t.Fatalf("CONNECT %s: %d %s", localhost, code, b)
		}
	})
	t.Run("tunnel with allow_private forwards without injection", func(t *testing.T) {
		a := startAuthgress(t, config(idp.TokenURL(), up.Addr, "")+"\n[egress]\nunmatched = \"tunnel\"\nallow_private = true\n")
		req := mustRequest(t, "GET", "http://"+localhost+"/own", nil)
		req.Header.Set("Authorization", "Bearer the-apps-own")
		resp, body := a.Do(req)
		if resp.StatusCode != 200 || body != "GET /own 0" || resp.Header.Get("X-Seen-Authorization") != "Bearer the-apps-own" {
			t.Fatalf("%d %q %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Authorization"))
		}
		if code, b := rawConnect(t, a.Addr, localhost); code != 200 {
			t.Fatalf("CONNECT: %d %s", code, b)
		}
	})
}

func TestProxyAuthentication(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	t.Setenv("APP1_PROXY_PASSWORD", "proxy-pass-1")
	a := startAuthgress(t, config(idp.TokenURL(), up.Addr, "")+"\n[server.auth]\nusers = [{ name = \"app1\", password = { env = \"APP1_PROXY_PASSWORD\" } }]\n")
	resp, body := a.Get("http://" + up.Addr + "/")
	if e := decodeError(t, resp, body); resp.StatusCode != 407 || e.Error != "proxy_auth_required" {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
	req := mustRequest(t, "GET", "http://"+up.Addr+"/", nil)
	req.SetBasicAuth("app1", "proxy-pass-1")
	req.Header.Set("Proxy-Authorization", req.Header.Get("Authorization"))
	req.Header.Del("Authorization")
	resp, _ = a.Do(req)
	if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Proxy-Authorization") != "" {
		t.Fatalf("%d, upstream saw Proxy-Authorization %q", resp.StatusCode, resp.Header.Get("X-Seen-Proxy-Authorization"))
	}
}
