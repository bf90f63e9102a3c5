package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// servePprof serves Go's runtime profiles (net/http/pprof) on the address in
// AUTHGRESS_PPROF, e.g. 127.0.0.1:6060, for performance work. Off unless
// the variable is set; the profiles carry no secrets but reveal internals,
// so bind it to loopback.
func servePprof(log *slog.Logger) {
	addr := os.Getenv("AUTHGRESS_PPROF")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("pprof: cannot listen", "addr", addr, "error", err.Error())
		return
	}
	log.Info("pprof listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
}
