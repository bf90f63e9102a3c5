package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The recipes of docs/clients.md, run as written with the real clients
// against the real binary, a real OAuth server and a TLS upstream. Only the
// addresses change: the proxy 127.0.0.1:3128 becomes authgress's, and
// http://billing.example.com the upstream's http://127.0.0.1:PORT.

const undiciVersion = "7.16.0"

// recipe returns the code block that follows <!-- recipe: name --> in docs/clients.md.
func recipe(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/clients.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- recipe: " + regexp.QuoteMeta(name) + " -->\n```[a-z]*\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/clients.md has no recipe %q", name)
	}
	return string(m[1])
}

// clientSetup is authgress in front of a TLS API that answers 200 "hello
// <client id> tls=true" to a live token only, and never shows the token.
type clientSetup struct {
	t    *testing.T
	a    *Authgress
	up   *Upstream
	addr func(string) string
}

func setupForClients(t *testing.T) *clientSetup {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		active, client, _ := idp.Introspect(bearer(r))
		if !active {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s tls=%v path=%s", client, r.TLS != nil, r.URL.Path)
	})
	a := startAuthgress(t, config(idp.TokenURL(), up.Addr, ""))
	_, port, _ := net.SplitHostPort(a.Addr)
	r := strings.NewReplacer("127.0.0.1:3128", a.Addr, "proxyPort=3128", "proxyPort="+port,
		"http://billing.example.com", "http://"+up.Addr)
	return &clientSetup{t: t, a: a, up: up, addr: r.Replace}
}

// env is the environment without proxy variables, plus extra.
func clientEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "JAVA_TOOL_OPTIONS":
			continue // each test says whom its client trusts
		}
		if !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// run runs a client and checks that it got the API's 200 answer, that the
// API saw a bearer token from authgress, and that the client never saw it.
func (s *clientSetup) run(cmd *exec.Cmd) {
	s.t.Helper()
	before := len(s.up.Auths())
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	if !strings.Contains(string(out), "hello proxy-client tls=true path=/invoices") {
		s.t.Fatalf("%v: the API's answer is missing:\n%s", cmd.Args, out)
	}
	auths := s.up.Auths()
	if len(auths) != before+1 {
		s.t.Fatalf("the API saw %d requests, want 1", len(auths)-before)
	}
	tok, ok := strings.CutPrefix(auths[len(auths)-1], "Bearer ")
	if !ok || len(tok) < 20 {
		s.t.Fatalf("the API saw Authorization %q", auths[len(auths)-1])
	}
	if strings.Contains(string(out), tok) {
		s.t.Fatal("the client saw the token")
	}
	assertNoCanary(s.t, "client output", string(out))
	l := s.a.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["path"] == "/invoices" })
	if l["status"] != float64(200) || l["connection"] != "api" {
		s.t.Fatalf("access log: %v", l)
	}
}

func TestClientCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed (apt-get install curl)")
	}
	s := setupForClients(t)
	line := strings.Fields(s.addr(recipe(t, "curl-x")))
	cmd := exec.Command(line[0], line[1:]...)
	cmd.Env = clientEnv()
	s.run(cmd)

	cmd = exec.Command("sh", "-ec", s.addr(recipe(t, "curl-env")))
	cmd.Env = clientEnv()
	s.run(cmd)
}

// debianPython is Debian's python3 with python3-requests (a python3 earlier
// on PATH may be another installation without requests).
func debianPython(t *testing.T) string {
	t.Helper()
	if exec.Command("/usr/bin/python3", "-c", "import requests").Run() != nil {
		t.Fatal("/usr/bin/python3 with requests is needed (apt-get install python3-requests)")
	}
	return "/usr/bin/python3"
}

func TestClientPythonRequests(t *testing.T) {
	py := debianPython(t)
	s := setupForClients(t)
	dir := t.TempDir()
	for _, name := range []string{"python-proxies", "python-env"} {
		app := filepath.Join(dir, name+".py")
		_ = os.WriteFile(app, []byte(s.addr(recipe(t, name))), 0o644)
		cmd := exec.Command(py, app)
		cmd.Env = clientEnv()
		if name == "python-env" {
			cmd.Env = clientEnv("http_proxy=http://" + s.a.Addr)
		}
		s.run(cmd)
	}
}

func TestClientGo(t *testing.T) {
	s := setupForClients(t)
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "main.go"), []byte(s.addr(recipe(t, "go"))), 0o644)
	cmd := exec.Command("go", "run", "main.go")
	cmd.Dir, cmd.Env = dir, clientEnv("GO111MODULE=on", "GOFLAGS=")
	s.run(cmd)

	// What the docs warn about: ProxyFromEnvironment never proxies loopback
	// targets, so the same request with HTTP_PROXY set goes direct.
	src := strings.Replace(s.addr(recipe(t, "go")), "&http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}",
		"&http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}; _ = proxy", 1)
	_ = os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	cmd = exec.Command("go", "run", "main.go")
	cmd.Dir, cmd.Env = dir, clientEnv("GO111MODULE=on", "GOFLAGS=", "HTTP_PROXY=http://"+s.a.Addr)
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), "hello") || !strings.Contains(string(out), "400") {
		t.Fatalf("ProxyFromEnvironment with a loopback target: want a direct request (400 from the TLS port):\n%s", out)
	}
}

func TestClientJava(t *testing.T) {
	if _, err := exec.LookPath("java"); err != nil {
		t.Fatal("java is needed (apt-get install default-jdk-headless)")
	}
	s := setupForClients(t)
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "Client.java"), []byte(s.addr(recipe(t, "java-source"))), 0o644)
	line := strings.Fields(s.addr(recipe(t, "java-run")))
	cmd := exec.Command(line[0], line[1:]...)
	cmd.Dir, cmd.Env = dir, clientEnv()
	s.run(cmd)

	// What the docs warn about: the default http.nonProxyHosts sends a
	// loopback target direct, past authgress (here: plain http to the TLS port).
	line = strings.Fields(s.addr(recipe(t, "java-run-default")))
	cmd = exec.Command(line[0], line[1:]...)
	cmd.Dir, cmd.Env = dir, clientEnv()
	before := len(s.up.Auths())
	if out, err := cmd.CombinedOutput(); strings.Contains(string(out), "hello") || len(s.up.Auths()) != before {
		t.Fatalf("without -Dhttp.nonProxyHosts= the loopback API was reached through authgress: %v\n%s", err, out)
	}
}

func TestClientNodeUndici(t *testing.T) {
	dir, err := npmInstall("undici-"+undiciVersion, "undici@"+undiciVersion)
	if err != nil {
		t.Fatal(err)
	}
	s := setupForClients(t)
	for _, name := range []string{"node-proxyagent", "node-env"} {
		script := filepath.Join(dir, name+".mjs") // beside node_modules/undici
		_ = os.WriteFile(script, []byte(s.addr(recipe(t, name))), 0o644)
		cmd := exec.Command("node", script)
		cmd.Env = clientEnv()
		if name == "node-env" {
			cmd.Env = clientEnv("http_proxy=http://" + s.a.Addr)
		}
		s.run(cmd)
	}
	// What the docs warn about: by default ProxyAgent tunnels http:// URLs
	// with CONNECT, which authgress refuses for a matched host.
	script := filepath.Join(dir, "node-tunnel.mjs")
	_ = os.WriteFile(script, []byte(strings.Replace(s.addr(recipe(t, "node-proxyagent")), ", proxyTunnel: false", "", 1)), 0o644)
	out, err := exec.Command("node", script).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Proxy response (403)") {
		t.Fatalf("ProxyAgent without proxyTunnel: false: %v\n%s", err, out)
	}
}
