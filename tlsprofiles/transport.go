package tlsprofiles

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/h1"
	"github.com/authgress/authgress/internal/neterr"
)

// Transport settings shared by every upstream transport.
const (
	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	maxIdlePerHost      = 256
)

// DialFunc dials a TCP connection.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewTransport returns an upstream transport using the profile's TLS settings
// (nil: system roots, TLS 1.2+). dial replaces the default dialer when set.
// It never reads proxy settings from the environment and never decompresses:
// a proxy passes bodies through as they are. Dial and TLS handshake failures
// come back as *neterr.ConnectError, so callers can tell "nothing was sent"
// from a failure after the request went out.
func NewTransport(p *Profile, dial DialFunc) *http.Transport {
	t, _ := newTransport(p, dial, []string{"h2", "http/1.1"}, 0)
	return t
}

// newNodeTransport returns a transport to HTTP forward proxies (agent
// nodes): TLS with the profile (its client certificate is the gateway's
// identity), HTTP/1.1 only, since proxy requests carry absolute URIs,
// which HTTP/2 cannot. connect bounds the dial and the TLS handshake
// together (0: the upstream defaults), so that a node that accepts
// connections but never answers (a frozen process) is passed over for
// another as soon as a health check would fail it.
func newNodeTransport(p *Profile, connect time.Duration) (*http.Transport, *connector) {
	t, c := newTransport(p, nil, []string{"http/1.1"}, connect)
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return t, c
}

func newTransport(p *Profile, dial DialFunc, protos []string, connect time.Duration) (*http.Transport, *connector) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	cfg := p.ClientConfig()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = protos
	}
	c := &connector{dial: dial, tls: cfg, connect: connect}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           c.dialTCP,
		DialTLSContext:        c.dialTLS,
		TLSClientConfig:       cfg,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}, c
}

// connector dials upstream connections and types their failures.
type connector struct {
	dial DialFunc
	tls  *tls.Config
	// connect bounds the dial and the handshake together (0: dialTimeout
	// and tlsHandshakeTimeout, each).
	connect time.Duration
}

func (c *connector) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.connect > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.connect)
		defer cancel()
	}
	conn, err := c.dial(ctx, network, addr)
	if err != nil {
		return nil, &neterr.ConnectError{Err: err}
	}
	return conn, nil
}

// dialTLS dials and completes the TLS handshake within tlsHandshakeTimeout.
// The server name is the address's host unless the profile overrides it.
func (c *connector) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	handshake := tlsHandshakeTimeout
	if c.connect > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.connect)
		defer cancel()
		handshake = c.connect
	}
	conn, err := c.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := c.tls
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshake)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, &neterr.ConnectError{TLS: true, Err: err}
	}
	return tc, nil
}

// Transport is a profile's upstream transport. After its client identity
// rotates, new requests go to fresh pools (new handshakes); the old ones
// are drained: their connections are closed as they go idle, so no busy
// keep-alive connection keeps the old identity.
//
// An upstream transport (Set.Upstream, Set.Node) sends HTTP/1.1 through
// the lean client of internal/h1: every plain http:// request, and https://
// requests to hosts whose ALPN answer was http/1.1 (or none). A host whose
// TLS handshake settles on h2 is remembered and served by the
// http.Transport from then on (the handshaken connection is handed to it).
// Other transports (token endpoints, vaults) and every transport when
// AUTHGRESS_UPSTREAM_CLIENT=net/http use the http.Transport alone.
type Transport struct {
	base *http.Transport
	dial *connector // base's dialers
	lean bool       // HTTP/1.1 goes through an h1.Client
	cur  atomic.Pointer[pools]
}

// pools is one generation of a Transport's connection pools.
type pools struct {
	tr *http.Transport
	h1 *h1.Client // nil: everything goes through tr
	// h2 holds the hosts whose ALPN chose h2 (they go through tr).
	h2 sync.Map
	// handoff holds handshaken h2 connections made by the h1 client, for
	// tr's next dial to the same address.
	mu      sync.Mutex
	handoff map[string][]net.Conn
}

