// Package upstream holds the agent nodes a gateway forwards through: their
// health (active checks and passive ejection), the choice of a node for a
// request (balance, failover, a pinned node, auto by capabilities), and the
// retry policy's arithmetic. It knows nothing about serving HTTP.
package upstream

import (
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/authgress/authgress/internal/neterr"
)

// State is a node's health.
type State int32

const (
	// Unknown: not checked yet (or no check decided since start).
	Unknown State = iota
	// Healthy: the last check passed, or a request went through since.
	Healthy
	// Down: the last check failed, or eject_after connection failures in a
	// row; it returns when a check passes.
	Down
)

func (s State) String() string { return [...]string{"unknown", "healthy", "down"}[s] }

// Node is one agent (or any HTTP forward proxy) of a cluster.
type Node struct {
	Cluster      string
	Name         string
	URL          *url.URL // scheme and host:port of the node's proxy listener
	Weight       int
	Capabilities []string

	ejectAfter int32
	state      atomic.Int32
	fails      atomic.Int32 // consecutive connection failures
	lastErr    atomic.Pointer[string]
	changed    atomic.Int64 // unix nanos of the last state change
	onChange   func(n *Node, from, to State)
}

// NewNode returns a node in state Unknown.
func NewNode(cluster, name string, u *url.URL, weight int, caps []string, ejectAfter int) *Node {
	return &Node{Cluster: cluster, Name: name, URL: u, Weight: max(weight, 1), Capabilities: caps, ejectAfter: int32(max(ejectAfter, 1))}
}

// ID is "cluster/node", as the access log and /status show it.
func (n *Node) ID() string { return n.Cluster + "/" + n.Name }

// State is the node's current health.
func (n *Node) State() State { return State(n.state.Load()) }

// LastError is why the node was last marked down ("" if it never was).
func (n *Node) LastError() string {
	if p := n.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Since is when the node's state last changed (zero: never).
func (n *Node) Since() time.Time {
	if v := n.changed.Load(); v != 0 {
		return time.Unix(0, v)
	}
	return time.Time{}
}

func (n *Node) set(to State, why string) {
	from := State(n.state.Swap(int32(to)))
	if why != "" {
		n.lastErr.Store(&why)
	}
	if from != to {
		n.changed.Store(time.Now().UnixNano())
		if n.onChange != nil {
			n.onChange(n, from, to)
		}
	}
}

// Succeeded records a request that reached the node.
func (n *Node) Succeeded() {
	n.fails.Store(0)
	if n.State() != Healthy {
		n.set(Healthy, "")
	}
}

// Failed records a connection failure (nothing was sent): after
// eject_after in a row the node is ejected until a check passes.
func (n *Node) Failed(err error) {
	if n.fails.Add(1) >= n.ejectAfter && n.State() != Down {
		n.set(Down, "ejected after connection failures: "+neterr.Reason(err))
	}
}

// checked records an active check's result.
func (n *Node) checked(err error) {
	if err == nil {
		n.fails.Store(0)
		n.set(Healthy, "")
		return
	}
	n.set(Down, "health check failed: "+neterr.Reason(err))
}

// RoundTrip sends req — whose URL is the absolute target, like
// https://api.example.com/x — to the node as a forward-proxy request: the
// connection goes to the node, the request line carries the absolute URI
// (for https targets too: the node, not the gateway, talks TLS to the API).
// rt must speak HTTP/1.1 to the node.
func (n *Node) RoundTrip(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	target := req.URL
	out := *req
	out.URL = &url.URL{Scheme: n.URL.Scheme, Host: n.URL.Host,
		Opaque: target.Scheme + "://" + target.Host + target.EscapedPath(), RawQuery: target.RawQuery}
	out.Host = target.Host
	return rt.RoundTrip(&out)
}

// ErrNoNode is returned when a connection's via has no usable node.
var ErrNoNode = errors.New("no agent node is available")
