package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, code, ok := flags("check", "Validate a config file: every problem is printed with its line and key path.", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, probs, ok := loadConfig(path, stderr)
	if !ok {
		return exitProblem
	}
	envProbs := vault.CheckEnv(cfg) // env-vault credentials whose variables are missing
	for _, p := range append(probs, envProbs...) {
		fmt.Fprintln(stderr, p.String())
	}
	// Build the runtime without listening: this loads trust files and
	// resolves secret references, as run would.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := build(ctx, cfg, slog.New(slog.DiscardHandler), tokencache.New(nil), false)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", path, err)
		return exitProblem
	}
	if len(envProbs) > 0 {
		fmt.Fprintf(stderr, "%s: %d error(s)\n", path, len(envProbs))
		return exitProblem
	}
	fmt.Fprintf(stdout, "%s: ok (%d connections, %d credentials, %d vaults, %d profiles)\n",
		path, len(rt.proxy.Routes), len(cfg.Credentials), len(cfg.Vaults), len(cfg.Profiles))
	return exitOK
}

func countErrors(ps conf.Problems) int {
	n := 0
	for _, p := range ps {
		if !p.Warning {
			n++
		}
	}
	return n
}
