// Package proxy holds the request pipeline (match → credential/token →
// transport → response) and the ways in that feed it: today the forward proxy
// (HTTP_PROXY, with CONNECT decided by the egress policy).
package proxy

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// Deps are the runtime pieces a proxy is built from.
type Deps struct {
	Vaults   vault.Set
	Profiles *tlsprofiles.Set
	Tokens   *tokencache.Cache
	Log      *slog.Logger
	Tracing  bool // spans for proxied requests (the SDK exports them)
}

// Proxy is a configured authgress proxy.
type Proxy struct {
	Routes   []*Route
	Pipeline *Pipeline
	Forward  *Forward
}

// New builds the proxy from a validated config. Secret references used by
// the proxy itself (proxy user passwords) are resolved here.
func New(ctx context.Context, cfg *conf.Config, d Deps) (*Proxy, error) {
	routes, err := buildRoutes(cfg, d.Vaults, d.Profiles, d.Tokens)
	if err != nil {
		return nil, err
	}
	guard := NewGuard(cfg.Egress.AllowPrivate)
	tunnel := tlsprofiles.NewTransport(nil, guard.DialContext)
	tunnel.ResponseHeaderTimeout = conf.DefaultUpstreamTimeout
	p := &Pipeline{match: NewMatcher(routes), tunnelUnknown: cfg.Egress.Unmatched == "tunnel", tunnel: tunnel}

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
	access := cfg.Log.Access == nil || *cfg.Log.Access
	fwd := newForward(p, auth, guard, cfg.Server.TunnelIdleTimeout.D, d.Log, access, d.Tracing)
	return &Proxy{Routes: routes, Pipeline: p, Forward: fwd}, nil
}
