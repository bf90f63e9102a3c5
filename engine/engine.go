// Package engine builds a running authgress from a config and owns its
// lifecycle: vaults, profiles, the token cache, the proxy, its listeners and
// every background task (prefetch, certificate watchers). New builds, Start
// listens, Reload swaps the configuration, Shutdown drains and Close stops
// whatever is left. The command and the tests use the same engine.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/dashboard"
	"github.com/authgress/authgress/internal/logline"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/rediscache"
	"github.com/authgress/authgress/tokencache"
)

// Options are the process-wide settings an engine runs with.
type Options struct {
	Log *slog.Logger // nil: discard
	// AccessLines writes access lines in Log's format and to its output,
	// without slog's per-record cost (nil: through Log).
	AccessLines *logline.Writer
	Tracing     bool         // spans for proxied requests
	Metrics     http.Handler // served on the admin listener's /metrics (nil: none)
	Version     string       // reported by /status
}

// Engine is a running (or ready to run) authgress.
type Engine struct {
	opts    Options
	log     *slog.Logger
	tokens  *tokencache.Cache
	tunnels *proxy.Tunnels
	stats   *proxy.StatsSet // per-connection request counters, across reloads
	// dashboard is the admin listener's page; its CSRF token lives as long
	// as the process.
	dashboard *dashboard.Dashboard
	cur       atomic.Pointer[generation]
	mu        sync.Mutex // one reload at a time

	listeners listenerSet
	errc      chan error
	started   bool

	shared *rediscache.Store // the token cache's shared level: [cache] type = "redis" (nil: memory)
}

// New builds an engine from a validated config without listening. Vault
// secrets needed to build (keystore passwords, proxy passwords, the CA key)
// are resolved now, so a config that cannot run fails here.
func New(ctx context.Context, cfg *conf.Config, opts Options) (*Engine, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opts: opts, log: opts.Log, tokens: tokencache.New(opts.Log), tunnels: proxy.NewTunnels(), stats: proxy.NewStatsSet(), errc: make(chan error, 16),
		listeners: listenerSet{byKey: map[string]*listener{}}}
	e.dashboard = dashboard.New(dashboard.Options{Version: opts.Version, Test: e.testForDashboard})
	g, err := e.build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.cur.Store(g)
	if err := e.openSharedCache(ctx, cfg, g); err != nil {
		return nil, err
	}
	return e, nil
}

// ServeHTTP is the proxy listener's entry: it hands each request to the
// current configuration's proxy, so a reload applies to the next request.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.cur.Load().proxy.Handler.ServeHTTP(w, r)
}

// Config is the configuration being served.
func (e *Engine) Config() *conf.Config { return e.cur.Load().cfg }

// Routes are the current connections at run time.
func (e *Engine) Routes() []*proxy.Route { return e.cur.Load().proxy.Routes }

