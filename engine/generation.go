package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/authgress/authgress/broker"
	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/dashboard"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/upstream"
	"github.com/authgress/authgress/vault"
)

// generation is everything built from one config; a reload builds the next
// one and swaps it in. The token cache and the tunnel registry outlive
// generations.
type generation struct {
	cfg      *conf.Config
	loadedAt time.Time
	proxy    *proxy.Proxy
	profiles *tlsprofiles.Set
	vaults   vault.Set
	prefetch []*tokencache.Slot
	// serverTLS is the agent listener's TLS ([server.tls]; nil: plain).
	serverTLS *tlsprofiles.Server
	clusters  *upstream.Set
	// adminUsers are [server.admin_auth]'s users (nil: the admin listener
	// is open).
	adminUsers *dashboard.Users
	broker     *broker.Broker     // nil: no [broker]
	stop       context.CancelFunc // ends the background work
}

func (e *Engine) build(ctx context.Context, cfg *conf.Config) (*generation, error) {
	vaults, profiles, err := buildSecrets(ctx, cfg, e.log)
	if err != nil {
		return nil, err
	}
	var prev *upstream.Set
	if old := e.cur.Load(); old != nil {
		prev = old.clusters
	}
	clusters, err := upstream.Build(cfg, profiles, prev, e.log)
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(ctx, cfg, proxy.Deps{Vaults: vaults, Profiles: profiles, Tokens: e.tokens, Log: e.log, AccessLines: e.opts.AccessLines,
		Tracing: e.opts.Tracing, Tunnels: e.tunnels, Inner: e, Clusters: clusters, Stats: e.stats})
	if err != nil {
		return nil, err
	}
	g := &generation{cfg: cfg, loadedAt: time.Now(), proxy: p, profiles: profiles, vaults: vaults, clusters: clusters, stop: func() {}}
	if a := cfg.Server.AdminAuth; a != nil {
		pw := map[string]string{}
		for i, u := range a.Users {
			v, err := vaults.Resolve(ctx, u.Password)
			if err != nil {
				return nil, fmt.Errorf("server.admin_auth.users[%d] (%s): password: %w", i, u.Name, err)
			}
			pw[u.Name] = v
		}
		g.adminUsers = dashboard.NewUsers(pw)
	}
	if cfg.Server.TLS != nil {
		if g.serverTLS, err = tlsprofiles.NewServer(cfg.Server.TLS); err != nil {
			return nil, err
		}
	}
	if err := e.buildBroker(ctx, g); err != nil {
		return nil, err
	}
	seen := map[*tokencache.Slot]bool{}
	for _, r := range p.Routes {
		if r.Token != nil {
			r.Token.SetMinRefreshInterval(cfg.Credentials[r.Credential].MinRefreshInterval.D)
		}
		if r.Token != nil && cfg.Credentials[r.Credential].Prefetch && !seen[r.Token] {
			seen[r.Token] = true
			g.prefetch = append(g.prefetch, r.Token)
		}
	}
	return g, nil
}

// buildSecrets creates vaults and profiles in dependency order: a vault needs
// its profile (client certificate), a profile may need a vault (keystore
// password). Validation has refused cycles.
func buildSecrets(ctx context.Context, cfg *conf.Config, log *slog.Logger) (vault.Set, *tlsprofiles.Set, error) {
	vaults, profiles := vault.Set{}, tlsprofiles.NewSet()
	for pending := len(cfg.Vaults) + len(cfg.Profiles); pending > 0; {
		progress := 0
		for _, name := range sortedNames(cfg.Profiles) {
			p := cfg.Profiles[name]
			if profiles.Has(name) || (p.Password.Vault != "" && vaults[p.Password.Vault] == nil) {
				continue
			}
			if err := profiles.Add(ctx, name, p, vaults.Resolve); err != nil {
				return nil, nil, err
			}
			progress++
		}
		for _, name := range sortedNames(cfg.Vaults) {
			v := cfg.Vaults[name]
			if vaults[name] != nil || (v.Profile != "" && !profiles.Has(v.Profile)) {
				continue
			}
			if err := vaults.Add(name, v, profiles.Transport(v.Profile), log); err != nil {
				return nil, nil, err
			}
			progress++
		}
		if progress == 0 {
			return nil, nil, fmt.Errorf("vaults and profiles depend on each other in a loop")
		}
		pending -= progress
	}
	return vaults, profiles, nil
}

// start runs the generation's background work: prefetch credentials'
// tokens are kept fresh, client certificate files are watched.
func (g *generation) start(log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	for _, s := range g.prefetch {
		go s.KeepFresh(ctx)
	}
	g.profiles.Watch(ctx, log)
	g.profiles.Activate()
	if g.serverTLS != nil {
		g.serverTLS.Watch(ctx, log)
	}
	g.clusters.Start(ctx)
	g.clusters.Activate()
}
