package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/authgress/authgress/engine"
	"github.com/authgress/authgress/internal/safetext"
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
	name, path := pos[0], ""
	if len(pos) == 2 {
		path = pos[1]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
	}
	if _, exists := cfg.Connections[name]; !exists {
		fmt.Fprintf(stderr, "authgress test: connection %q is not defined in %s (defined: %v)\n", name, *c.config, sortedNames(cfg.Connections))
		return exitProblem
	}
	if path == "" {
		path = "/"
		if ps := cfg.Connections[name].Paths; len(ps) > 0 {
			path = ps[0] // "/" could belong to another connection of the same host
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Connections[name].Timeout.D+30*time.Second)
	defer cancel()
	eng, err := engine.New(ctx, cfg, engine.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "authgress test: %v\n", err)
		return exitProblem
	}
	defer eng.Close()
	route := eng.Route(name)
	host := *hostFlag
	if host == "" {
		for _, p := range route.Patterns {
			if !p.Wildcard {
				host = p.String()
				break
			}
		}
	}
	if host == "" {
		fmt.Fprintf(stderr, "authgress test: connection %q has only wildcard hosts: name one with --host\n", name)
		return exitUsage
	}
	fmt.Fprintf(stdout, "connection  %s\nrequest     %s http://%s%s (sent upstream over https unless allow_insecure)\n", name, *method, host, path)

	if route.Token != nil {
		start := time.Now()
		tok, err := route.Token.Get(ctx)
		if err != nil {
			fmt.Fprintf(stdout, "token       FAILED at the %s (%s): %v\n", failedStage(err), tokencache.Result(err), err)
			return exitProblem
		}
		fmt.Fprintf(stdout, "token       ok: credential %s, %s, scope %s, expires in %s (%s)\n", route.Credential, tok.Type, grantedScope(tok.Scope),
			time.Until(tok.ExpiresAt).Round(time.Second), time.Since(start).Round(time.Millisecond))
	} else {
		fmt.Fprintln(stdout, "token       (this connection has no credential: nothing is injected)")
	}

	req, err := http.NewRequestWithContext(ctx, *method, "http://"+host+path, nil)
	if err != nil {
		fmt.Fprintf(stderr, "authgress test: %v\n", err)
		return exitUsage
	}
	start := time.Now()
	resp, matched, errCode := eng.Do(req)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if matched != name {
		other := "no connection"
		if matched != "" {
			other = fmt.Sprintf("connection %q", matched)
		}
		hint := ""
		if ps := cfg.Connections[name].Paths; len(ps) > 0 {
			hint = fmt.Sprintf(" (its paths: %s)", strings.Join(ps, ", "))
		}
		fmt.Fprintf(stdout, "match       FAILED: %s http://%s%s matched %s, not %q, so this did not test %q: pass a PATH that %q covers%s\n",
			*method, host, path, other, name, name, name, hint)
		return exitProblem
	}
	if errCode != "" {
		fmt.Fprintf(stdout, "upstream    FAILED: %d %s\n            %s\n", resp.StatusCode, errCode, strings.TrimSpace(string(body)))
		return exitProblem
	}
	fmt.Fprintf(stdout, "upstream    %s (%s, %s, %d bytes)\n", safetext.Clean(resp.Status, 200), time.Since(start).Round(time.Millisecond), safetext.Clean(resp.Header.Get("Content-Type"), 200), len(body))
	switch {
	case (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && route.Token != nil:
		fmt.Fprintln(stdout, "result      the upstream refused the request with the injected token: check the credential's scopes, params (audience) and the API's permissions")
		return exitProblem
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		fmt.Fprintln(stdout, "result      the upstream refused the request; this connection injects no credential (add one if the API needs a token)")
		return exitProblem
	case resp.StatusCode >= 400:
		fmt.Fprintln(stdout, "result      the upstream answered with an error")
		return exitProblem
	}
	fmt.Fprintln(stdout, "result      ok")
	return exitOK
}
