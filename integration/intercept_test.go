package integration

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ensureUndici returns the directory of the undici package that
// docs/clients.md's recipes are tested with (installed by npmInstall).
func ensureUndici(t *testing.T) string {
	t.Helper()
	dir, err := npmInstall("undici-"+undiciVersion, "undici@"+undiciVersion)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "node_modules", "undici")
}

// interceptCA writes a new interception CA with `authgress ca init` and
// returns the file names and what the command printed.
func interceptCA(t *testing.T) (certFile, keyFile, out string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	b, err := exec.Command(binary, "ca", "init", "--cert", certFile, "--key", keyFile).CombinedOutput()
	if err != nil {
		t.Fatalf("authgress ca init: %v\n%s", err, b)
	}
	return certFile, keyFile, string(b)
}

// interceptConfig is config() with the upstream under both its names
// (127.0.0.1:PORT and localhost:PORT) and [intercept] with caKey (a path or
// a secret reference, as TOML).
func interceptConfig(tokenURL string, up *Upstream, caCert, caKey, extra string) string {
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	c := strings.Replace(config(tokenURL, up.Addr, ""), fmt.Sprintf("hosts = [%q]", up.Addr),
		fmt.Sprintf("hosts = [%q, %q]", up.Addr, "localhost:"+port), 1)
	return c + fmt.Sprintf("\n[intercept]\nca_cert = %q\nca_key = %s\n%s", caCert, caKey, extra)
}

// runClient runs a client program and returns its stdout.
func runClient(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return string(out)
}

// injectionProof answers with the path, the SHA-256 of the Authorization
// header the upstream received (so the client learns that a token came,
// never the token) and what the IdP says about the token.
func injectionProof(idp *IdP) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		active, client, _ := idp.Introspect(bearer(r))
		sum := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		fmt.Fprintf(w, "path=%s seen=%x idp_active=%t idp_client=%s", r.URL.Path, sum, active, client)
	}
}

// connectLines counts the access lines of CONNECTs authgress logged.
func connectLines(a *Authgress) int {
	n := 0
	for _, l := range a.logLines() {
		if l["msg"] == "request" && l["method"] == "CONNECT" {
			n++
		}
	}
	return n
}

// Node client: one undici dispatcher for all URLs, ProxyAgent (proxy given)
// or EnvHttpProxyAgent (proxy from HTTPS_PROXY), both in their default
// tunnel mode; the CA comes from NODE_EXTRA_CA_CERTS.
const undiciClient = `const { ProxyAgent, EnvHttpProxyAgent, request } = require(process.env.UNDICI);
(async () => {
  const [mode, ...urls] = process.argv.slice(2);
  const dispatcher = mode === 'env' ? new EnvHttpProxyAgent() : new ProxyAgent(process.env.PROXY);
  for (const u of urls) {
    const r = await request(u, { dispatcher });
    console.log((await r.body.text()) + ' status=' + r.statusCode);
  }
  await dispatcher.close();
})().catch((e) => { console.error(e); process.exit(1); });
`

// Java client: HttpsURLConnection with the proxy and trust store from
// system properties.
const javaClient = `import java.net.URL;
import java.nio.charset.StandardCharsets;
import javax.net.ssl.HttpsURLConnection;

public class Client {
    public static void main(String[] args) throws Exception {
        for (String u : args) {
            HttpsURLConnection c = (HttpsURLConnection) new URL(u).openConnection();
            int status = c.getResponseCode();
            String body = new String(c.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            System.out.println(body + " status=" + status);
        }
    }
}
`

const pythonClient = `import sys, requests
for u in sys.argv[1:]:
    r = requests.get(u, timeout=30)
    print(r.text + " status=" + str(r.status_code))
`