// leanHTTP1 is off when AUTHGRESS_UPSTREAM_CLIENT=net/http: every upstream
// request then goes through net/http's Transport, as before the lean client.
var leanHTTP1 = os.Getenv("AUTHGRESS_UPSTREAM_CLIENT") != "net/http"

func newRotatingTransport(base *http.Transport, dial *connector, lean bool) *Transport {
	t := &Transport{base: base, dial: dial, lean: lean && leanHTTP1}
	t.cur.Store(t.newPools())
	return t
}

func (t *Transport) newPools() *pools {
	p := &pools{tr: t.base.Clone()}
	if !t.lean {
		return p
	}
	p.h1 = h1.New(h1.Config{Dial: t.dial.dialTCP, DialTLS: t.dial.dialTLS,
		ResponseHeaderTimeout: t.base.ResponseHeaderTimeout, IdleTimeout: t.base.IdleConnTimeout, MaxIdlePerHost: t.base.MaxIdleConnsPerHost})
	dialTLS := p.tr.DialTLSContext
	p.tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if c := p.take(addr); c != nil {
			return c, nil
		}
		return dialTLS(ctx, network, addr)
	}
	return p
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	p := t.cur.Load()
	if p.h1 == nil || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
		return p.tr.RoundTrip(r)
	}
	if r.URL.Scheme == "https" {
		if _, ok := p.h2.Load(r.URL.Host); ok {
			return p.tr.RoundTrip(r)
		}
	}
	resp, err := p.h1.RoundTrip(r)
	if err == nil {
		return resp, nil
	}
	var pe *h1.ProtocolError
	if !errors.As(err, &pe) {
		return nil, err
	}
	// The host speaks h2: hand the connection to the http.Transport.
	p.h2.Store(r.URL.Host, struct{}{})
	p.give(pe.Addr, pe.Conn)
	resp, err = p.tr.RoundTrip(r)
	if c := p.takeConn(pe.Addr, pe.Conn); c != nil {
		_ = c.Close() // tr had a connection already
	}
	return resp, err
}

func (p *pools) give(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.handoff == nil {
		p.handoff = map[string][]net.Conn{}
	}
	p.handoff[addr] = append(p.handoff[addr], c)
}

// take returns a handed-off connection to addr, if any.
func (p *pools) take(addr string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.handoff[addr]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	if len(cs) == 1 {
		delete(p.handoff, addr)
	} else {
		p.handoff[addr] = cs[:len(cs)-1]
	}
	return c
}

// takeConn removes c from the hand-off list if it is still there.
func (p *pools) takeConn(addr string, c net.Conn) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.handoff[addr]
	for i, x := range cs {
		if x == c {
			p.handoff[addr] = append(cs[:i], cs[i+1:]...)
			if len(p.handoff[addr]) == 0 {
				delete(p.handoff, addr)
			}
			return c
		}
	}
	return nil
}

func (p *pools) closeIdle() {
	p.tr.CloseIdleConnections()
	if p.h1 != nil {
		p.h1.CloseIdleConnections()
	}
}

// CloseIdleConnections closes the current pools' idle connections.
func (t *Transport) CloseIdleConnections() { t.cur.Load().closeIdle() }

// renew starts new pools and drains the old ones.
func (t *Transport) renew() {
	old := t.cur.Swap(t.newPools())
	old.closeIdle()
	go func() {
		for _, d := range []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, idleConnTimeout} {
			time.Sleep(d)
			old.closeIdle()
		}
	}()
}

// Set holds the loaded profiles and one transport per profile (and per
// response-header timeout: upstream transports enforce a connection's
// timeout themselves, without per-request timers).
type Set struct {
	profiles   map[string]*Profile
	transports map[string]*Transport
	def        *Transport

	mu       sync.Mutex
	upstream map[upstreamKey]*Transport
}

type upstreamKey struct {
	profile string
	timeout time.Duration
	node    bool          // a transport to agent nodes
	connect time.Duration // nodes: the bound on dial and handshake
}

