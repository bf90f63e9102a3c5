package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authgress/authgress/internal/safetext"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tokencache"
)

// The stages of a connection test, in order.
const (
	StageVault    = "vault"    // the credential's client id and secret can be read
	StageToken    = "token"    // a token can be had (from the cache, or fetched)
	StageUpstream = "upstream" // one real request through the pipeline
)

// TestOptions choose the request a connection test sends.
type TestOptions struct {
	Method string // default GET
	Host   string // host[:port]; default: the connection's first non-wildcard host
	Path   string // default: the connection's first path, or /
}

// TestStage is the outcome of one stage of a connection test.
type TestStage struct {
	Stage   string `json:"stage"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"` // nothing to check: the connection has no credential
	Detail  string `json:"detail"`
	// Err is the vault or token failure (nil otherwise), for callers that
	// word it themselves. Its text is Detail's.
	Err error `json:"-"`
}

// TestReport is what a connection test found: `authgress test` prints it
// and the dashboard's POST /api/test/{connection} answers it as JSON. It
// never holds a token or a secret.
type TestReport struct {
	Connection string `json:"connection"`
	OK         bool   `json:"ok"`
	// Status is the HTTP status the test request got (the upstream's, or
	// authgress's own error status); 0 when no request was sent.
	Status int    `json:"status"`
	Method string `json:"method"`
	// URL is what was requested: http://host/path for a forward request,
	// the path alone for a request on the reverse listener.
	URL     string `json:"url"`
	Reverse bool   `json:"reverse,omitempty"`
	// Matched is the connection the request matched ("" for none). A test
	// whose request matched another connection tested nothing.
	Matched string `json:"matched"`
	// Code is the authgress error code when authgress answered.
	Code string `json:"error_code,omitempty"`
	// Result is "ok", or why the test failed, in a sentence.
	Result string      `json:"result"`
	Stages []TestStage `json:"stages"`
	// Body is the start of authgress's own error body (Code set).
	Body string `json:"-"`
}

// ErrUnknownConnection: the connection to test is not configured.
var ErrUnknownConnection = errors.New("no such connection")

// ErrNeedHost: the connection matches only wildcard hosts, so the test
// needs TestOptions.Host.
var ErrNeedHost = errors.New("the connection has only wildcard hosts: name the host to call")

