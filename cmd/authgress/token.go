package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/authgress/authgress/engine"
	"github.com/authgress/authgress/tokencache"
)

func cmdToken(args []string, stdout, stderr io.Writer) int {
	c := newCommand("token", "token CREDENTIAL [--config FILE] [--show]",
		"Fetch one token for CREDENTIAL (vault lookup and token request) and print its type, scopes and expiry.\nThe token itself is printed only with --show.", stdout, stderr)
	show := c.fs.Bool("show", false, "print the access token itself")
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	cfg, _, ok := loadConfig(*c.config, stderr)
	if !ok {
		return exitProblem
	}
	name := pos[0]
	cred, exists := cfg.Credentials[name]
	if !exists {
		fmt.Fprintf(stderr, "authgress token: credential %q is not defined in %s (defined: %v)\n", name, *c.config, sortedNames(cfg.Credentials))
		return exitProblem
	}
	if cred.Delegated() {
		fmt.Fprintf(stderr, "authgress token: credential %q holds users' tokens (grant = \"authorization_code\"): a user logs in through the broker (GET /v1/credentials/%s/login?user=U), and GET /v1/credentials/%s/users/U/token returns that user's token\n", name, name, name)
		return exitProblem
	}
	ctx, cancel := context.WithTimeout(context.Background(), cred.Timeout.D+5*time.Second)
	defer cancel()
	eng, err := engine.New(ctx, cfg, engine.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "authgress token: %v\n", err)
		return exitProblem
	}
	defer eng.Close()
	src, err := eng.TokenSource(ctx, name, cred.Scopes)
	if err != nil {
		fmt.Fprintf(stderr, "authgress token: %v\n", err)
		return exitProblem
	}
	start := time.Now()
	tok, err := src(ctx)
	if err != nil {
		fmt.Fprintf(stdout, "credential  %s\nresult      FAILED at the %s (%s)\nerror       %v\n", name, failedStage(err), tokencache.Result(err), err)
		return exitProblem
	}
	fmt.Fprintf(stdout, "credential  %s\ntype        %s\nscopes      requested %q, granted %s\nexpires     in %s (%s)\nfetched in  %s\n",
		name, tok.Type, strings.Join(cred.Scopes, " "), grantedScope(tok.Scope),
		time.Until(tok.ExpiresAt).Round(time.Second), tok.ExpiresAt.UTC().Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
	if *show {
		fmt.Fprintf(stdout, "token       %s\n", tok.Value)
	} else {
		fmt.Fprintln(stdout, "token       (hidden; --show prints it)")
	}
	return exitOK
}

// failedStage names where a token fetch failed.
func failedStage(err error) string {
	switch tokencache.Result(err) {
	case "vault_unavailable", "credential_not_found":
		return "vault"
	}
	return "token endpoint"
}

// grantedScope quotes the scope the token endpoint granted; an endpoint
// that omits scope grants what was requested (RFC 6749 §5.1) but did not
// say so.
func grantedScope(s string) string {
	if s == "" {
		return "not stated"
	}
	return strconv.Quote(s)
}
