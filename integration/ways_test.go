package integration

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The four ways in, against the real binary: reverse listeners (with
// Node's built-in fetch and curl, which need no proxy support), host
// mapping, the agent listener (client certificates, rotation) and
// per-workload credentials selected by the client's identity.

// reverseAddr waits for the newest "listener started" line of the named
// connection's reverse listener and returns the address it is bound to.
func (a *Authgress) reverseAddr(name string) string {
	a.t.Helper()
	prefix := "connections." + name + ".listen "
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		addr := ""
		for _, l := range a.logLines() {
			if s, _ := l["listener"].(string); l["msg"] == "listener started" && strings.HasPrefix(s, prefix) {
				addr, _ = l["addr"].(string)
			}
		}
		if addr != "" {
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("no listener started for connection %s:\n%s", name, a.out.String())
	return ""
}

// reverseConn is a connection with its own listener in front of url.
func reverseConn(name, base, credential string) string {
	return fmt.Sprintf("\n[connections.%s]\nlisten = \"127.0.0.1:0\"\nurl = %q\ncredential = %q\nprofile = \"upstream\"\n", name, base, credential)
}

// twoCredentials is the file vault, the upstream's trust, and two
// credentials that get different tokens from the IdP: "reader" (client
// proxy-client, scope api:read) and "writer" (client proxy-client-post,
// scope api:write).
func twoCredentials(tokenURL string) string {
	return fmt.Sprintf(`
[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.upstream]
ca = "{{CA}}"

[credentials.reader]
vault = "local"
id = "app"
token_url = %[1]q
scopes = ["api:read"]

[credentials.writer]
vault = "local"
id = "app_post"
send = "body"
token_url = %[1]q
scopes = ["api:write"]
`, tokenURL)
}

// tally is an upstream's record of which live tokens it saw for which
// sender (the X-Who header the test's client sets).
type tally struct {
	mu    sync.Mutex
	seen  map[string]map[string]int // who -> token -> requests
	grant map[string]string         // token -> "client scope" from introspection
}

// tallying makes up accept only tokens the IdP says are active, and count
// them per sender.
func tallying(up *Upstream, idp *IdP) *tally {
	tl := &tally{seen: map[string]map[string]int{}, grant: map[string]string{}}
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		active, client, scope := idp.Introspect(tok)
		if !active {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		who := r.Header.Get("X-Who")
		tl.mu.Lock()
		if tl.seen[who] == nil {
			tl.seen[who] = map[string]int{}
		}
		tl.seen[who][tok]++
		tl.grant[tok] = client + " " + scope
		tl.mu.Unlock()
		echo(w, r)
	})
	return tl
}

// only returns the one token who's requests carried, and how many there were.
func (tl *tally) only(t *testing.T, who string) (token, grant string, n int) {
	t.Helper()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if len(tl.seen[who]) != 1 {
		t.Fatalf("%s: the upstream saw %d distinct tokens, want 1", who, len(tl.seen[who]))
	}
	for tok, n := range tl.seen[who] {
		return tok, tl.grant[tok], n
	}
	return "", "", 0
}

// interleave sends n requests for each sender concurrently (alternating
// senders, 16 at a time) and returns how many did not get a 200.
func interleave(t *testing.T, n int, senders []string, send func(who string, i int) (*http.Response, error)) int64 {
	t.Helper()
	var failed atomic.Int64
	var first sync.Once
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				who := senders[j%len(senders)]
				resp, err := send(who, j)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					first.Do(func() { t.Logf("first failure (%s): %v %v", who, err, resp) })
				}
			}
		}()
	}
	for j := range n * len(senders) {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	return failed.Load()
}

// docRecipe returns the code block that follows <!-- recipe: name --> in doc.
func docRecipe(t *testing.T, doc, name string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(text), "<!-- recipe: "+name+" -->\n")
	if fence, _, _ := strings.Cut(after, "\n"); !ok || !strings.HasPrefix(strings.TrimSpace(fence), "```") {
		t.Fatalf("docs/%s has no recipe %q (a code block right after the marker)", doc, name)
	}
	_, after, _ = strings.Cut(after, "\n")
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatalf("docs/%s: recipe %q has no end", doc, name)
	}
	return block
}

