package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgress/authgress/proxy"
)

// gatewaySetup is a gateway and n agents: each agent injects the token (the
// IdP numbers tokens, so the upstream tells the agents apart), the gateway
// forwards via the cluster over mTLS.
type gatewaySetup struct {
	up      *apiServer
	agents  []*harness
	gateway *harness
}

func newGatewaySetup(t *testing.T, n int, cluster, via, connExtra string) *gatewaySetup {
	t.Helper()
	s := &gatewaySetup{up: newUpstream(t)}
	i := newIDP(t)
	agentsCA, gatewaysCA := newTestCA(t, "agents"), newTestCA(t, "gateways")
	dir := t.TempDir()
	var nodes []string
	for k := range n {
		cert, key, _ := agentsCA.issue(t, dir, fmt.Sprintf("agent%d", k), "agent", true)
		a := newHarness(t, fmt.Sprintf("[server.tls]\ncert = %q\nkey = %q\nclient_ca = %q\n", cert, key, gatewaysCA.file)+baseConfig, s.up, i)
		s.agents = append(s.agents, a)
		nodes = append(nodes, fmt.Sprintf("{ name = \"a%d\", url = \"https://%s\", capabilities = [%q] }", k+1, a.eng.ProxyAddr(), []string{"rest", "soap"}[k%2]))
	}
	gwCert, gwKey, _ := gatewaysCA.issue(t, dir, "gw", "gw1", false)
	text := fmt.Sprintf(`
[profiles.agents]
cert = %q
key = %q
ca = %q

[clusters.dmz]
profile = "agents"
health_interval = "200ms"
health_timeout = "150ms"
health_url = "/healthz"
nodes = [%s]
%s

[connections.api]
hosts = ["{{UP}}"]
via = %q
%s
`, gwCert, gwKey, agentsCA.file, strings.Join(nodes, ", "), cluster, via, connExtra)
	s.gateway = newHarness(t, text, s.up, i)
	return s
}

// get sends one request through the gateway; it returns the status and
// the token the upstream saw (which names the agent).
func (s *gatewaySetup) get(t *testing.T, c *http.Client) (int, string) {
	t.Helper()
	resp, err := c.Get("http://" + s.up.hostPort() + "/v1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Seen-Authorization")
}

func TestGatewayBalancesOverAgents(t *testing.T) {
	s := newGatewaySetup(t, 3, `mode = "balance"`, "dmz", "")
	c := s.gateway.client()
	seen := map[string]int{}
	for range 300 {
		code, tok := s.get(t, c)
		if code != 200 || tok == "" {
			t.Fatalf("%d %q", code, tok)
		}
		seen[tok]++
	}
	if len(seen) != 3 {
		t.Fatalf("balance used %d agents: %v", len(seen), seen)
	}
	for tok, n := range seen {
		if n < 80 || n > 120 {
			t.Fatalf("agent with %s got %d of 300 requests: %v", tok, n, seen)
		}
	}
	if logs := s.gateway.logText(); !strings.Contains(logs, "node=dmz/a1") || !strings.Contains(logs, "node=dmz/a3") {
		t.Fatal("the access line does not name the node")
	}
}

func TestGatewayFailoverPinnedAndAuto(t *testing.T) {
	for _, tc := range []struct{ name, mode, via, extra, wantAgent string }{
		{"failover: all to the first", `mode = "failover"`, "dmz", "", "a1"},
		{"pinned node", `mode = "balance"`, "dmz/a2", "", "a2"},
		{"auto by capabilities", `mode = "failover"`, "auto", `capabilities = ["soap"]`, "a2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newGatewaySetup(t, 3, tc.mode, tc.via, tc.extra)
			c := s.gateway.client()
			for range 30 {
				if code, _ := s.get(t, c); code != 200 {
					t.Fatalf("%d", code)
				}
			}
			logs := s.gateway.logText()
			n := 0
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, "msg=request") && strings.HasSuffix(l, "node=dmz/"+tc.wantAgent) {
					n++
				}
			}
			if n != 30 {
				t.Fatalf("%d of 30 requests went to %s:\n%s", n, tc.wantAgent, logs)
			}
		})
	}
}

