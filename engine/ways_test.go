package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgress/authgress/proxy"
)

const reverseConfig = `
[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.up]
ca = "{{CA}}"

[credentials.app]
vault = "local"
id = "app"
token_url = "{{IDP}}"
scopes = ["api.read"]

[connections.rev]
listen = "127.0.0.1:0"
url = "https://{{UP}}/base/"
credential = "app"
profile = "up"
`

func getVia(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestReverseListener(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, reverseConfig, up, i)
	base := "http://" + h.eng.ReverseAddr("rev")
	req, _ := http.NewRequest("GET", base+"/items/../orders?q=1", nil)
	req.Header.Set("Authorization", "Bearer from-the-app")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "GET /base/orders?q=1 body=0" || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-1" {
		t.Fatalf("%d %q, upstream saw %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Authorization"))
	}
	// A proxy request to a reverse listener is refused, not routed.
	pu, _ := url.Parse(base)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	if resp, _ := getVia(t, c, "http://"+up.hostPort()+"/x"); resp.StatusCode != 400 || resp.Header.Get(proxy.ErrorHeader) != proxy.CodeBadRequest {
		t.Fatalf("proxy request to a reverse listener: %d", resp.StatusCode)
	}
	// A reverse listener's connection without hosts takes no part in forward matching.
	if resp, _ := h.get("http://" + up.hostPort() + "/x"); resp.StatusCode != 403 {
		t.Fatalf("forward request for the reverse connection's host: %d, want 403", resp.StatusCode)
	}
	if logs := h.logText(); !strings.Contains(logs, `reason="reverse listener"`) || !strings.Contains(logs, "connection=rev") {
		t.Fatalf("access line:\n%s", logs)
	}
}

func TestHostMappingSendsHostsToURL(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	text := strings.Replace(baseConfig, `hosts = ["{{UP}}"]`, "hosts = [\"myapi.internal\"]\nurl = \"https://{{UP}}/orders\"", 1)
	h := newHarness(t, text, up, i)
	resp, body := h.get("http://myapi.internal/42?x=1")
	if resp.StatusCode != 200 || body != "GET /orders/42?x=1 body=0" || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-1" {
		t.Fatalf("%d %q %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Authorization"))
	}
	// The upstream's certificate is verified against url's host: a url
	// naming a host the certificate does not cover fails the handshake.
	text = strings.Replace(baseConfig, `hosts = ["{{UP}}"]`, "hosts = [\"myapi.internal\"]\nurl = \"https://localhost:"+up.port()+"/orders\"", 1)
	h = newHarness(t, text, up, i)
	if resp, body := h.get("http://myapi.internal/42"); resp.StatusCode != 502 || !strings.Contains(body, "localhost:"+up.port()) {
		t.Fatalf("a name the certificate does not cover: %d %s", resp.StatusCode, body)
	}
}

