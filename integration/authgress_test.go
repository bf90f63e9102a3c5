package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// Authgress is a running authgress binary.
type Authgress struct {
	t       *testing.T
	Addr    string
	Dir     string
	cmd     *exec.Cmd
	out     *testlog.Buffer
	exited  chan struct{} // closed when the process has exited
	exitErr error
	killed  bool // Kill ended it on purpose: no exit status to check
	env     []string
	config  string // the config file's path
}

// secretsFile is the file vault every test uses: "app" holds the real
// client; "wrong" a wrong secret for the same client.
const secretsFile = `
[app]
client_id = "proxy-client"
client_secret = "%[1]s"

[app_post]
client_id = "proxy-client-post"
client_secret = "%[1]s"

[user_app]
client_id = "user-app"
client_secret = "%[1]s"

[wrong]
client_id = "proxy-client"
client_secret = "not-the-secret"
`

// startAuthgress writes config (with a JSON log and a free listener) and
// runs the binary until the test ends. {{SECRETS}} and {{CA}} are replaced.
func startAuthgress(t *testing.T, config string, env ...string) *Authgress {
	t.Helper()
	a := &Authgress{t: t, Dir: t.TempDir(), out: &testlog.Buffer{}, env: env}
	a.config = a.writeConfig(config)
	a.launch()
	t.Cleanup(a.stop)
	return a
}