// TestConnection checks one connection stage by stage, as `authgress test`
// does: vault (its credential's client id and secret can be read), token
// (a token can be had, through the token cache as requests get it), and
// upstream (one real request through the whole pipeline, by the same code
// as a proxied request). It stops at the first stage that fails. The
// request is not counted in the connection's requests.
func (e *Engine) TestConnection(ctx context.Context, name string, o TestOptions) (*TestReport, error) {
	g := e.cur.Load()
	var route *proxy.Route
	for _, r := range g.proxy.Routes {
		if r.Name == name {
			route = r
		}
	}
	c := g.cfg.Connections[name]
	if route == nil || c == nil {
		return nil, fmt.Errorf("connection %q: %w", name, ErrUnknownConnection)
	}
	rep := &TestReport{Connection: name, Method: o.Method, Stages: []TestStage{}}
	if rep.Method == "" {
		rep.Method = http.MethodGet
	}
	path := o.Path
	if path == "" {
		path = "/"
		if len(c.Paths) > 0 {
			path = c.Paths[0] // "/" could belong to another connection of the same host
		}
	} else if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	host := o.Host
	if host == "" {
		for _, p := range route.Patterns {
			if !p.Wildcard {
				host = p.String()
				break
			}
		}
	}
	switch {
	case host != "":
		rep.URL = "http://" + host + path
	case len(route.Patterns) == 0 && route.Listen != "":
		rep.URL, rep.Reverse = path, true // only its reverse listener reaches it
	default:
		return nil, fmt.Errorf("connection %q: %w", name, ErrNeedHost)
	}
	req, err := http.NewRequestWithContext(ctx, rep.Method, rep.URL, nil)
	if err != nil {
		return nil, err
	}

	if route.Delegated != nil {
		rep.Stages = append(rep.Stages,
			TestStage{Stage: StageVault, OK: true, Skipped: true, Detail: "credential " + route.Credential + " holds users' tokens: the client is read when a user logs in"},
			TestStage{Stage: StageToken, OK: true, Skipped: true, Detail: fmt.Sprintf("credential %s holds users' tokens (%d logged in here): a user logs in through the broker", route.Credential, len(route.Delegated.Users()))})
		rep.Result = "connection " + strconv.Quote(name) + " injects the token of the request's user: test it as a logged-in proxy user"
		return rep, nil
	}
	if route.Token == nil {
		rep.Stages = append(rep.Stages,
			TestStage{Stage: StageVault, OK: true, Skipped: true, Detail: "this connection has no credential: no vault is read"},
			TestStage{Stage: StageToken, OK: true, Skipped: true, Detail: "this connection has no credential: nothing is injected"})
	} else {
		cred := g.cfg.Credentials[route.Credential]
		vs := TestStage{Stage: StageVault}
		if !cred.NeedsSecret() {
			vs.Skipped = true
		} else if v := g.vaults[cred.Vault]; v == nil {
			vs.Err = fmt.Errorf("vault %q is not defined", cred.Vault)
		} else if sec, err := v.Get(ctx, cred.ID); err != nil {
			vs.Err = err
		} else {
			vs.Err = sec.CheckClientID()
		}
		if vs.Err != nil {
			vs.Detail = fmt.Sprintf("%s: %v", tokencache.Result(vs.Err), vs.Err)
			rep.Stages = append(rep.Stages, vs)
			rep.Result = "could not read the client id and secret of credential " + strconv.Quote(route.Credential)
			return rep, nil
		}
		if vs.Skipped {
			vs.OK, vs.Detail = true, fmt.Sprintf("client_auth %s sends no client secret: client id %s from the configuration", cred.ClientAuth, cred.ClientID)
		} else {
			vs.OK, vs.Detail = true, fmt.Sprintf("client id and secret of credential %s read from vault %s (%s)", route.Credential, cred.Vault, g.vaults[cred.Vault].Type)
		}
		rep.Stages = append(rep.Stages, vs)

		start := time.Now()
		tok, err := route.Token.Get(ctx)
		if err != nil {
			rep.Stages = append(rep.Stages, TestStage{Stage: StageToken, Err: err, Detail: fmt.Sprintf("%s: %v", tokencache.Result(err), err)})
			rep.Result = "could not obtain a token for credential " + strconv.Quote(route.Credential)
			return rep, nil
		}
		rep.Stages = append(rep.Stages, TestStage{Stage: StageToken, OK: true, Detail: fmt.Sprintf("credential %s, %s, scope %s, expires in %s (%s)",
			route.Credential, safetext.Clean(tok.Type, 40), grantedScope(tok.Scope), time.Until(tok.ExpiresAt).Round(time.Second),
			time.Since(start).Round(time.Millisecond))})
	}

	start := time.Now()
	var resp *http.Response
	if rep.Reverse {
		resp, rep.Matched, rep.Code = g.proxy.Handler.DoReverse(req, name)
	} else {
		resp, rep.Matched, rep.Code = g.proxy.Handler.Do(req)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	rep.Status = resp.StatusCode
	up := TestStage{Stage: StageUpstream}
	switch {
	case rep.Matched != name:
		other := "no connection"
		if rep.Matched != "" {
			other = fmt.Sprintf("connection %q", rep.Matched)
		}
		hint := ""
		if len(c.Paths) > 0 {
			hint = fmt.Sprintf(" (its paths: %s)", strings.Join(c.Paths, ", "))
		}
		up.Detail = fmt.Sprintf("%s %s matched %s, not %q, so this did not test %q: pass a PATH that %q covers%s",
			rep.Method, rep.URL, other, name, name, name, hint)
		rep.Result = "the test request matched " + other
	case rep.Code != "":
		rep.Body = strings.TrimSpace(string(body))
		var eb struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &eb)
		up.Detail = fmt.Sprintf("%d %s: %s", resp.StatusCode, rep.Code, eb.Message)
		rep.Result = "authgress answered " + rep.Code
	default:
		up.Detail = fmt.Sprintf("%s (%s, %s, %d bytes)", safetext.Clean(resp.Status, 200), time.Since(start).Round(time.Millisecond),
			safetext.Clean(resp.Header.Get("Content-Type"), 200), len(body))
		switch {
		case (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && route.Token != nil:
			rep.Result = "the upstream refused the request with the injected token: check the credential's scopes, params (audience) and the API's permissions"
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			rep.Result = "the upstream refused the request; this connection injects no credential (add one if the API needs a token)"
		case resp.StatusCode >= 400:
			rep.Result = "the upstream answered with an error"
		default:
			up.OK, rep.OK, rep.Result = true, true, "ok"
		}
	}
	rep.Stages = append(rep.Stages, up)
	return rep, nil
}

// grantedScope quotes the scope the token endpoint granted; an endpoint
// that omits scope grants what was requested (RFC 6749 §5.1) but did not
// say so.
func grantedScope(s string) string {
	if s == "" {
		return "not stated"
	}
	return strconv.Quote(safetext.Clean(s, 1000))
}
