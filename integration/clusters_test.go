package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// Clusters against real processes: a gateway authgress forwarding through
// agent authgresses (each with its own vault file and OAuth client, over
// mTLS), the real OAuth server, and an upstream that tells the agents apart
// by asking the OAuth server whose token it got.

// agentGrants are the (client, scope) grants of the agents a1, a2, a3: the
// upstream's introspection names the agent a request came through.
var agentGrants = []struct{ id, send, scope string }{
	{"app", "basic", "api:read"},           // a1: proxy-client, api:read
	{"app_post", "body", "api:read"},       // a2: proxy-client-post, api:read
	{"app", "basic", "api:read api:write"}, // a3: proxy-client, api:read api:write
}

func agentOfGrant(client, scope string) string {
	for k, g := range agentGrants {
		want := "proxy-client"
		if g.id == "app_post" {
			want = "proxy-client-post"
		}
		if client == want && scope == g.scope {
			return fmt.Sprintf("a%d", k+1)
		}
	}
	return "?"
}

// hit is one request the upstream answered: which agent injected its
// token, and when.
type hit struct {
	agent string
	at    time.Time
}

// rig is the OAuth server, the upstream, and n agents on fixed ports (so
// that a killed agent can come back on its port).
type rig struct {
	idp      *IdP
	up       *Upstream
	agents   []*Authgress
	ports    []int
	gwCert   string // the gateways' client certificate (signed by the gateways' CA)
	gwKey    string
	clientCA string

	mu     sync.Mutex
	hits   []hit
	byTok  map[string]string // token -> agent (introspected once)
	denied int
}

func newRig(t *testing.T, n int) *rig {
	t.Helper()
	r := &rig{idp: startIdP(t, 300, "opaque"), up: startUpstream(t), byTok: map[string]string{}}
	r.up.Handle(r.serve)
	dir := t.TempDir()
	gwCA, gwCAKey := newCA("gateways")
	r.clientCA = filepath.Join(dir, "gateways-ca.pem")
	writePEMFile(r.clientCA, "CERTIFICATE", gwCA.Raw)
	r.gwCert, r.gwKey = issueClient(t, dir, "gw1", gwCA, gwCAKey)
	for k := range n {
		port := freePort(t)
		cert, key, _ := issueServerCert(t, dir, fmt.Sprintf("agent%d", k+1))
		g := agentGrants[k]
		cfg := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:%d\"\n\n[server.tls]\ncert = %q\nkey = %q\nclient_ca = %q\n", port, cert, key, r.clientCA) +
			strings.NewReplacer(`id = "app"`, fmt.Sprintf("id = %q\nsend = %q", g.id, g.send), `scopes = ["api:read"]`,
				`scopes = ["`+strings.Join(strings.Fields(g.scope), `", "`)+`"]`).Replace(config(r.idp.TokenURL(), r.up.Addr, ""))
		r.agents = append(r.agents, startAuthgress(t, cfg))
		r.ports = append(r.ports, port)
	}
	return r
}

// serve accepts only live tokens and records which agent sent each request.
func (r *rig) serve(w http.ResponseWriter, req *http.Request) {
	tok := bearer(req)
	r.mu.Lock()
	agent, ok := r.byTok[tok]
	r.mu.Unlock()
	if !ok {
		active, client, scope := r.idp.Introspect(tok)
		if !active {
			r.mu.Lock()
			r.denied++
			r.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		agent = agentOfGrant(client, scope)
		r.mu.Lock()
		r.byTok[tok] = agent
		r.mu.Unlock()
	}
	r.mu.Lock()
	r.hits = append(r.hits, hit{agent, time.Now()})
	r.mu.Unlock()
	w.Header().Set("X-Agent", agent)
	h := sha256.New()
	n, _ := io.Copy(h, req.Body)
	w.Header().Set("X-Body-SHA256", hex.EncodeToString(h.Sum(nil)))
	fmt.Fprintf(w, "%s %s %d", req.Method, req.URL.RequestURI(), n)
}

// count returns the requests per agent the upstream answered since from.
func (r *rig) count(from time.Time) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, h := range r.hits {
		if !h.at.Before(from) {
			out[h.agent]++
		}
	}
	return out
}

func (r *rig) hitsOf(agent string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Time
	for _, h := range r.hits {
		if h.agent == agent {
			out = append(out, h.at)
		}
	}
	return out
}

