package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/neterr"
)

// Pipeline sends a decided request upstream: credential/token → transport →
// response. It returns the upstream's response or a typed error
// (*Failure for authgress's own refusals, *UpstreamError for the round
// trip); errors become client responses only at the edge (the wrapper).
type Pipeline struct {
	tunnel http.RoundTripper // transport for unmatched traffic (guarded dialer)
}

// RoundTrip sends req as d decided. note receives what the access log
// reports besides the result.
func (p *Pipeline) RoundTrip(req *http.Request, d *Decision, note *Note) (*http.Response, error) {
	route := d.Route
	req.RequestURI = ""
	req.Close = false // a client's Connection: close must not tear down upstream keep-alive
	removeHopHeaders(req.Header)
	switch {
	case route != nil && route.Upstream != nil: // the connection's url: reverse listeners and host mapping
		mapOnto(req.URL, route.Upstream)
	case d.Pinned: // inside an intercepted tunnel: https to the CONNECT target
		req.URL.Scheme = "https"
		req.URL.Host = joinHostPort(d.Host, d.Port, "443")
	case route != nil && req.URL.Scheme == "http" && !route.Insecure:
		up := req.URL.Port()
		if up == "" || up == "80" {
			up = route.TLSPort
		}
		req.URL.Scheme = "https"
		req.URL.Host = joinHostPort(req.URL.Hostname(), up, "443")
	}
	req.Host = req.URL.Host
	if route == nil {
		return p.send(nil, req, d)
	}
	if route.PropagateTrace {
		injectTrace(req)
	}
	if route.Token == nil {
		return p.send(route, req, d)
	}

	replayable, err := prepareReplay(req)
	if err != nil {
		return nil, &Failure{Code: CodeBadRequest, Connection: route.Name, Message: "could not read the request body", Cause: err}
	}
	tok, err := route.Token.Get(req.Context())
	if err != nil {
		return nil, tokenFailure(route.Name, route.Credential, err)
	}
	req.Header.Set("Authorization", tok.Authorization())
	resp, err := p.send(route, req, d)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The upstream rejected the token: drop exactly that token, get a fresh
	// one, and send the request once more if its body was kept.
	route.Token.Invalidate(tok)
	if !replayable {
		return resp, nil
	}
	drain(resp.Body)
	fresh, err := route.Token.Get(req.Context())
	if err != nil {
		return nil, tokenFailure(route.Name, route.Credential, err)
	}
	req.Body, _ = req.GetBody()
	req.Header.Set("Authorization", fresh.Authorization())
	note.Replayed = true
	return p.send(route, req, d)
}

// mapOnto sends u to base: base's scheme and authority, base's path in
// front of u's (already normalised) path; u's query is kept.
func mapOnto(u, base *url.URL) {
	u.Scheme, u.Host = base.Scheme, base.Host
	if u.RawPath != "" {
		u.RawPath = base.EscapedPath() + u.RawPath
	}
	u.Path = base.Path + u.Path
	if u.Path == "" {
		u.Path = "/"
	}
}

// send performs the round trip. The route's transport bounds the wait for
// response headers (its timeout); the body may then stream for as long as it
// needs. A client that goes away cancels the request through its context.
func (p *Pipeline) send(route *Route, req *http.Request, d *Decision) (*http.Response, error) {
	rt, timeout := p.tunnel, conf.DefaultUpstreamTimeout
	if route != nil {
		rt, timeout = route.Transport, route.Timeout
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, classify(req.Context(), err, authority(req.URL.Hostname(), portOf(req.URL)), timeout)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// authgress removes Upgrade from requests, so a 101 is a protocol
		// violation; relaying it would leave the client hanging. Its body
		// is the raw connection: close it, never read it.
		_ = resp.Body.Close()
		return nil, &UpstreamError{Stage: StageReset, Host: authority(req.URL.Hostname(), portOf(req.URL)), Err: errSwitchedProtocols}
	}
	removeHopHeaders(resp.Header)
	return resp, nil
}

var errSwitchedProtocols = errors.New("the upstream switched protocols (101), which authgress does not relay")

// Stage says how far a failed round trip got.
type Stage uint8

const (
	// StageConnect: dial or TLS handshake failed; nothing was sent.
	StageConnect Stage = iota
	// StageTimeout: sent; no response header within the timeout.
	StageTimeout
	// StageReset: sent (or possibly sent); the connection failed before a
	// complete response header.
	StageReset
	// StageCanceled: the client went away.
	StageCanceled
)

// UpstreamError is a failed round trip to an upstream.
type UpstreamError struct {
	Stage   Stage
	Host    string // host:port, for messages
	Timeout time.Duration
	Err     error
}

func (e *UpstreamError) Error() string { return e.Host + ": " + e.Err.Error() }
func (e *UpstreamError) Unwrap() error { return e.Err }

// Sent reports whether any of the request may have reached the upstream.
func (e *UpstreamError) Sent() bool { return e.Stage != StageConnect }

// classify types a transport error by type, never by its text: dial and
// TLS failures are *neterr.ConnectError (the transports' dialers return
// them), a remaining timeout is the response-header timeout.
func classify(ctx context.Context, err error, host string, timeout time.Duration) *UpstreamError {
	e := &UpstreamError{Host: host, Timeout: timeout, Err: err}
	var ce *neterr.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		e.Stage = StageConnect
	case ctx.Err() != nil:
		e.Stage = StageCanceled
	case errors.As(err, &ne) && ne.Timeout():
		e.Stage = StageTimeout
	default:
		e.Stage = StageReset
	}
	return e
}

// Do sends one absolute-URI request through decide and the pipeline (as a
// way in would, without a listener) and returns the response, the matched
// connection ("" if none) and the authgress error code ("" if the upstream
// answered). `authgress test` uses it.
func (h *Handler) Do(req *http.Request) (resp *http.Response, connection, code string) {
	d := h.decide.request(req, nil, &Client{})
	if d.Action == ActionDeny {
		return d.Failure.Response(req), d.connection(), d.Failure.Code
	}
	resp, err := h.pipeline.RoundTrip(req, &d, &Note{})
	if err != nil {
		f := failureOf(err, &d)
		return f.Response(req), d.connection(), f.Code
	}
	return resp, d.connection(), ""
}

// drain reads a little of a discarded body so its connection can be reused.
func drain(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, 64<<10))
	_ = b.Close()
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

func joinHostPort(host, port, def string) string {
	if port == def || port == "" {
		if strings.Contains(host, ":") { // an IPv6 literal
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}
