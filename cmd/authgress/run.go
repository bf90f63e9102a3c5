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
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/telemetry"
	"github.com/authgress/authgress/tokencache"
)

func newLogger(cfg *conf.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadConfig loads and validates the config, printing every problem; ok is
// false when it has errors.
func loadConfig(path string, stderr io.Writer) (*conf.Config, conf.Problems, bool) {
	cfg, probs := conf.Load(path)
	if probs.HasErrors() {
		for _, p := range probs {
			fmt.Fprintln(stderr, p.String())
		}
		fmt.Fprintf(stderr, "%s: %d error(s)\n", path, countErrors(probs))
		return nil, probs, false
	}
	return cfg, probs, true
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	path, code, ok := flags("run", "Run the proxy. SIGHUP reloads the config; SIGTERM and SIGINT stop it gracefully.", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, probs, ok := loadConfig(path, stderr)
	if !ok {
		return exitProblem
	}
	lw := newLogWriter(stderr, 100*time.Millisecond)
	defer lw.Close()
	log := newLogger(cfg, lw)
	for _, p := range probs {
		log.Warn("config", "problem", p.String())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	tel, err := telemetry.Setup(ctx, version)
	if err != nil {
		log.Error("cannot set up telemetry", "error", err.Error())
		return exitProblem
	}
	a := &app{path: path, log: log, tokens: tokencache.New(log), tracing: tel.Tracing}
	rt, err := build(ctx, cfg, log, a.tokens, tel.Tracing)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return exitProblem
	}
	rt.start(log)
	a.cur.Store(rt)
	logEffectiveConfig(log, cfg)

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		log.Error("cannot listen", "listen", cfg.Server.Listen, "error", err.Error())
		return exitProblem
	}
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D,
		IdleTimeout:       cfg.Server.IdleTimeout.D,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	var admin *http.Server
	if cfg.Server.Admin != "" {
		aln, err := net.Listen("tcp", cfg.Server.Admin)
		if err != nil {
			log.Error("cannot listen", "admin", cfg.Server.Admin, "error", err.Error())
			return exitProblem
		}
		admin = a.adminServer(tel.Metrics)
		go func() { _ = admin.Serve(aln) }()
		log.Info("admin listening", "addr", aln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "connections", len(rt.proxy.Routes), "version", version, "tracing", tel.Tracing)

	for done := false; !done; {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading", "config", path)
			if a.reload(ctx) == nil { // a failed reload is logged and keeps the running config
				logEffectiveConfig(log, a.cur.Load().cfg)
			}
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("proxy listener failed", "error", err.Error())
				return exitProblem
			}
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	timeout := a.cur.Load().cfg.Server.ShutdownTimeout.D
	log.Info("shutting down: no new connections; finishing in-flight requests", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	cur := a.cur.Load()
	cur.stop()
	cur.profiles.CloseIdle()
	if err != nil {
		log.Warn("shutdown_timeout reached with requests still in flight; closing them", "error", err.Error())
		_ = srv.Close()
	}
	_ = tel.Shutdown(sctx)
	log.Info("stopped")
	return exitOK
}