func TestGatewaySurvivesAnAgentDying(t *testing.T) {
	s := newGatewaySetup(t, 3, `mode = "balance"`, "dmz", `retry = { count = 2, interval = "50ms", on_error = ["connect", "reset"] }`)
	c := s.gateway.client()
	stop := underLoad(8, c, "http://"+s.up.hostPort()+"/v1", nil)
	time.Sleep(300 * time.Millisecond)
	s.agents[0].eng.Close() // the agent is gone: its listener and its connections
	time.Sleep(time.Second)
	ok, failed := stop()
	if failed != 0 || ok < 50 {
		t.Fatalf("%d failed, %d ok while an agent died", failed, ok)
	}
	st := status(t, s.gateway)
	if got := st.Clusters[0].Nodes[0].State; got != "down" {
		t.Fatalf("the dead agent is %q in /status", got)
	}
}

func TestAllAgentsDownIsNoAgentAvailable(t *testing.T) {
	s := newGatewaySetup(t, 2, `mode = "failover"`, "dmz", "")
	for _, a := range s.agents {
		a.eng.Close()
	}
	start := time.Now()
	resp, body := s.gateway.get("http://" + s.up.hostPort() + "/v1")
	if resp.StatusCode != 503 || resp.Header.Get(proxy.ErrorHeader) != proxy.CodeNoAgentAvailable {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("no_agent_available took %s", d)
	}
}

func TestRetryPolicyAgainstTheUpstream(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	var hits atomic.Int64
	var times []time.Time
	var mu sync.Mutex
	up.handle(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/flaky":
			if hits.Add(1) < 4 {
				w.WriteHeader(503)
				return
			}
		case "/after":
			if hits.Add(1) < 2 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(503)
				return
			}
		case "/down":
			w.WriteHeader(503)
			return
		}
		echo(w, r)
	})
	h := newHarness(t, baseConfig+`retry = { count = 3, strategy = "exponential", interval = "100ms" }`+"\n", up, i)
	resp, _ := h.get("http://" + up.hostPort() + "/flaky")
	if resp.StatusCode != 200 || len(times) != 4 {
		t.Fatalf("%d after %d attempts", resp.StatusCode, len(times))
	}
	for k, want := range []time.Duration{100, 200, 400} {
		got := times[k+1].Sub(times[k])
		if got < want*time.Millisecond*85/100 || got > want*time.Millisecond*150/100 {
			t.Errorf("wait %d was %s, want about %dms", k+1, got, want)
		}
	}
	// POST is not retried by default.
	times, _ = nil, hits.Swap(0)
	req, _ := http.NewRequest("POST", "http://"+up.hostPort()+"/down", strings.NewReader("x"))
	if resp, _ := h.do(req); resp.StatusCode != 503 || len(times) != 1 {
		t.Fatalf("POST: %d after %d attempts", resp.StatusCode, len(times))
	}
	// A body over 1 MiB is not retried.
	times = nil
	req, _ = http.NewRequest("PUT", "http://"+up.hostPort()+"/down", bytes.NewReader(make([]byte, proxy.ReplayLimit+1)))
	if resp, _ := h.do(req); resp.StatusCode != 503 || len(times) != 1 {
		t.Fatalf("large PUT: %d after %d attempts", resp.StatusCode, len(times))
	}

	h = newHarness(t, baseConfig+`retry = { count = 2, strategy = "retry_after", interval = "50ms" }`+"\n", up, i)
	times, _ = nil, hits.Swap(0)
	resp, _ = h.get("http://" + up.hostPort() + "/after")
	if resp.StatusCode != 200 || len(times) != 2 || times[1].Sub(times[0]) < 900*time.Millisecond {
		t.Fatalf("Retry-After: %d after %d attempts, %v apart", resp.StatusCode, len(times), times)
	}
	if !strings.Contains(h.logText(), "retries=1") {
		t.Fatal("the access line does not count the retry")
	}
}

func status(t *testing.T, h *harness) StatusDoc {
	t.Helper()
	var doc StatusDoc
	b, _ := json.Marshal(h.eng.Status())
	_ = json.Unmarshal(b, &doc)
	return doc
}
