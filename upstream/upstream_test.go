package upstream

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
)

func nodes(states ...State) []*Node {
	var out []*Node
	for i, s := range states {
		n := NewNode("c", string(rune('a'+i)), &url.URL{Scheme: "https", Host: "h:1"}, 1, nil, 3)
		n.state.Store(int32(s))
		out = append(out, n)
	}
	return out
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		states  []State
		mode    Mode
		counter uint64
		skip    []int
		want    string // node name, "" for none
	}{
		{"failover: first healthy", []State{Healthy, Healthy}, Failover, 7, nil, "a"},
		{"failover: past a down node", []State{Down, Healthy, Healthy}, Failover, 0, nil, "b"},
		{"failover: healthy before unknown", []State{Unknown, Healthy}, Failover, 0, nil, "b"},
		{"failover: unknown when none is healthy", []State{Down, Unknown}, Failover, 0, nil, "b"},
		{"failover: none usable", []State{Down, Down}, Failover, 0, nil, ""},
		{"failover: a tried node is skipped", []State{Healthy, Healthy}, Failover, 0, []int{0}, "b"},
		{"balance: counter 0", []State{Healthy, Healthy, Healthy}, Balance, 0, nil, "a"},
		{"balance: counter 4", []State{Healthy, Healthy, Healthy}, Balance, 4, nil, "b"},
		{"balance: only over healthy", []State{Healthy, Down, Healthy}, Balance, 1, nil, "c"},
		{"balance: unknown tier", []State{Down, Unknown, Unknown}, Balance, 1, nil, "c"},
		{"balance: all tried", []State{Healthy, Healthy}, Balance, 0, []int{0, 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := nodes(tc.states...)
			var skip func(*Node) bool
			if tc.skip != nil {
				skip = func(n *Node) bool {
					for _, i := range tc.skip {
						if ns[i] == n {
							return true
						}
					}
					return false
				}
			}
			got := ""
			if n := Select(ns, tc.mode, tc.counter, skip); n != nil {
				got = n.Name
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBalanceFollowsWeights(t *testing.T) {
	ns := nodes(Healthy, Healthy, Healthy)
	ns[0].Weight, ns[1].Weight, ns[2].Weight = 1, 2, 3
	count := map[string]int{}
	for i := range uint64(600) {
		count[Select(ns, Balance, i, nil).Name]++
	}
	if count["a"] != 100 || count["b"] != 200 || count["c"] != 300 {
		t.Fatalf("600 picks with weights 1:2:3 went %v", count)
	}
}

func TestPassiveEjectionAndReturn(t *testing.T) {
	n := nodes(Healthy)[0]
	var changes []string
	n.onChange = func(_ *Node, from, to State) { changes = append(changes, from.String()+">"+to.String()) }
	err := errors.New("connection refused")
	n.Failed(err)
	n.Failed(err)
	if n.State() != Healthy {
		t.Fatal("ejected before eject_after failures")
	}
	n.Succeeded() // a success in between resets the count
	n.Failed(err)
	n.Failed(err)
	if n.State() != Healthy {
		t.Fatal("failures that were not consecutive ejected the node")
	}
	n.Failed(err)
	if n.State() != Down || n.LastError() == "" {
		t.Fatalf("3 consecutive failures: %s %q", n.State(), n.LastError())
	}
	n.checked(nil) // a passing check brings it back
	if n.State() != Healthy || len(changes) != 2 {
		t.Fatalf("state %s, changes %v", n.State(), changes)
	}
}

func TestRetryPolicy(t *testing.T) {
	p := &Policy{Count: 3, Strategy: "exponential", Interval: 100 * time.Millisecond, MaxInterval: 30 * time.Second, MaxElapsed: time.Minute,
		OnStatus: []int{502, 503, 504}, OnError: []string{"connect", "reset"}, Methods: []string{"GET", "PUT"}, Jitter: func() float64 { return 1 }}
	for n, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if got := p.Delay(n, nil, time.Now()); got != want {
			t.Errorf("exponential wait %d = %s, want %s", n, got, want)
		}
	}
	p.Jitter = nil
	for range 100 {
		if d := p.Delay(1, nil, time.Now()); d < 180*time.Millisecond || d > 220*time.Millisecond {
			t.Fatalf("jittered wait %s is not 200ms ± 10%%", d)
		}
	}
	p.MaxInterval = 150 * time.Millisecond
	if got := p.Delay(5, nil, time.Now()); got != 150*time.Millisecond {
		t.Errorf("max_interval: %s", got)
	}

	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ra := func(v string) *http.Response { return &http.Response{Header: http.Header{"Retry-After": {v}}} }
	p.Strategy = "retry_after"
	for _, tc := range []struct {
		resp *http.Response
		want time.Duration
	}{
		{ra("3"), 3 * time.Second},
		{ra(now.Add(5 * time.Second).Format(http.TimeFormat)), 5 * time.Second},
		{ra("3600"), time.Minute}, // capped by max_elapsed
		{ra("soon"), 100 * time.Millisecond},
		{nil, 100 * time.Millisecond},
	} {
		if got := p.Delay(0, tc.resp, now); got != tc.want {
			t.Errorf("retry_after %v: %s, want %s", tc.resp, got, tc.want)
		}
	}
	p.Strategy = "fixed"
	if got := p.Delay(3, nil, now); got != 100*time.Millisecond {
		t.Errorf("fixed: %s", got)
	}

	for _, tc := range []struct {
		method, kind string
		status       int
		want         bool
	}{
		{"GET", "", 503, true},
		{"GET", "", 500, false},
		{"POST", "", 503, false}, // not in methods
		{"PUT", "connect", 0, true},
		{"GET", "timeout", 0, false}, // not in on_error
		{"GET", "reset", 0, true},
	} {
		if got := p.Retries(tc.method, tc.status, tc.kind); got != tc.want {
			t.Errorf("Retries(%s, %d, %q) = %v", tc.method, tc.status, tc.kind, got)
		}
	}
}

// TestWorkedExampleWithDefaults: the worked example, count 3, exponential,
// interval 10s and nothing else, waits 10s, 20s and 40s: no default
// max_interval cuts the third wait short (max_elapsed still bounds the
// whole); a max_interval that is set caps each wait.
func TestWorkedExampleWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		retry string
		want  []time.Duration
	}{
		{`{ count = 3, strategy = "exponential", interval = "10s" }`, []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second}},
		{`{ count = 3, strategy = "exponential", interval = "10s", max_interval = "30s" }`, []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}},
	} {
		cfg, probs := conf.Parse("t.toml", []byte("[connections.api]\nhosts = [\"api.example.com\"]\nretry = "+tc.retry+"\n"))
		if probs.HasErrors() {
			t.Fatal(probs)
		}
		p := NewPolicy(cfg.Connections["api"].Retry)
		p.Jitter = func() float64 { return 1 }
		for n, want := range tc.want {
			if got := p.Delay(n, nil, time.Now()); got != want {
				t.Errorf("retry = %s: wait %d is %s, want %s", tc.retry, n+1, got, want)
			}
		}
		if p.MaxElapsed != 2*time.Minute {
			t.Errorf("max_elapsed defaults to %s", p.MaxElapsed)
		}
	}
	if _, probs := conf.Parse("t.toml", []byte("[connections.api]\nhosts = [\"api.example.com\"]\nretry = { count = 1, max_interval = \"0s\" }\n")); !probs.HasErrors() {
		t.Error("max_interval = \"0s\" is accepted")
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	ns := nodes(Down, Healthy, Healthy)
	if n := testing.AllocsPerRun(1000, func() { _ = Select(ns, Balance, 7, nil) }); n != 0 {
		t.Fatalf("Select allocates %v times", n)
	}
}
