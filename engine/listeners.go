package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/h1"
	"github.com/authgress/authgress/proxy"
)

// spec is a listener a configuration asks for. Two specs with the same key
// are the same listener: a reload keeps it (its socket, its connections).
type spec struct {
	key  string // "proxy", "proxy+tls", "admin", or "reverse <connection>"
	addr string
	conn string // reverse: the connection served
}

func specsOf(cfg *conf.Config) []spec {
	proxyKey := "proxy"
	if cfg.Server.TLS != nil {
		proxyKey = "proxy+tls"
	}
	out := []spec{{key: proxyKey, addr: cfg.Server.Listen}}
	if cfg.Server.Admin != "" {
		out = append(out, spec{key: "admin", addr: cfg.Server.Admin})
	}
	if cfg.Broker != nil {
		out = append(out, spec{key: "broker", addr: cfg.Broker.Listen})
	}
	names := make([]string, 0, len(cfg.Connections))
	for name, c := range cfg.Connections {
		if c.Listen != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		out = append(out, spec{key: "reverse " + name, addr: cfg.Connections[name].Listen, conn: name})
	}
	return out
}

// listener is one running server of the engine.
type listener struct {
	spec
	ln  net.Listener // the bound socket (its address is the real one)
	srv server
}

// server is what serves a listener: net/http's http.Server (admin, broker)
// or h1.Server (the proxy's ways in).
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// listenerSet is the engine's running listeners.
type listenerSet struct {
	mu    sync.Mutex
	byKey map[string]*listener
}

func (s *listenerSet) get(key string) *listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key]
}

func (s *listenerSet) all() []*listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*listener, 0, len(s.byKey))
	for _, l := range s.byKey {
		out = append(out, l)
	}
	return out
}

// plan is what applying a configuration's listeners changes.
type plan struct {
	keep   []*listener
	remove []*listener
	bound  []*listener // new listeners already bound
	later  []spec      // new listeners whose address a removed one holds
}

// prepare binds every new listener whose address is free, so that a
// reload that cannot listen fails before anything changed. Addresses held
// by listeners the new configuration drops are bound after those close.
func (e *Engine) prepare(specs []spec) (*plan, error) {
	p := &plan{}
	want := map[string]spec{}
	for _, sp := range specs {
		want[sp.key] = sp
	}
	held := map[string]bool{}
	for _, l := range e.listeners.all() {
		if sp, ok := want[l.key]; ok && sp.addr == l.addr {
			p.keep = append(p.keep, l)
			continue
		}
		p.remove = append(p.remove, l)
		held[l.addr] = true
	}
	kept := map[string]bool{}
	for _, l := range p.keep {
		kept[l.key] = true
	}
	for _, sp := range specs {
		if kept[sp.key] {
			continue
		}
		if held[sp.addr] {
			p.later = append(p.later, sp)
			continue
		}
		ln, err := net.Listen("tcp", sp.addr)
		if err != nil {
			for _, b := range p.bound {
				_ = b.ln.Close()
			}
			return nil, fmt.Errorf("%s: %w", describe(sp), err)
		}
		p.bound = append(p.bound, &listener{spec: sp, ln: ln})
	}
	return p, nil
}

func describe(sp spec) string {
	switch {
	case sp.conn != "":
		return fmt.Sprintf("connections.%s.listen %s", sp.conn, sp.addr)
	case sp.key == "admin":
		return "server.admin " + sp.addr
	case sp.key == "broker":
		return "broker.listen " + sp.addr
	}
	return "server.listen " + sp.addr
}

// commit serves the bound listeners, shuts the removed ones down (their
// in-flight requests finish) and then binds the rest.
func (e *Engine) commit(p *plan, g *generation) {
	for _, l := range p.bound {
		e.serve(l, g)
	}
	for _, l := range p.remove {
		e.listeners.mu.Lock()
		delete(e.listeners.byKey, l.key)
		e.listeners.mu.Unlock()
		e.log.Info("listener closing", "listener", describe(l.spec))
		go func() { _ = l.srv.Shutdown(context.Background()) }()
		_ = l.ln.Close() // frees the address now; Shutdown drains the requests in flight
	}
	for _, sp := range p.later {
		ln, err := net.Listen("tcp", sp.addr)
		if err != nil {
			e.log.Error("cannot listen; the rest of the configuration serves", "listener", describe(sp), "error", err.Error())
			continue
		}
		e.serve(&listener{spec: sp, ln: ln}, g)
	}
}

// serve starts the server of a bound listener.
func (e *Engine) serve(l *listener, g *generation) {
	var (
		ln      = l.ln
		srv     server
		handler http.Handler
	)
	switch {
	case l.key == "admin":
		srv = e.adminServer()
	case l.key == "broker":
		srv = e.httpServer(g, http.HandlerFunc(e.serveBroker))
	case l.conn != "":
		name := l.conn
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.cur.Load().proxy.Handler.ServeReverse(w, r, name)
		})
	case l.key == "proxy+tls":
		// The agent listener. The current generation's certificate and
		// client CA are looked up per handshake, so rotation and reloads
		// apply to new connections without re-listening.
		handler = e
		ln = tls.NewListener(ln, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return e.cur.Load().serverTLS.Config(), nil
		}})
	default:
		handler = e
	}
	if handler != nil {
		srv = e.proxyServer(g, handler)
		if _, lean := srv.(*h1.Server); !lean && l.key != "proxy+tls" {
			ln = proxy.ShapeListener(ln) // net/http's own 400s in authgress's shape
		}
	}
	l.srv = srv
	e.listeners.mu.Lock()
	e.listeners.byKey[l.key] = l
	e.listeners.mu.Unlock()
	e.log.Info("listener started", "listener", describe(l.spec), "addr", l.ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			e.errc <- fmt.Errorf("%s: %w", describe(l.spec), err)
		}
	}()
}

// httpServer is net/http's server with the configuration's limits.
func (e *Engine) httpServer(g *generation, h http.Handler) *http.Server {
	s := g.cfg.Server
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadHeaderTimeout.D,
		IdleTimeout:       s.IdleTimeout.D,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

// proxyServer serves the proxy's ways in (forward, agent, reverse): the
// lean HTTP/1.1 server, or net/http's with AUTHGRESS_SERVER=net/http.
func (e *Engine) proxyServer(g *generation, h http.Handler) server {
	if !proxy.LeanServer() {
		return e.httpServer(g, h)
	}
	s := g.cfg.Server
	return &h1.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadHeaderTimeout.D,
		IdleTimeout:       s.IdleTimeout.D,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		BadRequest:        proxy.BadRequestAnswer,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

// addr is the bound address of the listener with key ("" if none).
func (e *Engine) addr(key string) string {
	if l := e.listeners.get(key); l != nil {
		return l.ln.Addr().String()
	}
	return ""
}