// TestWaysReverseListenerNodeFetchAndCurl: an app that cannot use a proxy
// changes its base URL. Node's built-in fetch (no proxy support) and curl,
// running the recipes of docs/reverse.md, call the reverse listener; the
// upstream gets a live token the IdP issued, at url's base path, over TLS.
func TestWaysReverseListenerNodeFetchAndCurl(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	a := startAuthgress(t, twoCredentials(idp.TokenURL())+reverseConn("orders", "https://"+up.Addr+"/api/", "reader"))
	base := "http://" + a.reverseAddr("orders")
	swap := strings.NewReplacer("http://127.0.0.1:8081", base).Replace

	for _, name := range []string{"reverse-node", "reverse-curl"} {
		before := len(up.Auths())
		script := swap(docRecipe(t, "reverse.md", name))
		var cmd *exec.Cmd
		if name == "reverse-node" {
			cmd = exec.Command("/usr/bin/node", "-e", script) // Debian's node: fetch is built in
		} else {
			cmd = exec.Command("sh", "-ec", script)
		}
		cmd.Env = clientEnv() // no proxy variables: nothing but the base URL points at authgress
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		// introspecting answers 401 unless the IdP says the token is live
		if !strings.Contains(string(out), "GET /api/orders?status=open 0") {
			t.Fatalf("%s: the API's answer is missing:\n%s", name, out)
		}
		if name == "reverse-node" && !strings.HasPrefix(string(out), "200 ") {
			t.Fatalf("%s: %s", name, out)
		}
		auths := up.Auths()
		if len(auths) != before+1 || !strings.HasPrefix(auths[len(auths)-1], "Bearer ") {
			t.Fatalf("%s: the upstream saw %v", name, auths[before:])
		}
		tok := strings.TrimPrefix(auths[len(auths)-1], "Bearer ")
		if active, client, scope := idp.Introspect(tok); !active || client != "proxy-client" || scope != "api:read" {
			t.Fatalf("%s: token active=%v client=%q scope=%q", name, active, client, scope)
		}
		if strings.Contains(string(out), tok) {
			t.Fatalf("%s: the client saw the token", name)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(string(out)))
	}
	l := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["connection"] == "orders" })
	if l["reason"] != "reverse listener" || l["status"] != float64(200) {
		t.Fatalf("access line: %v", l)
	}
}

// TestWaysTwoReverseListenersOneUpstream: two reverse listeners in front
// of the same API with different credentials (different client ids and
// scopes). 100 requests on each, interleaved and concurrent: every request
// carries its own listener's token, never the other's.
func TestWaysTwoReverseListenersOneUpstream(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	tl := tallying(up, idp)
	a := startAuthgress(t, twoCredentials(idp.TokenURL())+
		reverseConn("as_reader", "https://"+up.Addr+"/api", "reader")+
		reverseConn("as_writer", "https://"+up.Addr+"/api", "writer"))
	addrs := map[string]string{"as_reader": a.reverseAddr("as_reader"), "as_writer": a.reverseAddr("as_writer")}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	failed := interleave(t, 100, []string{"as_reader", "as_writer"}, func(who string, i int) (*http.Response, error) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/items/%d", addrs[who], i), nil)
		req.Header.Set("X-Who", who)
		return client.Do(req)
	})
	rtok, rgrant, rn := tl.only(t, "as_reader")
	wtok, wgrant, wn := tl.only(t, "as_writer")
	t.Logf("200 interleaved requests: %d failed; as_reader: %d with one token (%s); as_writer: %d with one token (%s)", failed, rn, rgrant, wn, wgrant)
	if failed != 0 || rn != 100 || wn != 100 {
		t.Fatalf("%d failed; as_reader %d, as_writer %d requests (want 0, 100, 100)", failed, rn, wn)
	}
	if rtok == wtok || rgrant != "proxy-client api:read" || wgrant != "proxy-client-post api:write" {
		t.Fatalf("tokens: as_reader %q, as_writer %q (same token: %v)", rgrant, wgrant, rtok == wtok)
	}
}

