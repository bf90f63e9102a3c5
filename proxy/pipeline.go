package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/neterr"
	"github.com/authgress/authgress/upstream"
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
		return p.send(nil, req, d, note)
	}
	if route.PropagateTrace {
		injectTrace(req)
	}
	if !route.injects() && route.Retry == nil {
		return p.send(route, req, d, note) // a node that could not be reached reuses the unread body
	}
	slot, f := route.slotFor(d.User)
	if f != nil {
		return nil, f
	}
	// Bodies up to ReplayLimit are kept, so that the request can be sent
	// again: after a 401, or under the retry policy.
	replayable, err := prepareReplay(req)
	if err != nil {
		return nil, &Failure{Code: CodeBadRequest, Connection: route.Name, Message: "could not read the request body", Cause: err}
	}
	if slot == nil {
		return p.send(route, req, d, note)
	}
	tok, err := slot.Get(req.Context())
	if err != nil {
		return nil, route.tokenFailure(d.User, err)
	}
	req.Header.Set("Authorization", tok.Authorization())
	resp, err := p.send(route, req, d, note)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The upstream rejected the token: drop exactly that token, get a fresh
	// one, and send the request once more if its body was kept (unless forced
	// refreshes are throttled: then the 401 goes to the client).
	if !slot.Invalidate(tok) || !replayable {
		return resp, nil
	}
	drain(resp.Body)
	fresh, err := slot.Get(req.Context())
	if err != nil {
		return nil, route.tokenFailure(d.User, err)
	}
	req.Body, _ = req.GetBody()
	req.Header.Set("Authorization", fresh.Authorization())
	note.Replayed = true
	return p.send(route, req, d, note)
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

// send performs the round trip, again under the connection's retry policy
// when an attempt fails in a way it names. The route's transport bounds the
// wait for response headers (its timeout); the body may then stream for as
// long as it needs. A client that goes away cancels the request through
// its context. authgress's own failures (no_agent_available) are never
// retried.
func (p *Pipeline) send(route *Route, req *http.Request, d *Decision, note *Note) (*http.Response, error) {
	if route == nil || route.Retry == nil {
		return p.attempt(route, req, note, nil)
	}
	pol, start := route.Retry, time.Now()
	var failed []*upstream.Node // nodes whose attempt failed: a retry prefers others
	for n := 0; ; n++ {
		resp, err := p.attempt(route, req, note, &failed)
		reason := retryReason(resp, err)
		if n >= pol.Count || reason == "" || req.GetBody == nil || !pol.Retries(req.Method, statusOf(resp), errKind(err)) {
			return resp, err
		}
		wait := pol.Delay(n, resp, time.Now())
		if time.Since(start)+wait > pol.MaxElapsed {
			return resp, err
		}
		if resp != nil {
			drain(resp.Body)
		}
		recordRetry(route, reason)
		t := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, classify(req.Context(), req.Context().Err(), authority(req.URL.Hostname(), portOf(req.URL)), route.Timeout)
		case <-t.C:
		}
		req.Body, _ = req.GetBody()
		note.Retries++
	}
}

// attempt sends req once: straight to the upstream, or through a node of
// the route's via. A node that could not be connected to (nothing sent) is
// passed over for another, always; when none is left, the answer is 503
// no_agent_available. Nodes in *failed (earlier attempts of this request
// failed on them) are used only when no other node is left; a node that
// fails here is added.
func (p *Pipeline) attempt(route *Route, req *http.Request, note *Note, failed *[]*upstream.Node) (*http.Response, error) {
	if route == nil || route.Via == nil {
		rt, timeout := p.tunnel, conf.DefaultUpstreamTimeout
		if route != nil {
			rt, timeout = route.Transport, route.Timeout
		}
		resp, err := rt.RoundTrip(req)
		return checked(req, resp, err, nil, timeout)
	}
	body := reusable(req)
	var tried []*upstream.Node
	var last *UpstreamError
	for {
		n := (*upstream.Node)(nil)
		if failed != nil && len(*failed) > 0 {
			n = route.Via.Pick(append(tried, *failed...))
		}
		if n == nil {
			n = route.Via.Pick(tried)
		}
		if n == nil {
			return nil, noAgent(route, last)
		}
		note.Node = n.ID()
		resp, err := n.RoundTrip(route.nodeRT[n.Cluster], req)
		resp, err = checked(req, resp, err, n, route.Timeout)
		var ue *UpstreamError
		if err != nil && failed != nil {
			*failed = append(*failed, n)
		}
		if !errors.As(err, &ue) || ue.Stage != StageConnect {
			if err == nil {
				n.Succeeded()
			}
			return resp, err
		}
		n.Failed(ue.Err)
		tried, last = append(tried, n), ue
		if !body.rewind(req) {
			return nil, ue
		}
	}
}

