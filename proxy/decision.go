package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/authgress/authgress/conf"
)

// Action is what a decision does with a request.
type Action uint8

const (
	// ActionDeny answers with the decision's Failure; nothing goes upstream.
	ActionDeny Action = iota
	// ActionInject sends the request upstream with the route's credential.
	ActionInject
	// ActionUpgrade sends a matched request without a credential (upgrade
	// to TLS, profile, allow).
	ActionUpgrade
	// ActionForward sends an unmatched request as it is (egress "tunnel").
	ActionForward
	// ActionTunnel splices an unmatched CONNECT to its destination.
	ActionTunnel
	// ActionIntercept terminates a matched CONNECT's TLS and serves the
	// requests inside, each pinned to the CONNECT target.
	ActionIntercept
)

var actionNames = [...]string{"deny", "inject", "upgrade", "forward", "tunnel", "intercept"}

func (a Action) String() string { return actionNames[a] }

// Decision is what the decide step made of one arriving request: its route
// (nil for unmatched traffic), what to do, why, and the target it is pinned
// to. Every way in produces one; the wrapper logs its reason.
type Decision struct {
	Route   *Route
	Action  Action
	Reason  string
	Host    string // normalised target host
	Port    string // target port
	Client  string // client identity ("" when the client is anonymous)
	User    string // whose user token a delegated credential injects ("": none)
	Path    string // the request's normalised path (what the access log shows)
	Pinned  bool   // inside an intercepted tunnel: the target is the CONNECT's
	Failure *Failure
}

// Decision reasons (the access log's `reason`).
const (
	ReasonMatched           = "matched"
	ReasonUnmatchedDenied   = "unmatched: egress.unmatched is deny"
	ReasonUnmatchedTunnel   = "unmatched: egress.unmatched is tunnel"
	ReasonIntercept         = "matched: tunnel intercepted"
	ReasonInterceptDisabled = "matched: interception not configured"
	ReasonPinned            = "inside an intercepted tunnel"
	ReasonMisdirected       = "inside an intercepted tunnel: another host named"
	ReasonProxyAuth         = "proxy authentication failed"
	ReasonNotProxy          = "not a proxy request"
	ReasonBadTarget         = "invalid target"
	ReasonBadPath           = "path cannot be normalised"
	ReasonTrace             = "TRACE refused on a connection with a credential"
	ReasonNotAdmitted       = "matched: client not admitted"
	ReasonReverse           = "reverse listener"
	ReasonGone              = "reverse listener: connection removed"
	ReasonHealth            = "health check"
)

func deny(reason string, f *Failure) Decision {
	return Decision{Action: ActionDeny, Reason: reason, Failure: f}
}

// decider turns what arrived into a decision. It holds no per-request state.
type decider struct {
	match         *Matcher
	tunnelUnknown bool // egress.unmatched = "tunnel"
	intercept     bool // [intercept] configured
}

// request decides an absolute-URI request (GET http://host/path), or — when
// pin is set — a request inside an intercepted tunnel, whose target is the
// CONNECT's whatever the request names.
func (d *decider) request(r *http.Request, pin *tunnelTarget, client *Client) Decision {
	var host, port string
	if pin != nil {
		if !pin.admits(r) {
			return deny(ReasonMisdirected, &Failure{Code: CodeMisdirected, Message: fmt.Sprintf(
				"this tunnel was opened for %s: a request inside it may not name another host or port", pin.hostPort())})
		}
		host, port = pin.host, pin.port
	} else {
		h, ok := conf.NormalizeHost(r.URL.Hostname())
		if !ok || h == "" {
			return deny(ReasonBadTarget, &Failure{Code: CodeBadRequest, Message: "the request URL has no valid host"})
		}
		host, port = h, r.URL.Port()
		if port == "" {
			port = defaultPort(r.URL.Scheme)
		}
	}
	path, ok := normalizePath(r.URL)
	if !ok {
		return deny(ReasonBadPath, &Failure{Code: CodeBadRequest, Message: "the request path cannot be normalised (bad percent-encoding or dot segments above the root)"})
	}
	route, refused := d.match.Match(host, port, path, false, client)
	dec := Decision{Route: route, Host: host, Port: port, Path: path, Pinned: pin != nil}
	switch {
	case refused:
		dec.Action, dec.Reason, dec.Failure = ActionDeny, ReasonNotAdmitted, notAdmitted(authority(host, port), client)
	case route == nil && d.tunnelUnknown:
		dec.Action, dec.Reason = ActionForward, ReasonUnmatchedTunnel
	case route == nil:
		dec.Action, dec.Reason, dec.Failure = ActionDeny, ReasonUnmatchedDenied, unmatchedDenied(authority(host, port))
	default:
		dec.act(r, ReasonMatched)
	}
	if pin != nil && dec.Reason == ReasonMatched {
		dec.Reason = ReasonPinned
	}
	return dec
}

