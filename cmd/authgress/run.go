package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/engine"
	"github.com/authgress/authgress/internal/logline"
	"github.com/authgress/authgress/internal/telemetry"
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
	eng, err := engine.New(ctx, cfg, engine.Options{Log: log, AccessLines: logline.New(lw, cfg.Log.Format == "json"),
		Tracing: tel.Tracing, Metrics: tel.Metrics, Version: version})
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return exitProblem
	}
	if err := eng.Start(); err != nil {
		log.Error("cannot listen", "error", err.Error())
		eng.Close()
		return exitProblem
	}
	logEffectiveConfig(log, cfg)
	if a := eng.AdminAddr(); a != "" {
		log.Info("admin listening", "addr", a)
	}
	servePprof(log)
	log.Info("listening", "addr", eng.ProxyAddr(), "connections", len(eng.Routes()), "intercept", cfg.Intercept != nil, "version", version, "tracing", tel.Tracing)

	for done := false; !done; {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading", "config", path)
			if eng.Reload(ctx) == nil { // a failed reload is logged and keeps the running config
				logEffectiveConfig(log, eng.Config())
			}
		case err := <-eng.Err():
			if err != nil {
				log.Error("listener failed", "error", err.Error())
				eng.Close()
				return exitProblem
			}
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	timeout := eng.Config().Server.ShutdownTimeout.D
	log.Info("shutting down: no new connections; finishing in-flight requests", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := eng.Shutdown(sctx); err != nil {
		log.Warn("shutdown_timeout reached with requests still in flight; closed them", "error", err.Error())
	}
	_ = tel.Shutdown(sctx)
	log.Info("stopped")
	return exitOK
}