// TestInterceptRealClients: real clients call https:// URLs through
// HTTPS_PROXY, each trusting the interception CA its own way; the upstream
// receives the IdP's token, which the client never had nor sees.
func TestInterceptRealClients(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(injectionProof(idp))
	caCert, caKey, _ := interceptCA(t)
	a := startAuthgress(t, interceptConfig(idp.TokenURL(), up, caCert, strconv.Quote(caKey), ""))
	proxyURL := "http://" + a.Addr
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	// Both names the upstream certificate and the connection carry: the
	// leaf gets a DNS SAN for one and an IP SAN for the other.
	urls := []string{"https://localhost:" + port + "/v1/by-name", "https://127.0.0.1:" + port + "/v1/by-ip"}
	dir := t.TempDir()

	clients := []struct {
		name string
		run  func(t *testing.T) string
	}{
		{"curl", func(t *testing.T) string {
			t.Log(strings.SplitN(runClient(t, exec.Command("curl", "--version")), "\n", 2)[0])
			args := append([]string{"-sS", "--proxy", proxyURL, "--cacert", caCert, "-w", ` status=%{http_code}\n`}, urls...)
			cmd := exec.Command("curl", args...)
			cmd.Env = clientEnv()
			return runClient(t, cmd)
		}},
		{"python-requests", func(t *testing.T) string {
			// Debian's python3 with python3-requests: a python3 earlier on
			// PATH (pyenv) may lack requests.
			v := exec.Command("/usr/bin/python3", "-c", "import sys, requests; print(sys.version.split()[0], requests.__version__)")
			t.Log("python, requests: " + strings.TrimSpace(runClient(t, v)))
			cmd := exec.Command("/usr/bin/python3", append([]string{"-c", pythonClient}, urls...)...)
			cmd.Env = clientEnv("HTTPS_PROXY="+proxyURL, "REQUESTS_CA_BUNDLE="+caCert)
			return runClient(t, cmd)
		}},
		{"node-undici-ProxyAgent", func(t *testing.T) string {
			return runUndici(t, dir, "proxy", urls, "PROXY="+proxyURL, "NODE_EXTRA_CA_CERTS="+caCert)
		}},
		{"node-undici-EnvHttpProxyAgent", func(t *testing.T) string {
			return runUndici(t, dir, "env", urls, "HTTPS_PROXY="+proxyURL, "NODE_EXTRA_CA_CERTS="+caCert)
		}},
		{"go", func(t *testing.T) string {
			t.Log("go " + runtime.Version())
			pem, _ := os.ReadFile(caCert)
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
			pu, _ := url.Parse(proxyURL)
			// http.ProxyFromEnvironment never proxies loopback destinations,
			// so the proxy is given with http.ProxyURL.
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}
			var out strings.Builder
			for _, u := range urls {
				resp, err := c.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				fmt.Fprintf(&out, "%s status=%d\n", b, resp.StatusCode)
			}
			return out.String()
		}},
		{"java", func(t *testing.T) string {
			v, _ := exec.Command("java", "-version").CombinedOutput()
			t.Log(strings.SplitN(string(v), "\n", 2)[0])
			store := filepath.Join(dir, "trust.p12")
			_ = os.Remove(store)
			runClient(t, exec.Command("keytool", "-importcert", "-noprompt", "-alias", "authgress", "-file", caCert,
				"-keystore", store, "-storetype", "PKCS12", "-storepass", "changeit"))
			src := filepath.Join(dir, "Client.java")
			_ = os.WriteFile(src, []byte(javaClient), 0o644)
			// http.nonProxyHosts is emptied: by default Java never proxies
			// localhost and 127.*.
			args := append([]string{"-Dhttps.proxyHost=127.0.0.1", "-Dhttps.proxyPort=" + a.Addr[strings.LastIndex(a.Addr, ":")+1:],
				"-Dhttp.nonProxyHosts=", "-Djavax.net.ssl.trustStore=" + store, "-Djavax.net.ssl.trustStorePassword=changeit",
				"-Djavax.net.ssl.trustStoreType=PKCS12", src}, urls...)
			cmd := exec.Command("java", args...)
			cmd.Env = clientEnv()
			return runClient(t, cmd)
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			before, seen := connectLines(a), up.count.Load()
			out := c.run(t)
			auths := up.Auths()
			if up.count.Load() != seen+int64(len(urls)) || len(auths) == 0 {
				t.Fatalf("the upstream saw %d requests, want %d:\n%s", up.count.Load()-seen, len(urls), out)
			}
			auth := auths[len(auths)-1]
			token, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || len(token) < 16 {
				t.Fatalf("the upstream saw Authorization %q", auth)
			}
			if strings.Contains(out, token) {
				t.Fatal("the client saw the token")
			}
			sum := sha256.Sum256([]byte(auth))
			var want strings.Builder
			for _, u := range urls {
				p, _ := url.Parse(u)
				fmt.Fprintf(&want, "path=%s seen=%x idp_active=true idp_client=proxy-client status=200\n", p.Path, sum)
			}
			if out != want.String() {
				t.Fatalf("client output:\n%s\nwant (the IdP's token, injected by authgress):\n%s", out, want.String())
			}
			deadline := time.Now().Add(5 * time.Second) // the log is flushed every 100ms
			for connectLines(a) < before+len(urls) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := connectLines(a) - before; n < len(urls) {
				t.Fatalf("%d CONNECT access lines for %d hosts: the client did not go through the proxy's tunnel", n, len(urls))
			}
		})
	}
	for _, l := range a.logLines() {
		if l["method"] == "CONNECT" && (l["status"] != float64(200) || l["reason"] != "matched: tunnel intercepted" || l["tunnel"] != nil) {
			t.Errorf("CONNECT access line: %v", l)
		}
	}
}