// act sets what a matched request gets: its credential, or just the
// upgrade; TRACE is refused where a credential would be reflected.
func (dec *Decision) act(r *http.Request, reason string) {
	route := dec.Route
	switch {
	case route.injects() && r.Method == http.MethodTrace:
		dec.Action, dec.Reason, dec.Failure = ActionDeny, ReasonTrace, &Failure{Code: CodeBadRequest, Connection: route.Name,
			Message: "TRACE would reflect the injected credential back to the client: it is refused on connections with a credential"}
	case route.injects():
		dec.Action, dec.Reason = ActionInject, reason
	default:
		dec.Action, dec.Reason = ActionUpgrade, reason
	}
}

// reverse decides an origin-form request on a reverse listener: its
// connection is the listener's, whatever the request names (no matching
// across connections); route is nil once a reload removed it.
func (d *decider) reverse(r *http.Request, route *Route, name string, client *Client) Decision {
	if route == nil {
		return deny(ReasonGone, &Failure{Code: CodeBadRequest, Connection: name, Message: "this listener's connection was removed from the configuration"})
	}
	if r.URL.IsAbs() || r.Method == http.MethodConnect {
		return deny(ReasonNotProxy, &Failure{Code: CodeBadRequest, Connection: route.Name, Message: "this is a reverse listener for connection " + route.Name + ": send origin-form requests (GET /path), not proxy requests"})
	}
	path, ok := normalizePath(r.URL)
	if !ok {
		return deny(ReasonBadPath, &Failure{Code: CodeBadRequest, Connection: route.Name, Message: "the request path cannot be normalised (bad percent-encoding or dot segments above the root)"})
	}
	if route.Clients != nil && !client.admittedBy(route.Clients) {
		return deny(ReasonNotAdmitted, notAdmitted("connection "+route.Name, client))
	}
	dec := Decision{Route: route, Host: route.Upstream.Hostname(), Port: portOf(route.Upstream), Path: path}
	dec.act(r, ReasonReverse)
	return dec
}

// notAdmitted refuses a client that the matching connections do not list.
func notAdmitted(what string, client *Client) *Failure {
	who := "an anonymous client"
	if s := client.String(); s != "" {
		who = "client " + strconv.Quote(s)
	}
	return &Failure{Code: CodeEgressDenied, Message: fmt.Sprintf("%s is not admitted to %s: no connection for it lists this client in clients", who, what)}
}

// portOf is a URL's port, or its scheme's default.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return defaultPort(u.Scheme)
}

// connect decides a CONNECT: matched hosts are intercepted (or refused when
// interception is not configured), unmatched ones follow the egress policy.
func (d *decider) connect(r *http.Request, client *Client) Decision {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "443"
	}
	norm, ok := conf.NormalizeHost(host)
	if !ok || norm == "" || port == "" {
		return deny(ReasonBadTarget, &Failure{Code: CodeBadRequest, Message: "the CONNECT target is not a valid host:port"})
	}
	dec := Decision{Host: norm, Port: port}
	route, refused := d.match.Match(norm, port, "", true, client)
	switch {
	case refused:
		dec.Action, dec.Reason, dec.Failure = ActionDeny, ReasonNotAdmitted, notAdmitted(authority(norm, port), client)
	case route != nil && d.intercept:
		dec.Route, dec.Action, dec.Reason = route, ActionIntercept, ReasonIntercept
	case route != nil:
		dec.Route, dec.Action, dec.Reason = route, ActionDeny, ReasonInterceptDisabled
		dec.Failure = interceptDisabled(route.Name, norm, port)
	case d.tunnelUnknown:
		dec.Action, dec.Reason = ActionTunnel, ReasonUnmatchedTunnel
	default:
		dec.Action, dec.Reason, dec.Failure = ActionDeny, ReasonUnmatchedDenied, unmatchedDenied(authority(norm, port))
	}
	return dec
}

// interceptDisabled is the refusal of a matched CONNECT without [intercept].
// Clients hide a CONNECT refusal's body, so its message also travels in the
// reason phrase and in X-Authgress-Message.
func interceptDisabled(conn, host, port string) *Failure {
	url := "http://" + host
	if port != "443" {
		url = "http://" + net.JoinHostPort(host, port)
	}
	return &Failure{Code: CodeInterceptDisabled, Connection: conn, headline: true, Message: fmt.Sprintf(
		"%s is handled by connection %s but CONNECT interception is not configured: call %s/... through the proxy (it is sent upstream over https with the credential) or configure [intercept]",
		authority(host, port), conn, url)}
}

// tunnelTarget is what an intercepted tunnel is pinned to.
type tunnelTarget struct {
	host, port string
	client     Client // the CONNECT's client identity
}

func (t *tunnelTarget) hostPort() string { return authority(t.host, t.port) }

// admits reports whether a request inside the tunnel names the tunnel's
// target: its absolute URI's authority if it has one, else its Host. The
// port may be left out when the target's port is 443.
func (t *tunnelTarget) admits(r *http.Request) bool {
	authority := r.Host
	if r.URL.IsAbs() {
		if r.URL.Scheme != "https" {
			return false
		}
		authority = r.URL.Host
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		host, port = authority, "443"
	}
	norm, ok := conf.NormalizeHost(host)
	return ok && norm == t.host && port == t.port
}

// authority writes host:port for messages and logs (IPv6 literals in brackets).
func authority(host, port string) string { return net.JoinHostPort(host, port) }