// Route returns the named connection's route, or nil.
func (e *Engine) Route(name string) *proxy.Route {
	for _, r := range e.Routes() {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Do sends one absolute-URI request through the pipeline without a
// listener (authgress test).
func (e *Engine) Do(req *http.Request) (*http.Response, string, string) {
	return e.cur.Load().proxy.Handler.Do(req)
}

// TokenSource returns a fresh (uncached) token source for a credential
// with the given scopes (authgress token).
func (e *Engine) TokenSource(ctx context.Context, credential string, scopes []string) (tokencache.Source, error) {
	g := e.cur.Load()
	_, src, err := proxy.CredentialSource(ctx, g.cfg, credential, scopes, g.vaults, g.profiles)
	return src, err
}

// Start listens on the proxy, admin and reverse-listener addresses and
// starts the background work (prefetch, certificate watchers).
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.cur.Load()
	p, err := e.prepare(specsOf(g.cfg))
	if err != nil {
		return err
	}
	g.start(e.log)
	e.started = true
	e.commit(p, g)
	return nil
}

// Err delivers a listener's failure.
func (e *Engine) Err() <-chan error { return e.errc }

// ProxyAddr is the proxy listener's address ("" before Start).
func (e *Engine) ProxyAddr() string {
	if a := e.addr("proxy"); a != "" {
		return a
	}
	return e.addr("proxy+tls")
}

// AdminAddr is the admin listener's address ("" if none).
func (e *Engine) AdminAddr() string { return e.addr("admin") }

// BrokerAddr is the broker listener's bound address ("" without [broker]).
func (e *Engine) BrokerAddr() string { return e.addr("broker") }

// ReverseAddr is the address of the named connection's reverse listener.
func (e *Engine) ReverseAddr(connection string) string { return e.addr("reverse " + connection) }

// Reload reads the config file again. A file with errors is logged and the
// running config keeps serving. Tokens of credentials whose definition did
// not change survive; connections the new file removes stop matching.
func (e *Engine) Reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur.Load()
	cfg, probs := conf.Load(old.cfg.Path)
	if probs.HasErrors() {
		n := 0
		for _, p := range probs {
			if !p.Warning {
				n++
				e.log.Error("reload rejected: config error", "problem", p.String())
			}
		}
		return fmt.Errorf("%s: %d error(s); the previous configuration keeps serving", old.cfg.Path, n)
	}
	g, err := e.build(ctx, cfg)
	if err != nil {
		e.log.Error("reload rejected", "error", err.Error())
		return fmt.Errorf("%w; the previous configuration keeps serving", err)
	}
	var p *plan
	if e.started {
		if p, err = e.prepare(specsOf(cfg)); err != nil {
			e.log.Error("reload rejected", "error", err.Error())
			return fmt.Errorf("%w; the previous configuration keeps serving", err)
		}
	}
	for _, p := range probs {
		e.log.Warn("config", "problem", p.String())
	}
	warnRestartOnly(e.log, old.cfg, cfg)
	if e.started {
		g.start(e.log)
	}
	e.cur.Store(g)
	if g.broker != nil {
		g.broker.Adopt(old.broker) // logins started before the reload complete after it
	}
	if p != nil {
		e.commit(p, g) // listeners added, removed or moved; the others keep their connections
	}
	keep, names := map[string]bool{}, map[string]bool{}
	for _, r := range g.proxy.Routes {
		names[r.Name] = true
		if r.Token != nil {
			keep[r.Token.Key] = true
		}
	}
	for _, d := range g.proxy.Delegated {
		keep[d.Key()] = true
	}
	e.tokens.Retain(keep)
	e.stats.Retain(names)
	old.stop()
	old.profiles.CloseIdle() // in-flight requests finish on their connections
	e.log.Info("config reloaded", "connections", len(g.proxy.Routes), "credentials", len(cfg.Credentials), "token_slots", len(keep))
	return nil
}

// warnRestartOnly names settings a reload cannot change: listeners are
// added, removed and moved, but one that stays keeps its timeouts.
func warnRestartOnly(log *slog.Logger, old, cur *conf.Config) {
	o, c := old.Server, cur.Server
	if o.ReadHeaderTimeout != c.ReadHeaderTimeout || o.IdleTimeout != c.IdleTimeout || o.MaxHeaderBytes != c.MaxHeaderBytes {
		log.Warn("reload: server timeouts or max_header_bytes changed; listeners that stay keep their old values until restart")
	}
	if !reflect.DeepEqual(old.Log, cur.Log) {
		log.Warn("reload: [log] changed; the log settings keep their old values until restart")
	}
	if msg := warnCacheRestartOnly(old, cur); msg != "" {
		log.Warn(msg)
	}
}

// Shutdown stops accepting, lets in-flight requests — on every listener
// and inside intercepted tunnels — finish until ctx ends, then closes what
// is left and stops the background work.
func (e *Engine) Shutdown(ctx context.Context) error {
	ls := e.listeners.all()
	errs := make([]error, len(ls)+1)
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.srv.Shutdown(ctx)
		}()
	}
	errs[len(ls)] = e.tunnels.Shutdown(ctx)
	wg.Wait()
	e.Close()
	return errors.Join(errs...)
}

// Close stops everything at once: listeners, tunnels, background work and
// idle upstream connections.
func (e *Engine) Close() {
	for _, l := range e.listeners.all() {
		_ = l.srv.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.tunnels.Shutdown(ctx)
	g := e.cur.Load()
	g.stop()
	g.profiles.CloseIdle()
	g.proxy.Handler.CloseIdle()
	if e.shared != nil {
		_ = e.shared.Close()
	}
}