// nodes is the [clusters.dmz] nodes array: a1 has capability rest, a2
// rest and soap, a3 soap.
func (r *rig) nodes() string {
	caps := []string{`["rest"]`, `["rest", "soap"]`, `["soap"]`}
	var out []string
	for k, p := range r.ports {
		out = append(out, fmt.Sprintf(`{ name = "a%d", url = "https://127.0.0.1:%d", capabilities = %s }`, k+1, p, caps[k%3]))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// gateway starts a gateway with cluster dmz (its keys: cluster) and a
// connection api for the upstream with via and extra keys. It has no
// credential: the agents inject it.
func (r *rig) gateway(t *testing.T, cluster, via, extra string) *Authgress {
	t.Helper()
	return startAuthgress(t, fmt.Sprintf(`[server]
admin = "127.0.0.1:0"

[profiles.agents]
cert = %q
key = %q
ca = "{{CA}}"

[clusters.dmz]
profile = "agents"
nodes = %s
%s

[connections.api]
hosts = [%q]
via = %q
%s
`, r.gwCert, r.gwKey, r.nodes(), cluster, r.up.Addr, via, extra))
}

// statusDoc is the part of /status about clusters.
type statusDoc struct {
	Clusters []struct {
		Name  string `json:"name"`
		Mode  string `json:"mode"`
		Nodes []struct {
			Name      string `json:"name"`
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"nodes"`
	} `json:"clusters"`
}

func nodeStates(t *testing.T, gw *Authgress) map[string]string {
	t.Helper()
	var doc statusDoc
	if err := json.Unmarshal([]byte(adminGet(t, gw.adminAddr(), "/status")), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, cl := range doc.Clusters {
		for _, n := range cl.Nodes {
			out[cl.Name+"/"+n.Name] = n.State
		}
	}
	return out
}

// waitState polls /status (every 20ms, up to within) until node is in
// state; it returns when that was seen.
func waitState(t *testing.T, gw *Authgress, node, state string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := nodeStates(t, gw)
		if st[node] == state {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after %s, want %q (all: %v)", node, st[node], within, state, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitAllHealthy(t *testing.T, gw *Authgress, n int) {
	t.Helper()
	for k := range n {
		waitState(t, gw, fmt.Sprintf("dmz/a%d", k+1), "healthy", 10*time.Second)
	}
}

// logTime is a JSON log line's time.
func logTime(t *testing.T, l map[string]any) time.Time {
	t.Helper()
	s, _ := l["time"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log line without a time: %v", l)
	}
	return at
}

// loadUntil sends GET requests from clients goroutines until stop is closed (or
// max passes); it returns how many got a 200 and the failures.
func loadUntil(c *http.Client, url string, clients int, max time.Duration, stop <-chan struct{}) (ok int, failures []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(max)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				msg := ""
				if err != nil {
					msg = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						msg = fmt.Sprintf("%d %s", resp.StatusCode, b)
					}
				}
				mu.Lock()
				if msg == "" {
					ok++
				} else {
					failures = append(failures, time.Now().Format("15:04:05.000")+" "+msg)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok, failures
}

func sortedCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(out, " ")
}

// sendN sends n GETs through gw, 8 at a time, and fails on anything but
// 200; it returns the requests per agent the upstream saw.
func (r *rig) sendN(t *testing.T, gw *Authgress, n int) map[string]int {
	t.Helper()
	from := time.Now()
	c := gw.Client()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				resp, err := c.Get(fmt.Sprintf("http://%s/v1/%d", r.up.Addr, j))
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, b))
					mu.Unlock()
				}
			}
		}()
	}
	for j := range n {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failures), n, failures[0])
	}
	got := r.count(from)
	total := 0
	for _, v := range got {
		total += v
	}
	if total != n {
		t.Fatalf("the upstream saw %d requests, want %d: %v", total, n, got)
	}
	return got
}

// TestClustersSelection: a gateway and three agents (own vault file, own
// OAuth grant each; the upstream introspects the token to name the agent).
// balance spreads 600 requests evenly over all three; failover sends all
// to the first; a pinned node gets all; auto uses only the nodes with the
// required capability. The gateway's access lines name the node.
func TestClustersSelection(t *testing.T) {
	r := newRig(t, 3)
	cases := []struct {
		name, cluster, via, extra string
		want                      map[string]float64 // agent -> share of the requests
	}{
		{"balance", `mode = "balance"`, "dmz", "", map[string]float64{"a1": 1.0 / 3, "a2": 1.0 / 3, "a3": 1.0 / 3}},
		{"failover", `mode = "failover"`, "dmz", "", map[string]float64{"a1": 1}},
		{"pinned", `mode = "balance"`, "dmz/a2", "", map[string]float64{"a2": 1}},
		{"auto", `mode = "failover"`, "auto", `capabilities = ["soap"]`, map[string]float64{"a2": 0.5, "a3": 0.5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := r.gateway(t, tc.cluster+"\nhealth_interval = \"500ms\"\nhealth_timeout = \"400ms\"", tc.via, tc.extra)
			waitAllHealthy(t, gw, 3)
			const n = 600
			got := r.sendN(t, gw, n)
			t.Logf("%s: %d requests: %s", tc.name, n, sortedCounts(got))
			for agent, share := range tc.want {
				want := share * n
				if d := float64(got[agent]) - want; d > 0.2*want || d < -0.2*want {
					t.Errorf("%s got %d of %d requests, want %.0f ± 20%%", agent, got[agent], n, want)
				}
			}
			for agent, c := range got {
				if _, ok := tc.want[agent]; !ok {
					t.Errorf("%s got %d requests, want none", agent, c)
				}
			}
			// the gateway's access lines say which node each request went through
			nodes := map[string]int{}
			deadline := time.Now().Add(5 * time.Second)
			for {
				clear(nodes)
				total := 0
				for _, l := range gw.logLines() {
					if l["msg"] == "request" {
						node, _ := l["node"].(string)
						nodes[node]++
						total++
					}
				}
				if total >= n || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			for agent, c := range got {
				if nodes["dmz/"+agent] != c {
					t.Errorf("access lines: %v, the upstream: %v", nodes, got)
					break
				}
			}
		})
	}
}

// TestClustersAgentKilledUnderLoad: 50 clients send GETs through the
// gateway (balance over three agents, retry on connect and reset) for
// 20s. At 5s one agent is killed with SIGKILL; at 11s it is started again
// on its port. No client sees a failure; the gateway stops using the dead
// agent within 2s (its "node down" line, and the last access line naming
// it); after the restart the agent serves again within two health
// intervals of listening.
func TestClustersAgentKilledUnderLoad(t *testing.T) {
	r := newRig(t, 3)
	const interval = time.Second
	gw := r.gateway(t, "mode = \"balance\"\nhealth_interval = \"1s\"\nhealth_timeout = \"500ms\"\nhealth_url = \"/healthz\"", "dmz",
		`retry = { count = 2, on_error = ["connect", "reset"], interval = "100ms" }`)
	waitAllHealthy(t, gw, 3)
	start := time.Now()
	var ok int
	var failures []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		ok, failures = loadUntil(gw.Client(), "http://"+r.up.Addr+"/v1", 50, 20*time.Second, nil)
	}()

	time.Sleep(5 * time.Second)
	before := r.count(start)
	killed := time.Now()
	r.agents[0].Kill()
	t.Logf("killed a1 at +%s (a1 had served %d)", killed.Sub(start).Round(time.Millisecond), before["a1"])

	time.Sleep(6 * time.Second)
	restarted := time.Now()
	r.agents[0].Restart()
	var listening time.Time
	for _, l := range r.agents[0].logLines() {
		if l["msg"] == "listening" {
			listening = logTime(t, l)
		}
	}
	t.Logf("restarted a1 at +%s, listening at +%s", restarted.Sub(start).Round(time.Millisecond), listening.Sub(start).Round(time.Millisecond))
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("the load did not end")
	}
	t.Logf("20s, 50 clients: %d ok, %d failed; per agent: %s", ok, len(failures), sortedCounts(r.count(start)))
	if len(failures) > 0 {
		t.Errorf("%d requests failed, first: %v", len(failures), failures[:min(len(failures), 5)])
	}

	// the upstream's view: a1's last request before the restart, its first after
	var lastBefore, firstAfter time.Time
	for _, at := range r.hitsOf("a1") {
		if at.Before(restarted) {
			lastBefore = at
		} else if firstAfter.IsZero() {
			firstAfter = at
		}
	}
	// the gateway's view: when it marked a1 down, and its last access line
	// naming a1 before the restart
	var down, lastLine time.Time
	for _, l := range gw.logLines() {
		switch {
		case l["msg"] == "node down" && l["node"] == "dmz/a1" && down.IsZero():
			down = logTime(t, l)
		case l["msg"] == "request" && l["node"] == "dmz/a1":
			if at := logTime(t, l); at.Before(restarted) {
				lastLine = at
			}
		}
	}
	moved := max(down.Sub(killed), lastLine.Sub(killed), lastBefore.Sub(killed))
	t.Logf("after the kill: a1's last request at the upstream %s, the gateway's last access line via a1 %s, a1 marked down %s; traffic moved within %s",
		lastBefore.Sub(killed).Round(time.Millisecond), lastLine.Sub(killed).Round(time.Millisecond), down.Sub(killed).Round(time.Millisecond), moved.Round(time.Millisecond))
	if down.IsZero() || moved > 2*time.Second {
		t.Errorf("traffic moved off the killed agent %s after the kill (marked down: %v), want within 2s", moved, !down.IsZero())
	}
	rejoin := firstAfter.Sub(listening)
	t.Logf("a1 listening again → first request through it: %s (health interval %s)", rejoin.Round(time.Millisecond), interval)
	if firstAfter.IsZero() || rejoin > 2*interval {
		t.Errorf("the restarted agent served its first request %s after it listened, want within %s", rejoin, 2*interval)
	}
	if n := r.count(listening.Add(2 * interval))["a1"]; n == 0 {
		t.Error("the restarted agent is not in rotation")
	}
	m := adminGet(t, gw.adminAddr(), "/metrics")
	t.Logf("retries: connect %v, reset %v", metricOr(m, "authgress_retries_total", `connection="api"`, `reason="connect"`),
		metricOr(m, "authgress_retries_total", `connection="api"`, `reason="reset"`))
}

// metricOr is the sample's value, or 0 when there is none.
func metricOr(text, name string, labels ...string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if all {
			var v float64
			f := strings.Fields(line)
			fmt.Sscan(f[len(f)-1], &v)
			return v
		}
	}
	return 0
}

// noAgent sends one GET through gw and checks that it is a 503
// no_agent_available of connection api; it returns how long it took.
func (r *rig) noAgent(t *testing.T, gw *Authgress) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	resp, body := gw.Get("http://" + r.up.Addr + "/v1")
	took := time.Since(start)
	e := decodeError(t, resp, body)
	if resp.StatusCode != 503 || e.Error != "no_agent_available" || e.Connection != "api" {
		t.Fatalf("%d %+v, want 503 no_agent_available", resp.StatusCode, e)
	}
	return took, e.Message
}

// TestClustersAllAgentsDown: with every agent killed the gateway answers
// 503 no_agent_available at once: first while it still thinks they are
// healthy (each dial is refused), then after the health checks marked
// them down (no dial at all). Nothing waits on the 10s dial timeout, and
// the retry policy does not retry authgress's own failure.
func TestClustersAllAgentsDown(t *testing.T) {
	r := newRig(t, 2)
	gw := r.gateway(t, "mode = \"failover\"\nhealth_interval = \"1s\"\nhealth_timeout = \"500ms\"", "dmz",
		`retry = { count = 2, interval = "500ms" }`)
	waitAllHealthy(t, gw, 2)
	if resp, body := gw.Get("http://" + r.up.Addr + "/v1"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, a := range r.agents {
		a.Kill()
	}
	const bound = 2 * time.Second // a refused dial takes microseconds; any wait on a timeout is 10s
	took, msg := r.noAgent(t, gw)
	t.Logf("agents just killed: 503 after %s: %s", took.Round(time.Millisecond), msg)
	if took > bound || !strings.Contains(msg, "dmz/a") {
		t.Errorf("no_agent_available took %s (want < %s), message %q", took, bound, msg)
	}
	waitState(t, gw, "dmz/a1", "down", 5*time.Second)
	waitState(t, gw, "dmz/a2", "down", 5*time.Second)
	took, msg = r.noAgent(t, gw)
	t.Logf("agents marked down: 503 after %s: %s", took.Round(time.Millisecond), msg)
	if took > bound {
		t.Errorf("no_agent_available took %s, want < %s", took, bound)
	}
	if m := adminGet(t, gw.adminAddr(), "/metrics"); metricOr(m, "authgress_retries_total", `connection="api"`) != 0 {
		t.Error("no_agent_available was retried")
	}
}

// TestClustersFrozenAgents: agents that are frozen (SIGSTOP: the kernel
// still accepts their connections, nothing answers the TLS handshake). A
// request costs at most the cluster's health_timeout per frozen node, not
// the 10s handshake timeout of upstream connections: with both frozen the
// answer is 503 no_agent_available within about two health timeouts; with
// one thawed, its requests succeed.
func TestClustersFrozenAgents(t *testing.T) {
	r := newRig(t, 2)
	gw := r.gateway(t, "mode = \"failover\"\nhealth_interval = \"1s\"\nhealth_timeout = \"500ms\"", "dmz", "")
	waitAllHealthy(t, gw, 2)
	for _, a := range r.agents {
		_ = a.cmd.Process.Signal(syscall.SIGSTOP)
		t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
		waitStopped(t, a.cmd.Process.Pid)
	}
	took, msg := r.noAgent(t, gw)
	t.Logf("both agents frozen: 503 after %s: %s", took.Round(time.Millisecond), msg)
	if took > 2*time.Second {
		t.Errorf("no_agent_available took %s with frozen agents, want < 2s (health_timeout is 500ms)", took)
	}
	_ = r.agents[1].cmd.Process.Signal(syscall.SIGCONT)
	waitState(t, gw, "dmz/a1", "down", 5*time.Second)
	waitState(t, gw, "dmz/a2", "healthy", 5*time.Second)
	resp, body := gw.Get("http://" + r.up.Addr + "/v1")
	if resp.StatusCode != 200 || resp.Header.Get("X-Agent") != "a2" {
		t.Fatalf("a2 thawed: %d via %q: %s", resp.StatusCode, resp.Header.Get("X-Agent"), body)
	}
}

// TestClustersAgentHealthzAndNodeState: an agent answers GET /healthz in
// origin form on its agent listener (curl with the gateway's client
// certificate) with 200. A gateway with health_url = "/healthz" shows in
// /status and in authgress_node_up when an agent stops and when it is
// back.
func TestClustersAgentHealthzAndNodeState(t *testing.T) {
	r := newRig(t, 2)
	a1 := fmt.Sprintf("127.0.0.1:%d", r.ports[0])
	cmd := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", getPKI(t).caFile,
		"--cert", r.gwCert, "--key", r.gwKey, "https://"+a1+"/healthz")
	cmd.Env = clientEnv()
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "200" {
		t.Fatalf("curl https://%s/healthz: %v %s", a1, err, out)
	}
	// without a client certificate, the agent listener refuses the handshake
	cmd = exec.Command("curl", "-sS", "-o", "/dev/null", "--cacert", getPKI(t).caFile, "https://"+a1+"/healthz")
	cmd.Env = clientEnv()
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("curl without a client certificate: %s", out)
	}

	const interval = 500 * time.Millisecond
	gw := r.gateway(t, "mode = \"balance\"\nhealth_interval = \"500ms\"\nhealth_timeout = \"300ms\"\nhealth_url = \"/healthz\"", "dmz", "")
	waitAllHealthy(t, gw, 2)
	nodeUp := func() float64 {
		return metricValue(t, adminGet(t, gw.adminAddr(), "/metrics"), "authgress_node_up", `cluster="dmz"`, `node="a1"`)
	}
	if v := nodeUp(); v != 1 {
		t.Fatalf("authgress_node_up{a1} = %v with a1 healthy", v)
	}
	stopped := time.Now()
	if err := r.agents[0].Terminate(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	down := waitState(t, gw, "dmz/a1", "down", 5*interval)
	if v := nodeUp(); v != 0 {
		t.Errorf("authgress_node_up{a1} = %v with a1 stopped", v)
	}
	var doc statusDoc
	_ = json.Unmarshal([]byte(adminGet(t, gw.adminAddr(), "/status")), &doc)
	t.Logf("a1 stopped (SIGTERM): down in /status after %s: %+v", down.Sub(stopped).Round(time.Millisecond), doc.Clusters)
	if doc.Clusters[0].Nodes[0].LastError == "" {
		t.Error("/status does not say why a1 is down")
	}
	// the other node keeps serving
	if resp, body := gw.Get("http://" + r.up.Addr + "/v1"); resp.StatusCode != 200 || resp.Header.Get("X-Agent") != "a2" {
		t.Fatalf("%d via %q: %s", resp.StatusCode, resp.Header.Get("X-Agent"), body)
	}

	r.agents[0].Restart()
	restarted := time.Now()
	healthy := waitState(t, gw, "dmz/a1", "healthy", 5*interval)
	t.Logf("a1 back: healthy in /status after %s", healthy.Sub(restarted).Round(time.Millisecond))
	if healthy.Sub(restarted) > 2*interval {
		t.Errorf("a1 became healthy %s after it listened again, want within two health intervals (%s)", healthy.Sub(restarted), 2*interval)
	}
	if v := nodeUp(); v != 1 {
		t.Errorf("authgress_node_up{a1} = %v with a1 back", v)
	}
}

// flaky is an upstream that records when each path was asked for and
// fails as the path says: /flaky (503 three times, then 200),
// /after-seconds and /after-date (503 with Retry-After in seconds or as an
// HTTP-date once, then 200), /down (always 503).
type flaky struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (f *flaky) serve(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.times[r.URL.Path] = append(f.times[r.URL.Path], time.Now())
	k := len(f.times[r.URL.Path])
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/flaky" && k <= 3, r.URL.Path == "/down":
		w.WriteHeader(503)
		return
	case r.URL.Path == "/after-seconds" && k == 1:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
		return
	case r.URL.Path == "/after-date" && k == 1:
		// two seconds ahead; an HTTP-date has whole seconds, so the wait is 1-2s
		w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
		w.WriteHeader(503)
		return
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, n)
}

func (f *flaky) attempts(path string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times[path]...)
}

// TestClustersRetryPolicy: the retry policy against the binary. count 3,
// exponential, interval 100ms against an upstream that fails three times:
// the upstream sees the attempts about 100, 200 and 400ms apart (±10%
// jitter). strategy retry_after honours Retry-After in seconds and as an
// HTTP-date. A POST is not retried by default, nor a body over 1 MiB.
// authgress_retries_total counts the retries by connection and reason, and
// the access line says how many a request had.
func TestClustersRetryPolicy(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	f := &flaky{times: map[string][]time.Time{}}
	up.Handle(f.serve)
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n"+
		config(idp.TokenURL(), up.Addr, `retry = { count = 3, strategy = "exponential", interval = "100ms" }`)+fmt.Sprintf(`
[connections.after]
hosts = ["localhost:%s"]
credential = "app"
profile = "upstream"
retry = { count = 2, strategy = "retry_after", interval = "50ms" }
`, port))

	resp, body := a.Get("http://" + up.Addr + "/flaky")
	times := f.attempts("/flaky")
	if resp.StatusCode != 200 || len(times) != 4 {
		t.Fatalf("/flaky: %d %q after %d attempts, want 200 after 4", resp.StatusCode, body, len(times))
	}
	var waits []string
	for k, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		got := times[k+1].Sub(times[k])
		waits = append(waits, got.Round(time.Millisecond).String())
		// jitter is ±10%; on top, the round trip: a few ms, but this
		// machine is shared, and a stall of 100ms has been seen
		if got < want*88/100 || got > want*110/100+120*time.Millisecond {
			t.Errorf("wait %d was %s, want %s ±10%%", k+1, got, want)
		}
	}
	t.Logf("exponential, interval 100ms: waits measured at the upstream %v", waits)
	l := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["path"] == "/flaky" })
	if l["retries"] != float64(3) || l["status"] != float64(200) {
		t.Errorf("access line: %v", l)
	}

	for _, path := range []string{"/after-seconds", "/after-date"} {
		resp, body := a.Get("http://localhost:" + port + path)
		times := f.attempts(path)
		if resp.StatusCode != 200 || len(times) != 2 {
			t.Fatalf("%s: %d %q after %d attempts", path, resp.StatusCode, body, len(times))
		}
		wait := times[1].Sub(times[0])
		t.Logf("retry_after, %s: waited %s", path, wait.Round(time.Millisecond))
		lo, hi := 950*time.Millisecond, 1300*time.Millisecond // Retry-After: 1
		if path == "/after-date" {
			lo, hi = 950*time.Millisecond, 2300*time.Millisecond // a date 2s ahead, in whole seconds
		}
		if wait < lo || wait > hi {
			t.Errorf("%s: waited %s, want %s-%s (the interval is 50ms)", path, wait, lo, hi)
		}
	}

	// POST is not among the default methods
	resp, body = a.Do(mustRequest(t, "POST", "http://"+up.Addr+"/down", strings.NewReader("order-17")))
	if n := len(f.attempts("/down")); resp.StatusCode != 503 || n != 1 {
		t.Errorf("POST: %d %q after %d attempts, want one 503", resp.StatusCode, body, n)
	}
	// a body over 1 MiB is streamed, not kept: it cannot be sent again
	big := strings.Repeat("x", 1<<20+1)
	resp, _ = a.Do(mustRequest(t, "PUT", "http://"+up.Addr+"/down", strings.NewReader(big)))
	if n := len(f.attempts("/down")); resp.StatusCode != 503 || n != 2 {
		t.Errorf("PUT over 1 MiB: %d after %d attempts, want one 503", resp.StatusCode, n-1)
	}
	// a PUT of 1 MiB exactly is kept and retried
	resp, _ = a.Do(mustRequest(t, "PUT", "http://"+up.Addr+"/down", strings.NewReader(big[1:])))
	if n := len(f.attempts("/down")); resp.StatusCode != 503 || n != 6 {
		t.Errorf("PUT of 1 MiB: %d after %d attempts, want 4 (503 each)", resp.StatusCode, n-2)
	}

	m := adminGet(t, a.adminAddr(), "/metrics")
	api := metricOr(m, "authgress_retries_total", `connection="api"`, `reason="503"`)
	after := metricOr(m, "authgress_retries_total", `connection="after"`, `reason="503"`)
	t.Logf("authgress_retries_total: api/503 %v, after/503 %v", api, after)
	if api != 6 || after != 2 {
		t.Errorf("authgress_retries_total: api/503 = %v (want 3 for /flaky + 3 for the 1 MiB PUT), after/503 = %v (want 2)", api, after)
	}
}

// TestClustersNeverSentGoesToAnotherNode: a cluster in failover mode whose
// first node is a closed port the gateway still believes healthy (its
// agent was killed after the only health check; health_interval is 1h). A
// POST, which no retry policy would send again, goes to the second node
// because nothing reached the first; its body arrives intact, both when it
// was kept (64 KiB) and when it is streamed (3 MiB, more than a retry
// could keep). After eject_after (3) refused connections the first node
// is down in /status.
func TestClustersNeverSentGoesToAnotherNode(t *testing.T) {
	r := newRig(t, 2)
	gw := r.gateway(t, "mode = \"failover\"\nhealth_interval = \"1h\"\nhealth_timeout = \"1s\"", "dmz", "")
	waitAllHealthy(t, gw, 2)
	r.agents[0].Kill() // no request went to it: the gateway has no connection to it
	for k, size := range []int{64 << 10, 3 << 20, 10} {
		body := make([]byte, size)
		_, _ = rand.Read(body)
		sum := sha256.Sum256(body)
		resp, text := gw.Do(mustRequest(t, "POST", fmt.Sprintf("http://%s/orders/%d", r.up.Addr, k), bytes.NewReader(body)))
		if resp.StatusCode != 200 || resp.Header.Get("X-Agent") != "a2" {
			t.Fatalf("POST of %d bytes: %d via %q: %s", size, resp.StatusCode, resp.Header.Get("X-Agent"), text)
		}
		if got := resp.Header.Get("X-Body-SHA256"); got != hex.EncodeToString(sum[:]) || text != fmt.Sprintf("POST /orders/%d %d", k, size) {
			t.Fatalf("POST of %d bytes: the upstream got %q (sha256 %s, want %x)", size, text, got, sum)
		}
		l := gw.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["path"] == fmt.Sprintf("/orders/%d", k) })
		if l["node"] != "dmz/a2" || l["status"] != float64(200) {
			t.Fatalf("access line: %v", l)
		}
	}
	if st := nodeStates(t, gw); st["dmz/a1"] != "down" || st["dmz/a2"] != "healthy" {
		t.Fatalf("after three refused connections: %v", st)
	}
	var doc statusDoc
	_ = json.Unmarshal([]byte(adminGet(t, gw.adminAddr(), "/status")), &doc)
	t.Logf("three POSTs (64 KiB, 3 MiB, 10 B) went to a2 intact; /status: %+v", doc.Clusters[0].Nodes)
	if !strings.Contains(doc.Clusters[0].Nodes[0].LastError, "ejected") {
		t.Errorf("/status does not say a1 was ejected: %+v", doc.Clusters[0].Nodes[0])
	}
}

// startSquid runs Debian's squid as a plain forward proxy on a free
// loopback port, with a minimal config in a temp dir, until the test ends.
// extra is added to the config. (As root, squid drops to its own user,
// so the dir is open to it.)
func startSquid(t *testing.T, extra string) string {
	t.Helper()
	bin, err := exec.LookPath("squid")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/squid"); err != nil {
			t.Fatal("squid is not installed (scripts/test installs it: apt-get install squid)")
		}
	}
	dir, err := os.MkdirTemp("", "authgress-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o777)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := fmt.Sprintf(`http_port %[1]s
acl all_src src all
http_access allow all_src
cache deny all
cache_mem 8 MB
access_log stdio:%[2]s/access.log
cache_log %[2]s/cache.log
pid_filename %[2]s/squid.pid
coredump_dir %[2]s
shutdown_lifetime 1 seconds
%[3]s
`, addr, dir, extra)
	path := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &testlog.Buffer{}
	cmd := exec.Command(bin, "-N", "-f", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			t.Fatalf("squid exited:\n%s\n%s", out.String(), log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			t.Fatalf("squid did not listen on %s:\n%s\n%s", addr, out.String(), log)
		}
	}
}

// TestClustersSquidNode: squid as a plain forward-proxy node
// (url = "http://…"). The gateway injects the credential itself (its
// connection has it) and sends the request through squid, which forwards
// it to the upstream: over plain http (allow_insecure), and as
// GET https://…, which squid sends on over TLS. The upstream gets a live
// token; the gateway's access line names the node.
func TestClustersSquidNode(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	plain := httptest.NewServer(introspecting(idp))
	t.Cleanup(plain.Close)
	plainAddr := strings.TrimPrefix(plain.URL, "http://")
	// squid reads the CA as its own user: give it a copy it can read
	caDir := t.TempDir()
	_ = os.Chmod(caDir, 0o755)
	ca := filepath.Join(caDir, "ca.pem")
	b, _ := os.ReadFile(getPKI(t).caFile)
	if err := os.WriteFile(ca, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's squid is the GnuTLS build: its reads after a TLS 1.3
	// handshake with Go's server fail (ERR_READ_ERROR), so it is held to
	// TLS 1.2 (a GnuTLS priority string).
	squid := startSquid(t, "tls_outgoing_options cafile="+ca+" options=NORMAL:-VERS-TLS1.3")
	gw := startAuthgress(t, config(idp.TokenURL(), up.Addr, "via = \"edge\"")+fmt.Sprintf(`
[clusters.edge]
health_interval = "1s"
health_timeout = "500ms"
nodes = [{ name = "squid", url = "http://%s" }]

[connections.plain]
hosts = [%q]
credential = "app"
via = "edge"
allow_insecure = true
`, squid, plainAddr))
	for _, u := range []string{"http://" + plainAddr + "/plain", "http://" + up.Addr + "/tls"} {
		resp, body := gw.Get(u)
		if resp.StatusCode != 200 || resp.Header.Get("X-Token-Client") != "proxy-client" || !strings.Contains(resp.Header.Get("Via"), "squid") {
			t.Fatalf("%s through squid: %d client %q: %s", u, resp.StatusCode, resp.Header.Get("X-Token-Client"), body)
		}
		t.Logf("%s through squid: %d %q, TLS to the upstream: %s, Via: %s", u, resp.StatusCode, body, resp.Header.Get("X-Seen-TLS"), resp.Header.Get("Via"))
	}
	for _, path := range []string{"/plain", "/tls"} {
		l := gw.WaitLog(func(l map[string]any) bool { return l["msg"] == "request" && l["path"] == path })
		if l["node"] != "edge/squid" || l["status"] != float64(200) {
			t.Errorf("access line: %v", l)
		}
	}
}

// waitStopped waits (up to 2s) until every thread of process pid is
// stopped: a thread that ran on after SIGSTOP could still finish a TLS
// handshake.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		stopped := len(tasks) > 0
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			// the state follows the command name in parentheses: "pid (comm) T ..."
			if i := strings.LastIndexByte(string(b), ')'); err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is not stopped 2s after SIGSTOP", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