// issueServerCert writes a server certificate for 127.0.0.1 and localhost,
// signed by the test CA, as name.pem and name-key.pem in dir. Each file is
// replaced atomically (written aside, then renamed), the key first.
func issueServerCert(t *testing.T, dir, name string) (certFile, keyFile string, serialNo *big.Int) {
	t.Helper()
	p := getPKI(t)
	key := newKey()
	serialNo = big.NewInt(serial.Add(1) + 1_000_000)
	tmpl := &x509.Certificate{SerialNumber: serialNo, Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEMFile(keyFile+".tmp", "PRIVATE KEY", kder)
	if err := os.Rename(keyFile+".tmp", keyFile); err != nil {
		t.Fatal(err)
	}
	writePEMFile(certFile+".tmp", "CERTIFICATE", der)
	if err := os.Rename(certFile+".tmp", certFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, serialNo
}

// agent is an authgress whose proxy listener is TLS ([server.tls]) with
// client_ca: the gateways' CA.
type agent struct {
	*Authgress
	dir   string // the agent's certificate and key, rotated in place
	gwCA  *x509.Certificate
	gwKey *ecdsa.PrivateKey
	roots *x509.CertPool // trusts the agent's certificate
}

func startAgent(t *testing.T, config string) *agent {
	t.Helper()
	ag := &agent{dir: t.TempDir(), roots: x509.NewCertPool()}
	ag.gwCA, ag.gwKey = newCA("gateways")
	caFile := filepath.Join(ag.dir, "gateways-ca.pem")
	writePEMFile(caFile, "CERTIFICATE", ag.gwCA.Raw)
	certFile, keyFile, _ := issueServerCert(t, ag.dir, "agent")
	ag.roots.AddCert(getPKI(t).ca)
	ag.Authgress = startAuthgress(t, fmt.Sprintf("[server.tls]\ncert = %q\nkey = %q\nclient_ca = %q\nwatch_interval = \"100ms\"\n", certFile, keyFile, caFile)+config)
	return ag
}

// gateway issues a client certificate for cn, signed by the gateways' CA
// unless another CA is given.
func (ag *agent) gateway(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *tls.Certificate) {
	t.Helper()
	if ca == nil {
		ca, caKey = ag.gwCA, ag.gwKey
	}
	certFile, keyFile = issueClient(t, t.TempDir(), cn, ca, caKey)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &c
}

// client sends proxy requests to the agent over TLS, presenting cert (if
// any). Without keep-alive, every request is a new TLS handshake.
func (ag *agent) client(cert *tls.Certificate, keepAlive bool, verify func(tls.ConnectionState) error) *http.Client {
	pu, _ := url.Parse("https://" + ag.Addr)
	cfg := &tls.Config{RootCAs: ag.roots, VerifyConnection: verify}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: cfg,
		DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 16}}
}

// serverSerial is the serial number of the certificate the agent presents
// to a new connection.
func (ag *agent) serverSerial(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	c, err := tls.Dial("tcp", ag.Addr, &tls.Config{RootCAs: ag.roots, Certificates: []tls.Certificate{*cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestWaysAgentClientCertificates: the agent listener with client_ca. A
// gateway with a certificate from the gateways' CA (Go, and curl with
// --proxy https://) gets 200 and a live token upstream; no certificate, or
// one from another CA with the same subject, fails the TLS handshake; the
// verified subject is the access line's client.
func TestWaysAgentClientCertificates(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	ag := startAgent(t, config(idp.TokenURL(), up.Addr, ""))
	gw1Cert, gw1Key, gw1 := ag.gateway(t, "gw1", nil, nil)

	resp, err := ag.client(gw1, true, nil).Get("http://" + up.Addr + "/v1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "GET /v1 0" || resp.Header.Get("X-Token-Scope") != "api:read" {
		t.Fatalf("gw1: %d %q scope %q", resp.StatusCode, body, resp.Header.Get("X-Token-Scope"))
	}

	// curl as the gateway: TLS to the proxy, with a client certificate
	caFile := filepath.Join(ag.dir, "agent-roots.pem")
	writePEMFile(caFile, "CERTIFICATE", getPKI(t).ca.Raw)
	cmd := exec.Command("curl", "-sS", "--fail", "--proxy", "https://"+ag.Addr, "--proxy-cacert", caFile,
		"--proxy-cert", gw1Cert, "--proxy-key", gw1Key, "http://"+up.Addr+"/from-curl")
	cmd.Env = clientEnv()
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "GET /from-curl 0" {
		t.Fatalf("curl: %v %s", err, out)
	}

	strangers, strangersKey := newCA("gateways") // same name, another key
	_, _, stranger := ag.gateway(t, "gw1", strangers, strangersKey)
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "untrusted certificate": stranger} {
		before := up.count.Load()
		resp, err := ag.client(cert, false, nil).Get("http://" + up.Addr + "/v1")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: got %d, want a refused handshake", name, resp.StatusCode)
		}
		if !strings.Contains(err.Error(), "tls: ") || up.count.Load() != before {
			t.Fatalf("%s: %v (upstream requests %d -> %d)", name, err, before, up.count.Load())
		}
		t.Logf("%s: %v", name, err)
	}
	l := ag.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["path"] == "/v1" })
	if l["client"] != "CN=gw1,O=authgress-it" || l["connection"] != "api" || l["status"] != float64(200) {
		t.Fatalf("access line: %v", l)
	}
}