func TestClientsSelectTheCredential(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	text := `
[server.auth]
users = [{ name = "app1", password = "pw1" }, { name = "app2", password = "pw2" }, { name = "app3", password = "pw3" }]

[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.up]
ca = "{{CA}}"

[credentials.one]
vault = "local"
id = "app"
token_url = "{{IDP}}"
scopes = ["one"]

[credentials.two]
vault = "local"
id = "app"
token_url = "{{IDP}}"
scopes = ["two"]

[connections.for_app1]
hosts = ["{{UP}}"]
clients = ["app1"]
credential = "one"
profile = "up"

[connections.for_app2]
hosts = ["{{UP}}"]
clients = ["app2"]
credential = "two"
profile = "up"
`
	h := newHarness(t, text, up, i)
	tokens := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for n := range 100 {
		user := []string{"app1", "app2"}[n%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/x", nil)
			req.Header.Set("Proxy-Authorization", "Basic "+b64std(user+":pw"+user[3:]))
			resp, _ := h.do(req)
			mu.Lock()
			defer mu.Unlock()
			got := resp.Header.Get("X-Seen-Authorization")
			if resp.StatusCode != 200 || got == "" {
				t.Errorf("%s: %d", user, resp.StatusCode)
			}
			if prev, ok := tokens[user]; ok && prev != got {
				t.Errorf("%s got two tokens: %q and %q", user, prev, got)
			}
			tokens[user] = got
		}()
	}
	wg.Wait()
	if tokens["app1"] == tokens["app2"] {
		t.Fatalf("both users got %q: their connections have different credentials", tokens["app1"])
	}
	req, _ := http.NewRequest("GET", "http://"+up.hostPort()+"/x", nil)
	req.Header.Set("Proxy-Authorization", "Basic "+b64std("app3:pw3"))
	resp, body := h.do(req)
	if resp.StatusCode != 403 || resp.Header.Get(proxy.ErrorHeader) != proxy.CodeEgressDenied || !strings.Contains(body, `client \"app3\" is not admitted`) {
		t.Fatalf("app3: %d %s", resp.StatusCode, body)
	}
	if logs := h.logText(); !strings.Contains(logs, "client=app1") || !strings.Contains(logs, "client=app3") {
		t.Fatalf("the client is not in the access lines:\n%s", logs)
	}
}

// agentHarness is an authgress whose proxy listener is TLS with client
// certificates ([server.tls]).
func agentHarness(t *testing.T, extra string) (*harness, *testCA, string, string) {
	t.Helper()
	up, i := newUpstream(t), newIDP(t)
	ca := newTestCA(t, "gateways")
	dir := t.TempDir()
	certFile, keyFile, _ := ca.issue(t, dir, "agent", "agent", true)
	text := fmt.Sprintf("[server.tls]\ncert = %q\nkey = %q\nclient_ca = %q\nwatch_interval = \"100ms\"\n", certFile, keyFile, ca.file) + extra +
		strings.Replace(baseConfig, `[connections.api]`, "[connections.api]\nclients = [\"CN=gw1\"]", 1) +
		"\n[connections.api_gw2]\nhosts = [\"{{UP}}\"]\nclients = [\"CN=gw2\"]\nprofile = \"up\"\n"
	h := newHarness(t, text, up, i)
	return h, ca, dir, "https://" + up.hostPort()
}

func agentClient(h *harness, ca *testCA, cert *tls.Certificate) *http.Client {
	pu, _ := url.Parse("https://" + h.eng.ProxyAddr())
	cfg := &tls.Config{RootCAs: ca.pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

func TestAgentListenerRequiresClientCertificates(t *testing.T) {
	h, ca, dir, target := agentHarness(t, "")
	_, _, gw1 := ca.issue(t, dir, "gw1", "gw1", false)
	_, _, gw2 := ca.issue(t, dir, "gw2", "gw2", false)

	// A gateway asks for https:// URLs in absolute form (the proxy
	// request goes over the TLS connection to the agent).
	req, _ := http.NewRequest("GET", strings.Replace(target, "https://", "http://", 1)+"/v1", nil)
	resp, err := agentClient(h, ca, &gw1).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Authorization") != "Bearer tok-1" {
		t.Fatalf("gw1: %d %q", resp.StatusCode, resp.Header.Get("X-Seen-Authorization"))
	}
	resp, _ = getVia(t, agentClient(h, ca, &gw2), strings.Replace(target, "https://", "http://", 1)+"/v1")
	if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Authorization") != "" {
		t.Fatalf("gw2 (its connection has no credential): %d %q", resp.StatusCode, resp.Header.Get("X-Seen-Authorization"))
	}
	// No certificate, or one from another CA: the handshake is refused.
	other := newTestCA(t, "strangers")
	_, _, stranger := other.issue(t, t.TempDir(), "x", "gw1", false)
	for name, c := range map[string]*http.Client{"no certificate": agentClient(h, ca, nil), "untrusted": agentClient(h, ca, &stranger)} {
		if resp, err := c.Get(strings.Replace(target, "https://", "http://", 1) + "/v1"); err == nil {
			resp.Body.Close()
			t.Fatalf("%s: got %d, want a refused handshake", name, resp.StatusCode)
		}
	}
	if logs := h.logText(); !strings.Contains(logs, `client="CN=gw1,O=authgress tests"`) {
		t.Fatalf("the subject is not in the access line:\n%s", logs)
	}
}

