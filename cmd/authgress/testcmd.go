package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/authgress/authgress/engine"
	"github.com/authgress/authgress/tokencache"
)

func cmdTest(args []string, stdout, stderr io.Writer) int {
	c := newCommand("test", "test CONNECTION [PATH] [--config FILE] [--method GET] [--host HOST]",
		"Send one real request through the whole pipeline for CONNECTION (match, vault, token, upstream)\nand print the status and which stage failed, if one did. PATH defaults to the connection's first\npath (or / when it has none).", stdout, stderr)
	method := c.fs.String("method", "GET", "request method")
	hostFlag := c.fs.String("host", "", "host[:port] to call (default: the connection's first non-wildcard host)")
	pos, code, ok := c.parse(args, 1, 2)
	if !ok {
		return code
	}
	cfg, _, ok := loadConfig(*c.config, stderr)
	if !ok {
		return exitProblem
	}
	name, path := pos[0], "" // "": the connection's first path, or /
	if len(pos) == 2 {
		path = pos[1]
	}
	if _, exists := cfg.Connections[name]; !exists {
		fmt.Fprintf(stderr, "authgress test: connection %q is not defined in %s (defined: %v)\n", name, *c.config, sortedNames(cfg.Connections))
		return exitProblem
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Connections[name].Timeout.D+30*time.Second)
	defer cancel()
	eng, err := engine.New(ctx, cfg, engine.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "authgress test: %v\n", err)
		return exitProblem
	}
	defer eng.Close()
	rep, err := eng.TestConnection(ctx, name, engine.TestOptions{Method: *method, Host: *hostFlag, Path: path})
	switch {
	case errors.Is(err, engine.ErrNeedHost):
		fmt.Fprintf(stderr, "authgress test: connection %q has only wildcard hosts: name one with --host\n", name)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "authgress test: %v\n", err)
		return exitUsage
	}
	if rep.Reverse {
		fmt.Fprintf(stdout, "connection  %s\nrequest     %s %s on its reverse listener (sent to %s)\n", name, rep.Method, rep.URL, cfg.Connections[name].Upstream)
	} else {
		fmt.Fprintf(stdout, "connection  %s\nrequest     %s %s (sent upstream over https unless allow_insecure)\n", name, rep.Method, rep.URL)
	}
	for _, st := range rep.Stages {
		switch {
		case st.Stage == engine.StageVault && st.OK:
			// printed as part of the token line, as before the vault had a stage of its own
		case st.Stage == engine.StageToken && st.Skipped:
			fmt.Fprintln(stdout, "token       (this connection has no credential: nothing is injected)")
		case st.Stage == engine.StageToken && st.OK:
			fmt.Fprintf(stdout, "token       ok: %s\n", st.Detail)
		case st.Err != nil: // the vault or the token stage
			fmt.Fprintf(stdout, "token       FAILED at the %s (%s): %v\n", failedStage(st.Err), tokencache.Result(st.Err), st.Err)
			return exitProblem
		case rep.Matched != name:
			fmt.Fprintf(stdout, "match       FAILED: %s\n", st.Detail)
			return exitProblem
		case rep.Code != "":
			fmt.Fprintf(stdout, "upstream    FAILED: %d %s\n            %s\n", rep.Status, rep.Code, rep.Body)
			return exitProblem
		default:
			fmt.Fprintf(stdout, "upstream    %s\n", st.Detail)
		}
	}
	fmt.Fprintf(stdout, "result      %s\n", rep.Result)
	if !rep.OK {
		return exitProblem
	}
	return exitOK
}
