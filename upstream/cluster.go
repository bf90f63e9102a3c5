package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tlsprofiles"
)

// Cluster is a named set of nodes with a selection mode and a health check.
type Cluster struct {
	Name    string
	Mode    Mode
	Nodes   []*Node
	Profile string // the profile nodes are reached with ("" = system roots)

	next      atomic.Uint64
	tls       *tls.Config // the profile's client config, for checks
	interval  time.Duration
	timeout   time.Duration
	healthURL string
	check     http.RoundTripper // for health_url requests
}

// Set is every configured cluster.
type Set struct {
	clusters map[string]*Cluster
	names    []string
	log      *slog.Logger
}

// Build makes the clusters of cfg. Nodes that prev (the set before a
// reload) has with the same cluster, name and URL keep their health.
func Build(cfg *conf.Config, profiles *tlsprofiles.Set, prev *Set, log *slog.Logger) (*Set, error) {
	s := &Set{clusters: map[string]*Cluster{}, log: log}
	for name, c := range cfg.Clusters {
		prof, err := profiles.Profile(c.Profile)
		if err != nil {
			return nil, fmt.Errorf("clusters.%s: %w", name, err)
		}
		cl := &Cluster{Name: name, Mode: Failover, Profile: c.Profile, tls: prof.ClientConfig(),
			interval: c.HealthInterval.D, timeout: c.HealthTimeout.D, healthURL: c.HealthURL,
			check: profiles.Node(c.Profile, c.HealthTimeout.D, c.HealthTimeout.D)}
		if c.Mode == "balance" {
			cl.Mode = Balance
		}
		for _, n := range c.Nodes {
			node := NewNode(name, n.Name, n.Parsed, n.Weight, n.Capabilities, c.EjectAfter)
			node.onChange = s.logChange
			if old := prev.node(name, n.Name); old != nil && old.URL.String() == node.URL.String() {
				node.state.Store(old.state.Load())
				node.lastErr.Store(old.lastErr.Load())
				node.changed.Store(old.changed.Load())
			}
			cl.Nodes = append(cl.Nodes, node)
		}
		s.clusters[name] = cl
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

func (s *Set) logChange(n *Node, from, to State) {
	if s.log == nil {
		return
	}
	if to == Down {
		s.log.Warn("node down", "node", n.ID(), "was", from.String(), "reason", n.LastError())
	} else {
		s.log.Info("node "+to.String(), "node", n.ID(), "was", from.String())
	}
}

func (s *Set) node(cluster, name string) *Node {
	if s == nil {
		return nil
	}
	cl := s.clusters[cluster]
	if cl == nil {
		return nil
	}
	for _, n := range cl.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Clusters returns the clusters in name order.
func (s *Set) Clusters() []*Cluster {
	out := make([]*Cluster, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, s.clusters[n])
	}
	return out
}

// Via resolves a connection's via: "cluster" (the cluster's mode),
// "cluster/node" (that node only: no reassignment) or "auto" (balance
// over every node of every cluster that has all of caps).
func (s *Set) Via(via string, caps []string) (*Via, error) {
	if via == "auto" {
		v := &Via{Name: via, mode: Balance, next: new(atomic.Uint64)}
		for _, cl := range s.Clusters() {
			for _, n := range cl.Nodes {
				if hasAll(n.Capabilities, caps) {
					v.nodes = append(v.nodes, n)
				}
			}
		}
		if len(v.nodes) == 0 {
			return nil, fmt.Errorf("via auto: no node has all of %v", caps)
		}
		return v, nil
	}
	cluster, name, pinned := strings.Cut(via, "/")
	cl := s.clusters[cluster]
	if cl == nil {
		return nil, fmt.Errorf("via %q: cluster %q is not defined", via, cluster)
	}
	if !pinned {
		return &Via{Name: via, nodes: cl.Nodes, mode: cl.Mode, next: &cl.next}, nil
	}
	n := s.node(cluster, name)
	if n == nil {
		return nil, fmt.Errorf("via %q: cluster %q has no node %q", via, cluster, name)
	}
	return &Via{Name: via, nodes: []*Node{n}, mode: Failover, next: &cl.next}, nil
}

// Cluster returns the named cluster (nil if there is none).
func (s *Set) Cluster(name string) *Cluster { return s.clusters[name] }

// ConnectTimeout bounds a connection to a node of the cluster, dial and
// TLS handshake together: its health_timeout. A node that cannot be
// connected to within it would fail its health check too; the request
// goes to another node (nothing was sent).
func (cl *Cluster) ConnectTimeout() time.Duration { return cl.timeout }

func hasAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Start runs the active health checks until ctx ends: every interval, each
// node gets a TCP connect and TLS handshake with the cluster's profile and,
// with health_url, one request that must get any HTTP response in time.
// The first round runs at once.
func (s *Set) Start(ctx context.Context) {
	for _, cl := range s.Clusters() {
		go cl.run(ctx)
	}
}

func (cl *Cluster) run(ctx context.Context) {
	t := time.NewTicker(cl.interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, n := range cl.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := cl.Check(ctx, n)
				if ctx.Err() == nil {
					n.checked(err)
				}
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check runs one active health check of n.
func (cl *Cluster) Check(ctx context.Context, n *Node) error {
	ctx, cancel := context.WithTimeout(ctx, cl.timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", n.URL.Host)
	if err != nil {
		return err
	}
	if n.URL.Scheme == "https" {
		cfg := cl.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = n.URL.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		err = tc.HandshakeContext(ctx)
		conn = tc
	}
	_ = conn.Close()
	if err != nil || cl.healthURL == "" {
		return err
	}
	var req *http.Request
	if strings.HasPrefix(cl.healthURL, "/") { // a path on the node itself, e.g. an agent's /healthz
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, n.URL.Scheme+"://"+n.URL.Host+cl.healthURL, nil)
		if err != nil {
			return err
		}
		resp, err := cl.check.RoundTrip(req)
		return drained(resp, err)
	}
	u, err := url.Parse(cl.healthURL)
	if err != nil {
		return err
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := n.RoundTrip(cl.check, req)
	return drained(resp, err)
}

// drained: any HTTP response passes the check.
func drained(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.Body.Close()
}