func TestAgentCertificateRotatesUnderLoad(t *testing.T) {
	h, ca, dir, target := agentHarness(t, "")
	_, _, gw1 := ca.issue(t, dir, "gw1", "gw1", false)
	c := agentClient(h, ca, &gw1)
	serialOf := func() string {
		tc, err := tls.Dial("tcp", h.eng.ProxyAddr(), &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{gw1}})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serialOf()
	// Every request on a new connection: new handshakes while the certificate changes.
	stop := underLoad(4, c, strings.Replace(target, "https://", "http://", 1)+"/v1", c.Transport.(*http.Transport).CloseIdleConnections)
	time.Sleep(200 * time.Millisecond)
	ca.issue(t, dir, "agent", "agent", true) // rotate
	deadline := time.Now().Add(5 * time.Second)
	for serialOf() == before {
		if time.Now().After(deadline) {
			t.Fatal("the new server certificate was not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	ok, failed := stop()
	if failed != 0 || ok < 10 {
		t.Fatalf("%d of %d requests failed during the rotation", failed, ok+failed)
	}
	// A bad pair keeps the current certificate.
	cur := serialOf()
	_ = os.WriteFile(dir+"/agent.pem", []byte("not a certificate"), 0o600)
	time.Sleep(400 * time.Millisecond)
	if serialOf() != cur {
		t.Fatal("a bad certificate file replaced the good one")
	}
	if !strings.Contains(h.logText(), "server certificate change rejected") {
		t.Fatal("the rejected change was not logged")
	}
}

func TestReloadAddsRemovesAndChangesReverseListeners(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	conn := func(name, base string) string {
		return fmt.Sprintf("\n[connections.%s]\nlisten = \"127.0.0.1:0\"\nurl = \"https://%s/%s\"\ncredential = \"app\"\nprofile = \"up\"\n", name, up.hostPort(), base)
	}
	head := strings.SplitN(reverseConfig, "[connections.rev]", 2)[0]
	h := newHarness(t, head+conn("keep", "k")+conn("gone", "g")+conn("moved", "m1"), up, i)
	keep := "http://" + h.eng.ReverseAddr("keep")
	gone := "http://" + h.eng.ReverseAddr("gone")
	moved := "http://" + h.eng.ReverseAddr("moved")

	stop := underLoad(4, http.DefaultClient, keep+"/x", nil)
	time.Sleep(100 * time.Millisecond)
	cfg := h.eng.Config()
	text, _ := os.ReadFile(cfg.Path)
	next := strings.Replace(string(text), conn("gone", "g"), "", 1)
	next = strings.Replace(next, "/m1\"", "/m2\"", 1) + conn("added", "a")
	if err := os.WriteFile(cfg.Path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	ok, failed := stop()
	if failed != 0 || ok < 10 {
		t.Fatalf("%d of %d requests failed on the listener that stayed", failed, ok+failed)
	}
	if a := "http://" + h.eng.ReverseAddr("keep"); a != keep {
		t.Fatalf("the kept listener moved: %s -> %s", keep, a)
	}
	if _, err := http.Get(gone + "/x"); err == nil {
		t.Fatal("the removed listener still answers")
	}
	if _, body := getVia(t, http.DefaultClient, moved+"/x"); body != "GET /m2/x body=0" {
		t.Fatalf("changed url: %q", body)
	}
	if _, body := getVia(t, http.DefaultClient, "http://"+h.eng.ReverseAddr("added")+"/x"); body != "GET /a/x body=0" {
		t.Fatalf("added listener: %q", body)
	}
}
