package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// runtimeSet is everything built from one config.
type runtimeSet struct {
	cfg      *conf.Config
	loadedAt time.Time
	proxy    *proxy.Proxy
	profiles *tlsprofiles.Set
	vaults   vault.Set
	prefetch []*tokencache.Slot
	stop     context.CancelFunc // ends the prefetch loops
}

// build creates the runtime of cfg. tokens is shared across reloads.
func build(ctx context.Context, cfg *conf.Config, log *slog.Logger, tokens *tokencache.Cache, tracing bool) (*runtimeSet, error) {
	vaults, profiles, err := buildSecrets(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(ctx, cfg, proxy.Deps{Vaults: vaults, Profiles: profiles, Tokens: tokens, Log: log, Tracing: tracing})
	if err != nil {
		return nil, err
	}
	rt := &runtimeSet{cfg: cfg, loadedAt: time.Now(), proxy: p, profiles: profiles, vaults: vaults, stop: func() {}}
	seen := map[*tokencache.Slot]bool{}
	for _, r := range p.Routes {
		if r.Token != nil {
			r.Token.SetMinRefreshInterval(cfg.Credentials[r.Credential].MinRefreshInterval.D)
		}
		if r.Token != nil && cfg.Credentials[r.Credential].Prefetch && !seen[r.Token] {
			seen[r.Token] = true
			rt.prefetch = append(rt.prefetch, r.Token)
		}
	}
	return rt, nil
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

// start makes rt the live runtime's background work: prefetch credentials'
// tokens are kept fresh, client certificate files are watched.
func (rt *runtimeSet) start(log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	rt.stop = cancel
	for _, s := range rt.prefetch {
		go s.KeepFresh(ctx)
	}
	rt.profiles.Watch(ctx, log)
	rt.profiles.Activate()
}

// app serves whichever runtime is current; SIGHUP swaps it.
type app struct {
	path    string
	log     *slog.Logger
	tokens  *tokencache.Cache
	tracing bool
	cur     atomic.Pointer[runtimeSet]
	mu      sync.Mutex // one reload at a time
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.cur.Load().proxy.Forward.ServeHTTP(w, r)
}

// reload reads the config file again. A file with errors is logged and the
// running config keeps serving. Tokens of credentials whose definition did
// not change survive; connections the new file removes stop matching.
func (a *app) reload(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg, probs := conf.Load(a.path)
	if probs.HasErrors() {
		for _, p := range probs {
			if !p.Warning {
				a.log.Error("reload rejected: config error", "problem", p.String())
			}
		}
		return fmt.Errorf("%s: %d error(s); the previous configuration keeps serving", a.path, countErrors(probs))
	}
	old := a.cur.Load()
	rt, err := build(ctx, cfg, a.log, a.tokens, a.tracing)
	if err != nil {
		a.log.Error("reload rejected", "error", err.Error())
		return fmt.Errorf("%w; the previous configuration keeps serving", err)
	}
	for _, p := range probs {
		a.log.Warn("config", "problem", p.String())
	}
	warnRestartOnly(a.log, old.cfg, cfg)
	rt.start(a.log)
	a.cur.Store(rt)
	keep := map[string]bool{}
	for _, r := range rt.proxy.Routes {
		if r.Token != nil {
			keep[r.Token.Key] = true
		}
	}
	a.tokens.Retain(keep)
	old.stop()
	old.profiles.CloseIdle() // in-flight requests finish on their connections
	a.log.Info("config reloaded", "connections", len(rt.proxy.Routes), "credentials", len(cfg.Credentials), "token_slots", len(keep))
	return nil
}

// warnRestartOnly names settings a reload cannot change.
func warnRestartOnly(log *slog.Logger, old, cur *conf.Config) {
	if !reflect.DeepEqual(old.Server, cur.Server) {
		log.Warn("reload: [server] changed; listeners and server timeouts keep their old values until restart")
	}
	if !reflect.DeepEqual(old.Log, cur.Log) {
		log.Warn("reload: [log] changed; the log settings keep their old values until restart")
	}
}