// TestWaysAgentCertificateRotationUnderLoad: the agent's certificate and
// key files are replaced while gateways loop with a new TLS connection per
// request: no request fails, and new connections get the new certificate.
func TestWaysAgentCertificateRotationUnderLoad(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	ag := startAgent(t, config(idp.TokenURL(), up.Addr, ""))
	_, _, gw1 := ag.gateway(t, "gw1", nil, nil)
	before := ag.serverSerial(t, gw1)

	var mu sync.Mutex
	handshakes := map[string]int{} // server certificate serial -> handshakes
	record := func(cs tls.ConnectionState) error {
		mu.Lock()
		handshakes[cs.PeerCertificates[0].SerialNumber.String()]++
		mu.Unlock()
		return nil
	}
	ld := startLoad(ag.client(gw1, false, record), "http://"+up.Addr+"/x", 4)
	time.Sleep(500 * time.Millisecond)
	_, _, next := issueServerCert(t, ag.dir, "agent")
	deadline := time.Now().Add(10 * time.Second)
	for ag.serverSerial(t, gw1) != next.String() {
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was not picked up:\n%s", ag.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	ok, failed := ld.finish()
	mu.Lock()
	oldN, newN := handshakes[before], handshakes[next.String()]
	mu.Unlock()
	t.Logf("rotation under load: %d ok, %d failed; handshakes with the old certificate %d, with the new %d", ok, failed, oldN, newN)
	if failed != 0 || ok < 20 {
		t.Fatalf("%d of %d requests failed during the rotation (first: %s)", failed, ok+failed, ld.firstErr)
	}
	if oldN == 0 || newN == 0 {
		t.Fatalf("handshakes: old %d, new %d: the load did not span the rotation", oldN, newN)
	}
	// every new connection now sees the new certificate
	mu.Lock()
	clear(handshakes)
	mu.Unlock()
	c := ag.client(gw1, false, record)
	for range 20 {
		resp, err := c.Get("http://" + up.Addr + "/after")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the rotation: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	if handshakes[next.String()] != 20 || len(handshakes) != 1 {
		t.Fatalf("after the rotation, 20 new connections saw %v, want only %s", handshakes, next)
	}
	ag.WaitLog(func(l map[string]any) bool { return l["msg"] == "server certificate rotated" })
}

// TestWaysReloadReverseListeners: one SIGHUP adds a reverse listener,
// removes one and changes a third's url while a fourth carries load (with
// and without keep-alive): no request on the fourth fails, it keeps its
// address, and the changes are live.
func TestWaysReloadReverseListeners(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		if bearer(r) == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		echo(w, r)
	})
	u := "https://" + up.Addr
	head := twoCredentials(idp.TokenURL())
	a := startAuthgress(t, head+reverseConn("busy", u+"/b", "reader")+reverseConn("gone", u+"/g", "reader")+reverseConn("changed", u+"/m1", "writer"))
	busy, gone, changed := a.reverseAddr("busy"), a.reverseAddr("gone"), a.reverseAddr("changed")
	if resp, body := getDirect(t, "http://"+changed+"/x"); resp.StatusCode != 200 || body != "GET /m1/x 0" {
		t.Fatalf("before: %d %q", resp.StatusCode, body)
	}

	kept := startLoad(&http.Client{Timeout: 30 * time.Second}, "http://"+busy+"/x", 2)
	fresh := startLoad(&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, "http://"+busy+"/x", 2)
	time.Sleep(500 * time.Millisecond)
	if msg := a.Reload(head + reverseConn("busy", u+"/b", "reader") + reverseConn("changed", u+"/m2", "writer") + reverseConn("added", u+"/a", "reader")); msg != "config reloaded" {
		t.Fatalf("reload: %s\n%s", msg, a.out.String())
	}
	added := a.reverseAddr("added")
	time.Sleep(500 * time.Millisecond)
	ok1, failed1 := kept.finish()
	ok2, failed2 := fresh.finish()
	t.Logf("load on the listener that stayed: keep-alive %d ok %d failed, new connections %d ok %d failed", ok1, failed1, ok2, failed2)
	if failed1+failed2 != 0 || ok1 < 20 || ok2 < 20 {
		t.Fatalf("failed: %d (%s) and %d (%s)", failed1, kept.firstErr, failed2, fresh.firstErr)
	}
	if a.reverseAddr("busy") != busy {
		t.Fatalf("the listener that stayed was restarted on %s (was %s)", a.reverseAddr("busy"), busy)
	}
	if c, err := net.DialTimeout("tcp", gone, 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("the removed listener %s still accepts connections", gone)
	} else if !strings.Contains(err.Error(), "refused") {
		t.Fatalf("the removed listener: %v", err)
	}
	if resp, body := getDirect(t, "http://"+changed+"/x"); resp.StatusCode != 200 || body != "GET /m2/x 0" {
		t.Fatalf("changed url: %d %q", resp.StatusCode, body)
	}
	if a.reverseAddr("changed") != changed {
		t.Fatalf("a url change moved the listener")
	}
	if resp, body := getDirect(t, "http://"+added+"/x"); resp.StatusCode != 200 || body != "GET /a/x 0" {
		t.Fatalf("added listener: %d %q", resp.StatusCode, body)
	}
	a.WaitLog(func(l map[string]any) bool {
		return l["msg"] == "listener closing" && strings.HasPrefix(fmt.Sprint(l["listener"]), "connections.gone.listen")
	})
}