// newProfileTransport is a profile's transport for token endpoints and
// vaults (net/http's Transport alone).
func newProfileTransport(p *Profile) *Transport {
	base, dial := newTransport(p, nil, []string{"h2", "http/1.1"}, 0)
	return newRotatingTransport(base, dial, false)
}

// NewSet returns an empty set (its default transport uses system trust).
func NewSet() *Set {
	return &Set{profiles: map[string]*Profile{}, transports: map[string]*Transport{}, def: newProfileTransport(nil),
		upstream: map[upstreamKey]*Transport{}}
}

// Add loads the profile name; resolve reads its keystore password.
func (s *Set) Add(ctx context.Context, name string, p *conf.Profile, resolve Resolver) error {
	prof, err := Load(ctx, name, p, resolve)
	if err != nil {
		return err
	}
	s.profiles[name] = prof
	s.transports[name] = newProfileTransport(prof)
	return nil
}

// Has reports whether the profile name is loaded.
func (s *Set) Has(name string) bool { _, ok := s.profiles[name]; return ok }

// Profile returns the named profile (nil for "").
func (s *Set) Profile(name string) (*Profile, error) {
	if name == "" {
		return nil, nil
	}
	p, ok := s.profiles[name]
	if !ok {
		return nil, fmt.Errorf("profile %q is not defined", name)
	}
	return p, nil
}

// Names returns the profile names, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.profiles))
	for n := range s.profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Transport returns the transport of the named profile ("" for the default).
func (s *Set) Transport(name string) *Transport {
	if t, ok := s.transports[name]; ok {
		return t
	}
	return s.def
}

// Upstream returns the profile's transport for upstream requests that must
// see response headers within timeout (an error saying "timeout awaiting
// response headers" otherwise). Connections with the same profile and
// timeout share it; each has its own pool, so identities never mix.
func (s *Set) Upstream(name string, timeout time.Duration) *Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := upstreamKey{name, timeout, false, 0}
	if t, ok := s.upstream[k]; ok {
		return t
	}
	pt := s.Transport(name)
	base := pt.base.Clone()
	base.ResponseHeaderTimeout = timeout
	t := newRotatingTransport(base, pt.dial, true)
	s.upstream[k] = t
	return t
}

// Node returns the profile's transport to agent nodes for requests that
// must see response headers within timeout, whose connections must be
// dialled and handshaken within connect (the cluster's health_timeout);
// like Upstream, one per (profile, timeout, connect), renewed when the
// profile's identity rotates.
func (s *Set) Node(name string, timeout, connect time.Duration) *Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := upstreamKey{name, timeout, true, connect}
	if t, ok := s.upstream[k]; ok {
		return t
	}
	p := s.profiles[name] // nil for "": system roots, no client certificate
	base, dial := newNodeTransport(p, connect)
	base.ResponseHeaderTimeout = timeout
	t := newRotatingTransport(base, dial, true)
	s.upstream[k] = t
	return t
}

// CloseIdle closes idle connections of every transport.
func (s *Set) CloseIdle() {
	s.def.CloseIdleConnections()
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.upstream {
		t.CloseIdleConnections()
	}
}

// renew starts new pools for every transport of a profile (after rotation).
func (s *Set) renew(name string) {
	s.transports[name].renew()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.upstream {
		if k.profile == name {
			t.renew()
		}
	}
}

// Watch polls every client identity's files until ctx ends. After a
// rotation new requests handshake with the new certificate on new
// connections; in-flight requests finish on theirs.
func (s *Set) Watch(ctx context.Context, log *slog.Logger) {
	for name, p := range s.profiles {
		if p.Identity == nil {
			continue
		}
		go s.watch(ctx, log, name, p)
	}
}

func (s *Set) watch(ctx context.Context, log *slog.Logger, name string, p *Profile) {
	p.Identity.watch(ctx, p.watch, log.With("profile", name), "client certificate", func() { s.renew(name) })
}