// runUndici runs the Node client with the pinned undici.
func runUndici(t *testing.T, dir, mode string, urls []string, env ...string) string {
	t.Helper()
	pkg := ensureUndici(t)
	var meta struct{ Version string }
	b, _ := os.ReadFile(filepath.Join(pkg, "package.json"))
	_ = json.Unmarshal(b, &meta)
	nv, _ := exec.Command("node", "--version").Output()
	t.Logf("node %s, undici %s", strings.TrimSpace(string(nv)), meta.Version)
	script := filepath.Join(dir, "undici-client.cjs")
	_ = os.WriteFile(script, []byte(undiciClient), 0o644)
	cmd := exec.Command("node", append([]string{script, mode}, urls...)...)
	cmd.Env = clientEnv(append(env, "UNDICI="+pkg)...)
	return runClient(t, cmd)
}

// startCountingUpstream is startUpstream whose server also counts the TCP
// connections it accepts.
func startCountingUpstream(t *testing.T) (*Upstream, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := &atomic.Int64{}
	u := &Upstream{Addr: ln.Addr().String()}
	u.handler.Store(http.HandlerFunc(echo))
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serve), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{getPKI(t).server}, MinVersion: tls.VersionTLS12})
	go func() { _ = u.srv.Serve(tln) }()
	t.Cleanup(func() { _ = u.srv.Close() })
	return u, conns
}

// TestInterceptOneTunnelForAHundredRequests: curl sends 100 requests in one
// invocation: one CONNECT, one client TLS handshake, one upstream
// connection, and the token on every request.
func TestInterceptOneTunnelForAHundredRequests(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up, upConns := startCountingUpstream(t)
	caCert, caKey, _ := interceptCA(t)
	a := startAuthgress(t, interceptConfig(idp.TokenURL(), up, caCert, strconv.Quote(caKey), ""))
	args := []string{"-sS", "-v", "--proxy", "http://" + a.Addr, "--cacert", caCert, "-w", ` status=%{http_code} connects=%{num_connects}\n`}
	for n := range 100 {
		args = append(args, fmt.Sprintf("https://%s/v1/items/%d", up.Addr, n))
	}
	cmd := exec.Command("curl", args...)
	cmd.Env = clientEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	connects := 0
	for n, l := range lines {
		var c int
		if _, err := fmt.Sscanf(l, fmt.Sprintf("GET /v1/items/%d 0 status=200 connects=%%d", n), &c); err != nil {
			t.Fatalf("response %d: %q", n, l)
		}
		connects += c
	}
	handshakes := strings.Count(stderr.String(), "SSL connection using")
	if len(lines) != 100 || connects != 1 || handshakes != 1 {
		t.Fatalf("%d responses; curl made %d connections and %d TLS handshakes (want 100, 1, 1)", len(lines), connects, handshakes)
	}
	var inner int
	deadline := time.Now().Add(5 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		inner = 0
		for _, l := range a.logLines() {
			if l["msg"] == "request" && l["reason"] == "inside an intercepted tunnel" && l["status"] == float64(200) {
				inner++
			}
		}
		if inner == 100 {
			break
		}
	}
	if c := connectLines(a); c != 1 || inner != 100 {
		t.Fatalf("access log: %d CONNECT lines, %d inner request lines (want 1 and 100)", c, inner)
	}
	auths := up.Auths()
	for _, au := range auths {
		if au != auths[0] || !strings.HasPrefix(au, "Bearer ") {
			t.Fatalf("the upstream saw Authorization %q and %q", auths[0], au)
		}
	}
	if len(auths) != 100 || upConns.Load() != 1 {
		t.Fatalf("the upstream saw %d requests on %d connections (want 100 on 1)", len(auths), upConns.Load())
	}
	t.Logf("100 requests: 1 CONNECT, %d client TLS handshake, %d upstream connection", handshakes, upConns.Load())
}