func getDirect(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestWaysHostMapping: hosts = ["myapi.internal"] with url on another host
// and base path. A forward request for http://myapi.internal/x reaches
// https://localhost:PORT/orders/x (its certificate verified for
// localhost) with a live token; the upstream's Host is url's authority.
func TestWaysHostMapping(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	live := introspecting(idp)
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Host", r.Host)
		live(w, r)
	})
	_, port, _ := net.SplitHostPort(up.Addr)
	target := "localhost:" + port
	a := startAuthgress(t, strings.Replace(config(idp.TokenURL(), "myapi.internal", ""), "credential = \"app\"",
		"url = \"https://"+target+"/orders\"\ncredential = \"app\"", 1))
	resp, body := a.Get("http://myapi.internal/x?y=1")
	if resp.StatusCode != 200 || body != "GET /orders/x?y=1 0" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Seen-Host") != target || resp.Header.Get("X-Seen-TLS") != "true" || resp.Header.Get("X-Token-Scope") != "api:read" {
		t.Fatalf("upstream saw Host %q TLS %s scope %q", resp.Header.Get("X-Seen-Host"), resp.Header.Get("X-Seen-TLS"), resp.Header.Get("X-Token-Scope"))
	}
	l := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["connection"] == "api" })
	if !strings.HasPrefix(fmt.Sprint(l["host"]), "myapi.internal") || l["status"] != float64(200) {
		t.Fatalf("access line: %v", l)
	}
}

// perWorkload is two connections on one host with disjoint clients:
// who1's requests get credential reader, who2's credential writer.
func perWorkload(host, who1, who2 string) string {
	return fmt.Sprintf(`
[connections.first]
hosts = [%[1]q]
clients = [%[2]q]
credential = "reader"
profile = "upstream"

[connections.second]
hosts = [%[1]q]
clients = [%[3]q]
credential = "writer"
profile = "upstream"
`, host, who1, who2)
}

