package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/conf/filecheck"
	"github.com/authgress/authgress/engine"
	"github.com/authgress/authgress/vault"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, code, ok := flags("check", "Validate a config file: every problem is printed with its line and key path.", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, probs := conf.Load(path)
	if cfg != nil { // the files and environment too, every problem in one run
		probs = append(probs, filecheck.Profiles(context.Background(), cfg)...)
		probs = append(probs, filecheck.Listeners(context.Background(), cfg)...)
		probs = append(probs, vault.CheckEnv(cfg)...) // env-vault credentials whose variables are missing
		probs = probs.Sorted()
	}
	for _, p := range probs {
		fmt.Fprintln(stderr, p.String())
	}
	if probs.HasErrors() {
		fmt.Fprintf(stderr, "%s: %d error(s)\n", path, countErrors(probs))
		return exitProblem
	}
	// Build the runtime without listening: this loads trust files and
	// resolves secret references, as run would.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := engine.New(ctx, cfg, engine.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", path, err)
		return exitProblem
	}
	defer eng.Close()
	fmt.Fprintf(stdout, "%s: ok (%d connections, %d credentials, %d vaults, %d profiles)\n",
		path, len(eng.Routes()), len(cfg.Credentials), len(cfg.Vaults), len(cfg.Profiles))
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

func sortedNames[T any](m map[string]T) []string { return slices.Sorted(maps.Keys(m)) }
