package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/authgress/authgress/internal/safetext"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tokencache"
)

func cmdTest(args []string, stdout, stderr io.Writer) int {
	c := newCommand("test", "test CONNECTION [PATH] [--config FILE] [--method GET] [--host HOST]",
		"Send one real request through the whole pipeline for CONNECTION (match, vault, token, upstream)\nand print the status and which stage failed, if one did. PATH defaults to /.", stdout, stderr)
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
	name, path := pos[0], "/"
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
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Connections[name].Timeout.D+30*time.Second)
	defer cancel()
	rt, err := build(ctx, cfg, slog.New(slog.DiscardHandler), tokencache.New(nil), false)
	if err != nil {
		fmt.Fprintf(stderr, "authgress test: %v\n", err)
		return exitProblem
	}
	var route *proxy.Route
	for _, r := range rt.proxy.Routes {
		if r.Name == name {
			route = r
		}
	}
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
		fmt.Fprintf(stdout, "token       ok: credential %s, %s, scope %q, expires in %s (%s)\n", route.Credential, tok.Type, tok.Scope,
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
	resp, matched, errCode := rt.proxy.Pipeline.Do(req)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if errCode != "" {
		fmt.Fprintf(stdout, "upstream    FAILED: %d %s\n            %s\n", resp.StatusCode, errCode, strings.TrimSpace(string(body)))
		return exitProblem
	}
	if matched != name {
		fmt.Fprintf(stdout, "note        the request matched connection %q, not %q (a more specific pattern or path wins)\n", matched, name)
	}
	fmt.Fprintf(stdout, "upstream    %s (%s, %s, %d bytes)\n", safetext.Clean(resp.Status, 200), time.Since(start).Round(time.Millisecond), safetext.Clean(resp.Header.Get("Content-Type"), 200), len(body))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		fmt.Fprintln(stdout, "result      the upstream refused the request: check the credential's scopes, params (audience) and the API's permissions")
		return exitProblem
	case resp.StatusCode >= 400:
		fmt.Fprintln(stdout, "result      the upstream answered with an error")
		return exitProblem
	}
	fmt.Fprintln(stdout, "result      ok")
	return exitOK
}