// keyFragments are strings that would betray the CA key in an output: its
// PEM lines, its DER in base64 and the private scalar in hex and base64.
// The leading windows of the DER's base64 are the same for every P-256
// PKCS#8 key, so they (and the SEC 1 prefix) also catch a leaf key.
func keyFragments(t *testing.T, keyPEM []byte) []string {
	t.Helper()
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		t.Fatal("no PEM in the CA key file")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	d, err := k.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	frags := []string{"PRIVATE KEY", "MHcCAQEEI", base64.StdEncoding.EncodeToString(blk.Bytes), base64.RawURLEncoding.EncodeToString(blk.Bytes),
		hex.EncodeToString(d), base64.StdEncoding.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d)}
	for _, l := range strings.Split(string(keyPEM), "\n") {
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
			frags = append(frags, l)
		}
	}
	b64 := base64.StdEncoding.EncodeToString(blk.Bytes)
	for i := 0; i+24 <= len(b64); i += 24 { // the DER's base64 in 24-character pieces
		frags = append(frags, b64[i:i+24])
	}
	return frags
}

// TestInterceptSecurity: pinning, no interception of unmatched tunnels, and
// the CA key (given as a secret reference) in no output.
func TestInterceptSecurity(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	var bodies strings.Builder // every response body a client got
	caCert, caKeyFile, caInitOut := interceptCA(t)
	keyPEM, _ := os.ReadFile(caKeyFile)
	cfg := "[server]\nadmin = \"127.0.0.1:0\"\n" + interceptConfig(idp.TokenURL(), up, caCert, `{ env = "AUTHGRESS_IT_CA_KEY" }`,
		"\n[egress]\nunmatched = \"tunnel\"\nallow_private = true\n")
	a := startAuthgress(t, cfg, "AUTHGRESS_IT_CA_KEY="+string(keyPEM))
	caPEM, _ := os.ReadFile(caCert)
	interceptRoots := x509.NewCertPool()
	interceptRoots.AppendCertsFromPEM(caPEM)
	minted := func() int64 {
		var s struct {
			Intercept struct {
				LeavesMinted int64 `json:"leaves_minted"`
			}
		}
		body := adminGet(t, a.adminAddr(), "/status")
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatal(err)
		}
		return s.Intercept.LeavesMinted
	}

	t.Run("a request naming another host inside the tunnel is refused", func(t *testing.T) {
		c, err := net.Dial("tcp", a.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", up.Addr, up.Addr)
		if resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		tc := tls.Client(c, &tls.Config{RootCAs: interceptRoots, ServerName: "127.0.0.1"})
		br := bufio.NewReader(tc)
		roundTrip := func(target, host string) (*http.Response, string) {
			fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies.Write(b)
			return resp, string(b)
		}
		idp2 := strings.TrimPrefix(idp.URL, "http://") // another real server on this machine
		for _, req := range [][2]string{{"/v1/x", "evil.example"}, {"/v1/x", idp2}, {"https://evil.example/v1/x", up.Addr},
			{"https://" + idp2 + "/v1/x", up.Addr}, {"/v1/x", "127.0.0.1:1"}, {"/v1/x", "localhost" + up.Addr[strings.LastIndex(up.Addr, ":"):]}} {
			resp, body := roundTrip(req[0], req[1])
			if e := decodeError(t, resp, body); resp.StatusCode != http.StatusMisdirectedRequest || e.Error != "misdirected_request" {
				t.Fatalf("GET %s Host %s: %d %s", req[0], req[1], resp.StatusCode, body)
			}
		}
		if n := up.count.Load(); n != 0 {
			t.Fatalf("the upstream saw %d requests", n)
		}
		if resp, body := roundTrip("/v1/own", up.Addr); resp.StatusCode != 200 || up.count.Load() != 1 {
			t.Fatalf("own target: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("an unmatched tunnel shows the server's own certificate", func(t *testing.T) {
		other := startUpstream(t) // another port: no connection matches it
		before := minted()
		pu, _ := url.Parse("http://" + a.Addr)
		get := func(roots *x509.CertPool) (*http.Response, error) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}
			resp, err := c.Get("https://" + other.Addr + "/x")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				bodies.Write(b)
			}
			return resp, err
		}
		if _, err := get(interceptRoots); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("a client trusting only the interception CA reached the unmatched host: %v", err)
		}
		p := getPKI(t)
		testRoots := x509.NewCertPool()
		testRoots.AddCert(p.ca)
		resp, err := get(testRoots)
		if err != nil {
			t.Fatal(err)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if resp.StatusCode != 200 || string(leaf.Raw) != string(p.server.Certificate[0]) || resp.Header.Get("X-Seen-Authorization") != "" {
			t.Fatalf("%d, certificate issued by %q, upstream saw Authorization %q", resp.StatusCode, leaf.Issuer.CommonName, resp.Header.Get("X-Seen-Authorization"))
		}
		if after := minted(); after != before {
			t.Fatalf("leaves minted went from %d to %d for an unmatched host", before, after)
		}
	})

	t.Run("the CA key is in no output", func(t *testing.T) {
		outputs := map[string]string{"authgress ca init": caInitOut, "response bodies": bodies.String(),
			"/status": adminGet(t, a.adminAddr(), "/status"), "/metrics": adminGet(t, a.adminAddr(), "/metrics")}
		check := exec.Command(binary, "check", "--config", filepath.Join(a.Dir, "authgress.toml"))
		check.Env = append(os.Environ(), "AUTHGRESS_IT_CA_KEY="+string(keyPEM))
		b, _ := check.CombinedOutput()
		outputs["authgress check"] = string(b)
		if err := a.Terminate(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		outputs["authgress run"] = a.out.String()
		if !strings.Contains(outputs["authgress run"], "inside an intercepted tunnel") || !strings.Contains(outputs["/status"], "leaves_minted") {
			t.Fatal("the outputs do not cover interception")
		}
		frags, size := keyFragments(t, keyPEM), 0
		for what, s := range outputs {
			size += len(s)
			for _, f := range frags {
				if strings.Contains(s, f) {
					t.Errorf("%s contains %q of the CA key", what, f)
				}
			}
		}
		t.Logf("%d fragments of the CA key looked for in %d outputs (%d bytes)", len(frags), len(outputs), size)
	})
}