// checked types a round trip's error, and refuses a 101. node is the node
// it went through (nil: straight to the upstream).
func checked(req *http.Request, resp *http.Response, err error, node *upstream.Node, timeout time.Duration) (*http.Response, error) {
	host := func() string {
		if node != nil {
			return "node " + node.ID()
		}
		return authority(req.URL.Hostname(), portOf(req.URL))
	}
	if err != nil {
		return nil, classify(req.Context(), err, host(), timeout)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// authgress removes Upgrade from requests, so a 101 is a protocol
		// violation; relaying it would leave the client hanging. Its body
		// is the raw connection: close it, never read it.
		_ = resp.Body.Close()
		return nil, &UpstreamError{Stage: StageReset, Host: host(), Err: errSwitchedProtocols}
	}
	removeHopHeaders(resp.Header)
	return resp, nil
}

func noAgent(route *Route, last *UpstreamError) *Failure {
	msg := fmt.Sprintf("no node of %s is available", route.Via.Name)
	if last != nil {
		msg += fmt.Sprintf(" (the last one tried, %s, failed: %s)", strings.TrimPrefix(last.Host, "node "), neterr.Reason(last.Err))
	}
	return &Failure{Code: CodeNoAgentAvailable, Connection: route.Name, Message: msg, Cause: last}
}

// retryReason names what failed in an attempt for authgress_retries_total
// ("" when it did not fail in a way a policy can name).
func retryReason(resp *http.Response, err error) string {
	if err != nil {
		return errKind(err)
	}
	return statusLabel(resp.StatusCode)
}

// errKind is the retry policy's name for a failed round trip: connect,
// timeout or reset ("" for authgress's own failures and the rest).
func errKind(err error) string {
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		return ""
	}
	switch ue.Stage {
	case StageConnect:
		return "connect"
	case StageTimeout:
		return "timeout"
	case StageReset:
		return "reset"
	}
	return ""
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// rewindable keeps a request body usable for another node after a
// connection failure: a buffered body is made again; an unbuffered one is
// reused as long as the transport has read none of it (it closes the body
// on a failed dial, so Close is held back).
type rewindable struct{ once *onceBody }

func reusable(req *http.Request) rewindable {
	if req.GetBody != nil || req.Body == nil || req.Body == http.NoBody {
		return rewindable{}
	}
	o := &onceBody{ReadCloser: req.Body}
	req.Body = o
	return rewindable{once: o}
}

func (r rewindable) rewind(req *http.Request) bool {
	switch {
	case req.GetBody != nil:
		req.Body, _ = req.GetBody()
		return true
	case r.once == nil:
		return true // no body
	default:
		return !r.once.read
	}
}

type onceBody struct {
	io.ReadCloser
	read bool
}

func (b *onceBody) Read(p []byte) (int, error) {
	b.read = true
	return b.ReadCloser.Read(p)
}

// Close is a no-op: the server closes the client's body after the request.
func (b *onceBody) Close() error { return nil }

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
	return h.do(req, h.decide.request(req, nil, &Client{}))
}

// DoReverse is Do for the reverse listener of the named connection: req is
// an origin-form request, as the listener would receive it.
func (h *Handler) DoReverse(req *http.Request, name string) (resp *http.Response, connection, code string) {
	return h.do(req, h.decide.reverse(req, h.reverse[name], name, &Client{}))
}

func (h *Handler) do(req *http.Request, d Decision) (resp *http.Response, connection, code string) {
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