// checkPerWorkload: each sender's 100 requests carried one token, its own
// connection's.
func checkPerWorkload(t *testing.T, tl *tally, failed int64, who1, who2 string) {
	t.Helper()
	tok1, grant1, n1 := tl.only(t, who1)
	tok2, grant2, n2 := tl.only(t, who2)
	t.Logf("200 interleaved requests: %d failed; %s: %d with one token (%s); %s: %d with one token (%s)", failed, who1, n1, grant1, who2, n2, grant2)
	if failed != 0 || n1 != 100 || n2 != 100 {
		t.Fatalf("%d failed; %s %d, %s %d requests (want 0, 100, 100)", failed, who1, n1, who2, n2)
	}
	if tok1 == tok2 || grant1 != "proxy-client api:read" || grant2 != "proxy-client-post api:write" {
		t.Fatalf("%s got %q, %s got %q (same token: %v)", who1, grant1, who2, grant2, tok1 == tok2)
	}
}

// TestWaysProxyUsersSelectCredential: two proxy users, two connections on
// one host with disjoint clients. 100 interleaved requests each: every
// request carries its own user's token. A third user no connection admits
// gets 403 egress_denied.
func TestWaysProxyUsersSelectCredential(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	tl := tallying(up, idp)
	pw := map[string]string{}
	var env []string
	for _, u := range []string{"app1", "app2", "app3"} {
		pw[u] = "pw-" + randomHex(8)
		extraCanaries.Store(u+"'s proxy password", pw[u])
		env = append(env, "WAYS_"+strings.ToUpper(u)+"_PASSWORD="+pw[u])
	}
	a := startAuthgress(t, `
[server.auth]
users = [
  { name = "app1", password = { env = "WAYS_APP1_PASSWORD" } },
  { name = "app2", password = { env = "WAYS_APP2_PASSWORD" } },
  { name = "app3", password = { env = "WAYS_APP3_PASSWORD" } },
]
`+twoCredentials(idp.TokenURL())+perWorkload(up.Addr, "app1", "app2"), env...)
	client := a.Client()
	as := func(user, path string) *http.Request {
		req, _ := http.NewRequest("GET", "http://"+up.Addr+path, nil)
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pw[user])))
		req.Header.Set("X-Who", user)
		return req
	}
	failed := interleave(t, 100, []string{"app1", "app2"}, func(user string, i int) (*http.Response, error) {
		return client.Do(as(user, fmt.Sprintf("/items/%d", i)))
	})
	checkPerWorkload(t, tl, failed, "app1", "app2")

	resp, body := a.Do(as("app3", "/items/x"))
	if e := decodeError(t, resp, body); resp.StatusCode != 403 || e.Error != "egress_denied" || !strings.Contains(e.Message, `client "app3" is not admitted`) {
		t.Fatalf("app3: %d %+v", resp.StatusCode, e)
	}
	l := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["client"] == "app3" })
	if l["status"] != float64(403) || l["error"] != "egress_denied" {
		t.Fatalf("app3's access line: %v", l)
	}
}

// TestWaysCertificatesSelectCredential: the same with client certificates
// on the agent listener: clients = ["CN=gw1"] and ["CN=gw2"]; gw3, trusted
// but not listed, gets 403 egress_denied.
func TestWaysCertificatesSelectCredential(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	tl := tallying(up, idp)
	ag := startAgent(t, twoCredentials(idp.TokenURL())+perWorkload(up.Addr, "CN=gw1", "CN=gw2"))
	clients := map[string]*http.Client{}
	for _, cn := range []string{"gw1", "gw2", "gw3"} {
		_, _, cert := ag.gateway(t, cn, nil, nil)
		clients[cn] = ag.client(cert, true, nil)
	}
	failed := interleave(t, 100, []string{"gw1", "gw2"}, func(cn string, i int) (*http.Response, error) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/items/%d", up.Addr, i), nil)
		req.Header.Set("X-Who", cn)
		return clients[cn].Do(req)
	})
	checkPerWorkload(t, tl, failed, "gw1", "gw2")

	resp, err := clients["gw3"].Get("http://" + up.Addr + "/items/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if e := decodeError(t, resp, string(body)); resp.StatusCode != 403 || e.Error != "egress_denied" || !strings.Contains(e.Message, `client "CN=gw3,O=authgress-it" is not admitted`) {
		t.Fatalf("gw3: %d %+v", resp.StatusCode, e)
	}
	if slices.ContainsFunc(ag.logLines(), func(l map[string]any) bool {
		return l["msg"] == "request" && l["client"] == "CN=gw3,O=authgress-it" && l["status"] != float64(403)
	}) {
		t.Fatal("gw3 was let through")
	}
}