// vmRSS is a process's resident set size in KiB (0 if unknown).
func vmRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// TestInterceptLeafCacheStaysBounded: 20,000 distinct matched hosts (a
// wildcard connection; CONNECT does not dial before the TLS handshake, so
// the names need no DNS) mint 20,000 leaves, but the cache keeps at most
// cache_size and memory stays flat.
func TestInterceptLeafCacheStaysBounded(t *testing.T) {
	const hosts, cacheSize, workers = 20000, 1000, 16
	caCert, caKey, _ := interceptCA(t)
	a := startAuthgress(t, fmt.Sprintf("[server]\nadmin = \"127.0.0.1:0\"\n\n[connections.wild]\nhosts = [\"*.test.example\"]\n\n"+
		"[intercept]\nca_cert = %q\nca_key = %q\ncache_size = %d\n", caCert, caKey, cacheSize))
	caPEM, _ := os.ReadFile(caCert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	handshake := func(name string) error {
		c, err := net.DialTimeout("tcp", a.Addr, 5*time.Second)
		if err != nil {
			return err
		}
		_ = c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT: 20,000 connections would crowd the port range
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", name, name)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("CONNECT %s: %v %v", name, resp, err)
		}
		tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: name})
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS %s: %w", name, err)
		}
		if got := tc.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != name {
			return fmt.Errorf("leaf for %s names %v", name, got)
		}
		return nil
	}
	status := func() (cached, minted int64) {
		var s struct {
			Intercept struct {
				Cached int64 `json:"leaves_cached"`
				Minted int64 `json:"leaves_minted"`
			}
		}
		if err := json.Unmarshal([]byte(adminGet(t, a.adminAddr(), "/status")), &s); err != nil {
			t.Fatal(err)
		}
		return s.Intercept.Cached, s.Intercept.Minted
	}
	if err := handshake("h0.test.example"); err != nil { // warm up: one-time setup is not growth
		t.Fatal(err)
	}
	pid := a.cmd.Process.Pid
	rssBefore := vmRSS(pid)
	// RSS when the cache has just filled up and half-way: from the first on,
	// a bounded cache adds nothing.
	const full = 2 * cacheSize
	var rssFull, rssHalf atomic.Int64
	var next, failed atomic.Int64
	next.Store(1)
	start := time.Now()
	deadline := start.Add(8 * time.Minute)
	var wg sync.WaitGroup
	var firstErr sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && failed.Load() == 0 {
				n := next.Add(1) - 1
				switch {
				case n >= hosts:
					return
				case n == full:
					rssFull.Store(vmRSS(pid))
				case n == hosts/2:
					rssHalf.Store(vmRSS(pid))
				}
				if err := handshake(fmt.Sprintf("h%d.test.example", n)); err != nil {
					failed.Add(1)
					firstErr.Do(func() { t.Errorf("host %d: %v", n, err) })
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() != 0 || next.Load() < hosts {
		t.Fatalf("stopped after %d of %d hosts in %s (%d failed)", next.Load(), hosts, elapsed.Round(time.Second), failed.Load())
	}
	cached, minted := status()
	rssAfter := vmRSS(pid)
	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	t.Logf("%d distinct hosts, %d workers, %s (race detector: %v): leaves minted %d, cached %d (cache_size %d); authgress VmRSS: "+
		"%.1f MiB after warm-up, %.1f MiB at %d hosts, %.1f MiB at %d, %.1f MiB at %d; growth %.1f MiB in all, %.1f MiB after the cache filled",
		hosts, workers, elapsed.Round(time.Second), raceEnabled, minted, cached, cacheSize, mib(rssBefore), mib(rssFull.Load()), full,
		mib(rssHalf.Load()), hosts/2, mib(rssAfter), hosts, mib(rssAfter-rssBefore), mib(rssAfter-rssFull.Load()))
	if rssBefore == 0 || rssFull.Load() == 0 || rssHalf.Load() == 0 || rssAfter == 0 {
		t.Fatal("no VmRSS in /proc/<pid>/status")
	}
	if minted != hosts || cached > cacheSize || cached == 0 {
		t.Fatalf("leaves minted %d (want %d), cached %d (want 1..%d)", minted, hosts, cached, cacheSize)
	}
	// Generous bounds. Measured growth: 17 MiB in all and 2 MiB after the
	// cache filled; with the race detector, whose shadow memory multiplies
	// the footprint, 78 and 22 MiB. A leaf kept per host (some 4 KiB) would
	// add ~70 MiB after the cache filled, more with the race detector.
	bound, steady := int64(100*1024), int64(40*1024)
	if raceEnabled {
		bound, steady = 200*1024, 60*1024
	}
	if rssAfter-rssBefore > bound || rssAfter-rssFull.Load() > steady {
		t.Fatalf("authgress's RSS grew by %.1f MiB over %d hosts (bound %.0f MiB), %.1f MiB after the cache filled (bound %.0f MiB)",
			mib(rssAfter-rssBefore), hosts, mib(bound), mib(rssAfter-rssFull.Load()), mib(steady))
	}
}
