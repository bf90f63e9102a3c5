package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/authgress/authgress/conf"
)

// Pipeline is the one request path every way in uses:
// match → credential/token → transport → response. It always returns a
// response: failures become the JSON error responses of SPEC §9.
type Pipeline struct {
	match         *Matcher
	tunnelUnknown bool              // egress.unmatched = "tunnel"
	tunnel        http.RoundTripper // transport for unmatched traffic (guarded dialer)
}

// reqInfo collects what the access log reports about a request.
type reqInfo struct {
	route    *Route // nil: unmatched
	code     string
	replayed bool
}

func (i *reqInfo) connection() string {
	if i.route == nil {
		return ""
	}
	return i.route.Name
}

func (i *reqInfo) fail(f *Failure, req *http.Request) *http.Response {
	i.code = f.Code
	if reason := denialReason(f); reason != "" {
		recordDenied(reason)
	}
	return f.Response(req)
}

// denialReason maps a policy refusal to its authgress_denied_total reason.
func denialReason(f *Failure) string {
	switch f.Code {
	case CodeEgressDenied:
		if f.private {
			return DeniedPrivateAddress
		}
		return DeniedUnmatched
	case CodeInterceptDisabled:
		return DeniedIntercept
	case CodeProxyAuthRequired:
		return DeniedProxyAuth
	}
	return ""
}

// Do sends one absolute-URI request through the pipeline (as a way in
// would) and returns the response, the matched connection ("" if none) and
// the authgress error code ("" if the upstream answered).
func (p *Pipeline) Do(req *http.Request) (resp *http.Response, connection, code string) {
	info := &reqInfo{}
	resp = p.Serve(req, info)
	return resp, info.connection(), info.code
}

// Serve handles one absolute-URI request (GET http://host/path).
func (p *Pipeline) Serve(req *http.Request, info *reqInfo) *http.Response {
	host, ok := conf.NormalizeHost(req.URL.Hostname())
	if !ok || host == "" {
		return info.fail(&Failure{Code: CodeBadRequest, Message: "the request URL has no valid host"}, req)
	}
	port := req.URL.Port()
	if port == "" {
		port = defaultPort(req.URL.Scheme)
	}
	route := p.match.Match(host, port, req.URL.Path, false)

	req.RequestURI = ""
	req.Close = false // a client's Connection: close must not tear down upstream keep-alive
	removeHopHeaders(req.Header)

	if route == nil {
		if !p.tunnelUnknown {
			return info.fail(unmatchedDenied(host), req)
		}
		req.Host = req.URL.Host
		return p.send(nil, req, info, host)
	}
	info.route = route
	if req.URL.Scheme == "http" && !route.Insecure {
		up := req.URL.Port()
		if up == "" || up == "80" {
			up = route.TLSPort
		}
		req.URL.Scheme = "https"
		req.URL.Host = joinHostPort(req.URL.Hostname(), up, "443")
	}
	req.Host = req.URL.Host
	if route.PropagateTrace {
		injectTrace(req)
	}
	if route.Token == nil {
		return p.send(route, req, info, host)
	}

	replayable, err := prepareReplay(req)
	if err != nil {
		return info.fail(&Failure{Code: CodeBadRequest, Connection: route.Name, Message: "could not read the request body", Cause: err}, req)
	}
	tok, err := route.Token.Get(req.Context())
	if err != nil {
		return info.fail(tokenFailure(route.Name, route.Credential, err), req)
	}
	req.Header.Set("Authorization", tok.Authorization())
	resp := p.send(route, req, info, host)
	if resp.StatusCode != http.StatusUnauthorized { // our own failures are never 401
		return resp
	}
	// The upstream rejected the token: drop exactly that token, get a fresh
	// one, and send the request once more if its body was kept (unless forced
	// refreshes are throttled: then the 401 goes to the client).
	if !route.Token.Invalidate(tok) || !replayable {
		return resp
	}
	drain(resp.Body)
	fresh, err := route.Token.Get(req.Context())
	if err != nil {
		return info.fail(tokenFailure(route.Name, route.Credential, err), req)
	}
	req.Body, _ = req.GetBody()
	req.Header.Set("Authorization", fresh.Authorization())
	info.replayed = true
	return p.send(route, req, info, host)
}

// send performs the round trip. The route's transport bounds the wait for
// response headers (its timeout); the body may then stream for as long as it
// needs. A client that goes away cancels the request through its context.
func (p *Pipeline) send(route *Route, req *http.Request, info *reqInfo, host string) *http.Response {
	rt, timeout, name := p.tunnel, conf.DefaultUpstreamTimeout, ""
	if route != nil {
		rt, timeout, name = route.Transport, route.Timeout, route.Name
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return info.fail(upstreamFailure(name, host, err, isHeaderTimeout(err), timeout), req)
	}
	removeHopHeaders(resp.Header)
	return resp
}

// isHeaderTimeout recognises http.Transport's ResponseHeaderTimeout error
// (dial and TLS handshake timeouts are reported as unreachable instead).
func isHeaderTimeout(err error) bool {
	return strings.Contains(err.Error(), "timeout awaiting response headers")
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
