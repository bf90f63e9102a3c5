package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// canarySecret is the client secret of every OAuth client in these tests.
// It must never appear in anything authgress writes.
var canarySecret = "canary-" + randomHex(12)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// IdP is a real oidc-provider process. Clients: proxy-client
// (client_secret_basic) and proxy-client-post (client_secret_post), both
// with canarySecret; scopes api:read and api:write.
type IdP struct {
	t      *testing.T
	Port   int
	URL    string
	ttl    int
	format string
	cmd    *exec.Cmd
	log    *syncBuffer
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startIdP starts oidc-provider issuing tokens of ttl seconds in format
// "opaque" or "jwt".
func startIdP(t *testing.T, ttl int, format string) *IdP {
	t.Helper()
	i := &IdP{t: t, Port: freePort(t), ttl: ttl, format: format, log: &syncBuffer{}}
	i.URL = fmt.Sprintf("http://127.0.0.1:%d", i.Port)
	i.Start()
	t.Cleanup(i.Stop)
	return i
}

// Start (re)starts the process on the same port.
func (i *IdP) Start() {
	i.t.Helper()
	cmd := exec.Command("node", idpScript)
	cmd.Dir = idpDir
	cmd.Env = append(cmd.Environ(), fmt.Sprintf("PORT=%d", i.Port), fmt.Sprintf("TOKEN_TTL=%d", i.ttl),
		"TOKEN_FORMAT="+i.format, "CLIENT_SECRET="+canarySecret, "CLIENT_ID=proxy-client")
	cmd.Stdout, cmd.Stderr = i.log, i.log
	if err := cmd.Start(); err != nil {
		i.t.Fatalf("starting oidc-provider: %v", err)
	}
	i.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(i.URL + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	i.t.Fatalf("oidc-provider did not start:\n%s", i.log.String())
}

// Stop kills the process (SIGKILL: the token endpoint just disappears).
func (i *IdP) Stop() {
	if i.cmd == nil || i.cmd.Process == nil {
		return
	}
	_ = i.cmd.Process.Signal(syscall.SIGKILL)
	_ = i.cmd.Wait()
	i.cmd = nil
}

func (i *IdP) TokenURL() string { return i.URL + "/token" }

// Introspect asks the IdP whether a token is active (RFC 7662).
func (i *IdP) Introspect(token string) (active bool, clientID, scope string) {
	i.t.Helper()
	req, _ := http.NewRequest("POST", i.URL+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.SetBasicAuth("proxy-client", canarySecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		i.t.Errorf("introspection: %v", err)
		return false, "", ""
	}
	defer resp.Body.Close()
	var r struct {
		Active   bool   `json:"active"`
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r.Active, r.ClientID, r.Scope
}

// Revoke revokes a token (RFC 7009).
func (i *IdP) Revoke(token string) {
	i.t.Helper()
	req, _ := http.NewRequest("POST", i.URL+"/token/revocation", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.SetBasicAuth("proxy-client", canarySecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		i.t.Fatalf("revocation: %v %v", err, resp)
	}
	resp.Body.Close()
}

// counter is a transparent reverse proxy in front of the IdP's token
// endpoint that counts token requests.
type counter struct {
	*httptest.Server
	n atomic.Int64
}

func countTokenRequests(t *testing.T, i *IdP) *counter {
	target, _ := url.Parse(i.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	c := &counter{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			c.n.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counter) TokenURL() string { return c.URL + "/token" }
