package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// runtime is everything built from one config.
type runtimeSet struct {
	proxy    *proxy.Proxy
	profiles *tlsprofiles.Set
	tokens   *tokencache.Cache
}

func build(ctx context.Context, cfg *conf.Config, log *slog.Logger) (*runtimeSet, error) {
	vaults, err := vault.Build(cfg)
	if err != nil {
		return nil, err
	}
	profiles, err := tlsprofiles.Build(cfg)
	if err != nil {
		return nil, err
	}
	tokens := tokencache.New(log)
	p, err := proxy.New(ctx, cfg, proxy.Deps{Vaults: vaults, Profiles: profiles, Tokens: tokens, Log: log})
	if err != nil {
		return nil, err
	}
	return &runtimeSet{proxy: p, profiles: profiles, tokens: tokens}, nil
}

func newLogger(cfg *conf.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	path, code, ok := flags("run", "Run the proxy.", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, probs := conf.Load(path)
	if probs.HasErrors() {
		for _, p := range probs {
			fmt.Fprintln(stderr, p.String())
		}
		fmt.Fprintf(stderr, "%s: %d error(s); not starting\n", path, countErrors(probs))
		return exitProblem
	}
	log := newLogger(cfg, stderr)
	for _, p := range probs {
		log.Warn("config", "problem", p.String())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	rt, err := build(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return exitProblem
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		log.Error("cannot listen", "listen", cfg.Server.Listen, "error", err.Error())
		return exitProblem
	}
	srv := rt.proxy.Server(cfg, log)
	prefetch := prefetchSlots(cfg, rt)
	for _, slot := range prefetch {
		go slot.KeepFresh(ctx)
	}
	var admin *http.Server
	if cfg.Server.Admin != "" {
		aln, err := net.Listen("tcp", cfg.Server.Admin)
		if err != nil {
			log.Error("cannot listen", "admin", cfg.Server.Admin, "error", err.Error())
			return exitProblem
		}
		admin = adminServer(prefetch)
		go func() { _ = admin.Serve(aln) }()
		log.Info("admin listening", "addr", aln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "connections", len(rt.proxy.Routes), "version", version)

	for {
		select {
		case <-hup:
			log.Warn("SIGHUP received: configuration reload is not available in this version; restart to apply changes")
			continue
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("proxy listener failed", "error", err.Error())
				return exitProblem
			}
			return exitOK
		case <-ctx.Done():
		}
		break
	}
	log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout.D.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D)
	defer cancel()
	err = srv.Shutdown(sctx)
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	rt.profiles.CloseIdle()
	if err != nil {
		log.Warn("shutdown timeout reached with requests in flight", "error", err.Error())
	}
	log.Info("stopped")
	return exitOK
}

// prefetchSlots are the token slots of credentials with prefetch = true.
func prefetchSlots(cfg *conf.Config, rt *runtimeSet) []*tokencache.Slot {
	seen := map[*tokencache.Slot]bool{}
	var out []*tokencache.Slot
	for _, r := range rt.proxy.Routes {
		if r.Token != nil && cfg.Credentials[r.Credential].Prefetch && !seen[r.Token] {
			seen[r.Token] = true
			out = append(out, r.Token)
		}
	}
	return out
}

// adminServer serves /healthz (alive) and /readyz (config loaded and every
// prefetch credential holds a token). The full admin API comes later.
func adminServer(prefetch []*tokencache.Slot) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, s := range prefetch {
			if !s.Ready() {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "waiting for a token for credential %q\n", s.Name)
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: conf.DefaultReadHeaderTimeout}
}
