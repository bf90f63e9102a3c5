package tlsprofiles

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgress/authgress/conf"
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
	return newTransport(p, dial, []string{"h2", "http/1.1"}, 0)
}

// NewNodeTransport returns a transport to HTTP forward proxies (agent
// nodes): TLS with the profile (its client certificate is the gateway's
// identity), HTTP/1.1 only, since proxy requests carry absolute URIs,
// which HTTP/2 cannot. connect bounds the dial and the TLS handshake
// together (0: the upstream defaults), so that a node that accepts
// connections but never answers (a frozen process) is passed over for
// another as soon as a health check would fail it.
func NewNodeTransport(p *Profile, connect time.Duration) *http.Transport {
	t := newTransport(p, nil, []string{"http/1.1"}, connect)
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return t
}

func newTransport(p *Profile, dial DialFunc, protos []string, connect time.Duration) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	cfg := p.ClientConfig()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = protos
	}
	c := connector{dial: dial, tls: cfg, connect: connect}
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
	}
}

// connector dials upstream connections and types their failures.
type connector struct {
	dial DialFunc
	tls  *tls.Config
	// connect bounds the dial and the handshake together (0: dialTimeout
	// and tlsHandshakeTimeout, each).
	connect time.Duration
}

func (c connector) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
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
func (c connector) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
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
// rotates, new requests go to a fresh http.Transport (new pool, new
// handshakes); the old one is drained: its connections are closed as they
// go idle, so no busy keep-alive connection keeps the old identity.
type Transport struct {
	base *http.Transport
	cur  atomic.Pointer[http.Transport]
}

func newRotatingTransport(base *http.Transport) *Transport {
	t := &Transport{base: base}
	t.cur.Store(base.Clone())
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

// CloseIdleConnections closes the current pool's idle connections.
func (t *Transport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

// renew starts a new pool and drains the old one.
func (t *Transport) renew() {
	old := t.cur.Swap(t.base.Clone())
	old.CloseIdleConnections()
	go func() {
		for _, d := range []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, idleConnTimeout} {
			time.Sleep(d)
			old.CloseIdleConnections()
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

// NewSet returns an empty set (its default transport uses system trust).
func NewSet() *Set {
	return &Set{profiles: map[string]*Profile{}, transports: map[string]*Transport{}, def: newRotatingTransport(NewTransport(nil, nil)),
		upstream: map[upstreamKey]*Transport{}}
}

// Add loads the profile name; resolve reads its keystore password.
func (s *Set) Add(ctx context.Context, name string, p *conf.Profile, resolve Resolver) error {
	prof, err := Load(ctx, name, p, resolve)
	if err != nil {
		return err
	}
	s.profiles[name] = prof
	s.transports[name] = newRotatingTransport(NewTransport(prof, nil))
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
	base := s.Transport(name).base.Clone()
	base.ResponseHeaderTimeout = timeout
	t := newRotatingTransport(base)
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
	base := NewNodeTransport(p, connect)
	base.ResponseHeaderTimeout = timeout
	t := newRotatingTransport(base)
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