// launch starts the process and waits for a new "listening" line.
func (a *Authgress) launch() {
	a.t.Helper()
	before := a.countLines("listening")
	a.exited, a.exitErr, a.killed = make(chan struct{}), nil, false
	cmd := exec.Command(binary, "run", "--config", a.config)
	cmd.Env = append(os.Environ(), a.env...)
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.cmd = cmd
	exited := a.exited
	go func() { a.exitErr = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for a.countLines("listening") == before {
		if time.Now().After(deadline) {
			a.t.Fatalf("authgress did not start:\n%s", a.out.String())
		}
		select {
		case <-exited:
			a.t.Fatalf("authgress exited (%v):\n%s", a.exitErr, a.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, line := range a.logLines() {
		if line["msg"] == "listening" {
			a.Addr, _ = line["addr"].(string)
		}
	}
}

func (a *Authgress) countLines(msg string) int {
	n := 0
	for _, l := range a.logLines() {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// Kill sends SIGKILL (the process just disappears: no shutdown, no last
// log lines) and waits until it is gone.
func (a *Authgress) Kill() {
	a.t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		a.t.Fatal("authgress survived SIGKILL for 10s")
	}
	a.killed = true
}

// Restart starts the process again with the same config file (so on the
// same port if the config names one) after Kill or Terminate, and waits
// until it listens.
func (a *Authgress) Restart() {
	a.t.Helper()
	select {
	case <-a.exited:
	default:
		a.t.Fatal("Restart: authgress is still running")
	}
	a.launch()
}

func (a *Authgress) writeConfig(config string) string {
	a.t.Helper()
	secrets := filepath.Join(a.Dir, "secrets.toml")
	if err := os.WriteFile(secrets, []byte(fmt.Sprintf(secretsFile, canarySecret)), 0o600); err != nil {
		a.t.Fatal(err)
	}
	server := "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n"
	if strings.Contains(config, "[server]\nlisten = ") { // a fixed port, e.g. to restart on it
		server = "[server]\nshutdown_timeout = \"5s\"\n"
	}
	if strings.Contains(config, "[server]\n") { // the test sets server keys of its own
		config, server = strings.Replace(config, "[server]\n", server, 1), ""
	}
	text := server + "\n[log]\nformat = \"json\"\nlevel = \"debug\"\n\n" +
		strings.NewReplacer("{{SECRETS}}", secrets, "{{CA}}", getPKI(a.t).caFile).Replace(config)
	path := filepath.Join(a.Dir, "authgress.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return path
}

// logLines parses the JSON log lines written so far.
func (a *Authgress) logLines() []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(a.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// WaitLog waits (up to 5s: log output is flushed every 100ms) for a log
// line that match accepts, and returns it.
func (a *Authgress) WaitLog(match func(map[string]any) bool) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range a.logLines() {
			if match(l) {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("no such log line in:\n%s", a.out.String())
	return nil
}

// stop sends SIGTERM, expects exit 0, and checks that no canary (the client
// secret, any token an upstream saw) appears in anything authgress wrote.
func (a *Authgress) stop() {
	if err := a.Terminate(15 * time.Second); err != nil {
		a.t.Errorf("%v:\n%s", err, a.out.String())
	}
	assertNoCanary(a.t, "authgress output", a.out.String())
}

// Terminate sends SIGTERM (unless the process already exited) and waits up
// to timeout for it to exit with status 0.
func (a *Authgress) Terminate(timeout time.Duration) error {
	select {
	case <-a.exited:
	default:
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-a.exited:
		if a.exitErr != nil && !a.killed {
			return fmt.Errorf("authgress exited with %v after SIGTERM", a.exitErr)
		}
		return nil
	case <-time.After(timeout):
		_ = a.cmd.Process.Kill()
		return fmt.Errorf("authgress did not exit within %s of SIGTERM", timeout)
	}
}

// Reload writes a new config and sends SIGHUP; it waits for the log line
// that says how the reload went and returns its message.
func (a *Authgress) Reload(config string) string {
	a.t.Helper()
	before := len(a.reloadLines())
	a.writeConfig(config)
	_ = a.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if lines := a.reloadLines(); len(lines) > before {
			return lines[len(lines)-1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("no reload outcome in the log:\n%s", a.out.String())
	return ""
}

func (a *Authgress) reloadLines() []string {
	var out []string
	for _, l := range a.logLines() {
		if msg, _ := l["msg"].(string); msg == "config reloaded" || strings.HasPrefix(msg, "reload rejected") {
			out = append(out, msg)
		}
	}
	return out
}

// extraCanaries are other secrets a test planted (vault tokens, AppRole
// secret IDs, passwords): name -> value.
var extraCanaries sync.Map

// assertNoCanary fails if s contains the client secret, a token or another
// planted secret.
func assertNoCanary(t *testing.T, what, s string) {
	t.Helper()
	assertNoSecret(t, what, s)
	seenTokens.Range(func(k, _ any) bool {
		if tok := k.(string); len(tok) > 8 && strings.Contains(s, tok) {
			t.Errorf("%s contains a token", what)
			return false
		}
		return true
	})
}

// assertNoSecret is assertNoCanary without the tokens upstreams saw: for
// the broker's answers, which hand out access tokens.
func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, canarySecret) {
		t.Errorf("%s contains the client secret", what)
	}
	extraCanaries.Range(func(k, v any) bool {
		if strings.Contains(s, v.(string)) {
			t.Errorf("%s contains %s", what, k)
		}
		return true
	})
}

// Client returns an HTTP client that uses authgress as its proxy. (Go's
// ProxyFromEnvironment skips loopback targets, so the proxy is set here.)
func (a *Authgress) Client() *http.Client {
	pu, _ := url.Parse("http://" + a.Addr)
	return &http.Client{
		Transport:     &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 64, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// Get sends GET url through the proxy and returns the response and body.
func (a *Authgress) Get(u string) (*http.Response, string) {
	a.t.Helper()
	return a.Do(mustRequest(a.t, "GET", u, nil))
}

func (a *Authgress) Do(req *http.Request) (*http.Response, string) {
	a.t.Helper()
	resp, err := a.Client().Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assertNoCanary(a.t, "response body", string(b))
	return resp, string(b)
}

func mustRequest(t *testing.T, method, u string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// errorBody decodes an authgress error response.
type errorBody struct {
	Error      string `json:"error"`
	Connection string `json:"connection"`
	Message    string `json:"message"`
}

func decodeError(t *testing.T, resp *http.Response, body string) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("status %d: not a JSON error body: %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Authgress-Error"); got != e.Error {
		t.Fatalf("X-Authgress-Error %q, body error %q", got, e.Error)
	}
	return e
}
