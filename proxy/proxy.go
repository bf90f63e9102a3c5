// Package proxy holds the ways in and what they share: the decide step (a
// decision with a reason per request), the per-request wrapper (proxy
// authentication, span, metrics, access log, response writing) and the
// pipeline (credential/token → upstream). Today's ways in: the forward proxy
// (absolute-URI requests and CONNECT, with interception of matched hosts).
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/intercept"
	"github.com/authgress/authgress/internal/logline"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/upstream"
	"github.com/authgress/authgress/vault"
)

// Deps are the runtime pieces a proxy is built from.
type Deps struct {
	Vaults   vault.Set
	Profiles *tlsprofiles.Set
	Tokens   *tokencache.Cache
	Log      *slog.Logger
	// AccessLines writes the access lines (one per request) in Log's
	// format without slog's per-record cost; nil: they go through Log.
	AccessLines *logline.Writer
	Tracing     bool // spans for proxied requests (the SDK exports them)
	// Clusters are the agent nodes connections may go via.
	Clusters *upstream.Set
	// Tunnels tracks intercepted tunnels across reloads (nil: a new one).
	Tunnels *Tunnels
	// Stats keeps each connection's request counters across reloads (nil:
	// a new set).
	Stats *StatsSet
	// Inner serves the requests inside intercepted tunnels; the runtime
	// passes its reload-aware entry so that a tunnel opened before a reload
	// follows the new configuration. nil: this proxy's own handler.
	Inner http.Handler
}

// Proxy is a configured authgress proxy.
type Proxy struct {
	Routes    []*Route
	Handler   *Handler
	Intercept *intercept.Authority // nil: no interception
	// Delegated are the user-token stores of the authorization_code
	// credentials (the broker's too, not only the connections'), by name.
	Delegated map[string]*tokencache.Delegated
}

// New builds the proxy from a validated config. Secret references used by
// the proxy itself (proxy user passwords, the interception CA key) are
// resolved here.
func New(ctx context.Context, cfg *conf.Config, d Deps) (*Proxy, error) {
	if d.Stats == nil {
		d.Stats = NewStatsSet()
	}
	var err error
	delegated := map[string]*tokencache.Delegated{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Credentials)) { // the first failure is the same every run
		if cfg.Credentials[name].Delegated() {
			if delegated[name], err = DelegatedCredential(ctx, cfg, name, d.Vaults, d.Profiles, d.Tokens); err != nil {
				return nil, err
			}
		}
	}
	routes, err := buildRoutes(ctx, cfg, d.Vaults, d.Profiles, d.Tokens, d.Clusters, d.Stats, delegated)
	if err != nil {
		return nil, err
	}
	guard := NewGuard(cfg.Egress.AllowPrivate)
	tunnel := tlsprofiles.NewTransport(nil, guard.DialContext)
	tunnel.ResponseHeaderTimeout = conf.DefaultUpstreamTimeout

	var auth *proxyAuth
	if cfg.Server.Auth != nil {
		pw := map[string]string{}
		for i, u := range cfg.Server.Auth.Users {
			v, err := d.Vaults.Resolve(ctx, u.Password)
			if err != nil {
				return nil, fmt.Errorf("server.auth.users[%d] (%s): password: %w", i, u.Name, err)
			}
			pw[u.Name] = v
		}
		auth = newProxyAuth(pw)
	}
	var ca *intercept.Authority
	if ic := cfg.Intercept; ic != nil {
		if ca, err = loadAuthority(ctx, ic, d.Vaults); err != nil {
			return nil, fmt.Errorf("intercept: %w", err)
		}
	}
	if d.Tunnels == nil {
		d.Tunnels = NewTunnels()
	}
	h := &Handler{
		decide:     decider{match: NewMatcher(routes), tunnelUnknown: cfg.Egress.Unmatched == "tunnel", intercept: ca != nil},
		pipeline:   &Pipeline{tunnel: tunnel},
		auth:       auth,
		guard:      guard,
		leaves:     ca,
		tunnels:    d.Tunnels,
		inner:      d.Inner,
		tunnelIdle: cfg.Server.TunnelIdleTimeout.D,
		limits:     ServerLimits{ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D, IdleTimeout: cfg.Server.IdleTimeout.D, MaxHeaderBytes: cfg.Server.MaxHeaderBytes},
		log:        d.Log,
		accessLog:  cfg.Log.Access == nil || *cfg.Log.Access,
		lines:      d.AccessLines,
		tracing:    d.Tracing,
		gp:         newSplicer(d.Log),
	}
	if h.inner == nil {
		h.inner = h
	}
	h.reverse = map[string]*Route{}
	for _, r := range routes {
		if r.Listen != "" {
			h.reverse[r.Name] = r
		}
	}
	return &Proxy{Routes: routes, Handler: h, Intercept: ca, Delegated: delegated}, nil
}

func loadAuthority(ctx context.Context, ic *conf.Intercept, vaults vault.Set) (*intercept.Authority, error) {
	certPEM, err := os.ReadFile(ic.CACert)
	if err != nil {
		return nil, fmt.Errorf("ca_cert: cannot read %s", ic.CACert)
	}
	key, err := vaults.Resolve(ctx, ic.CAKey)
	if err != nil {
		return nil, fmt.Errorf("ca_key: %w", err)
	}
	return intercept.Load(certPEM, []byte(key), ic.CacheSize, ic.LeafTTL.D)
}
