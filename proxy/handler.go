package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/authgress/authgress/intercept"
	"github.com/authgress/authgress/internal/logline"
	"github.com/elazarl/goproxy"
	"go.opentelemetry.io/otel/trace"
)

// Handler is one configuration's proxy and the single entry of every way
// in. For each request it runs the shared wrapper — proxy authentication,
// span, metrics, one access line carrying the decision's reason, response
// writing — around decide → pipeline. goproxy only speaks the CONNECT
// protocol and splices plain (unintercepted) tunnels.
type Handler struct {
	decide     decider
	pipeline   *Pipeline
	auth       *proxyAuth // nil: no proxy authentication
	guard      *Guard
	leaves     *intercept.Authority // nil: no interception
	tunnels    *Tunnels
	inner      http.Handler // serves requests inside intercepted tunnels
	tunnelIdle time.Duration
	limits     ServerLimits
	log        *slog.Logger
	accessLog  bool
	lines      *logline.Writer // access lines without slog (nil: through log)
	tracing    bool
	gp         *goproxy.ProxyHttpServer
	reverse    map[string]*Route // connections with a reverse listener, by name
}

// exchange is one request's record: what the wrapper logs, counts and
// traces once the response is written.
type exchange struct {
	sw     streamWriter
	start  time.Time
	d      Decision
	code   string   // the authgress error code, if authgress answered
	failed *Failure // its failure (code and message)
	note   Note
	client Client
	done   bool
	// tlsFailed: an intercepted tunnel's client did not complete the TLS
	// handshake (typically: it does not trust the interception CA).
	tlsFailed bool
}

// Note is what the pipeline reports about a round trip besides its result.
type Note struct {
	Replayed bool   // sent again after a 401 with a fresh token
	Node     string // "cluster/node" of the last attempt through a node
	Retries  int    // attempts sent again under the retry policy
}

type tunnelKey struct{}

// ServeHTTP serves the forward-proxy way in (absolute URIs and CONNECT;
// the agent listener is the same with TLS) and the requests inside
// intercepted tunnels.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve(w, r, "") }

// ServeReverse serves a reverse listener of the named connection: origin-form
// requests go to its url, with no matching across connections.
func (h *Handler) ServeReverse(w http.ResponseWriter, r *http.Request, connection string) {
	h.serve(w, r, connection)
}

// serve is the shared wrapper every way in goes through.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, reverse string) {
	x := &exchange{sw: streamWriter{ResponseWriter: w}, start: time.Now()}
	if h.tracing {
		var span trace.Span
		r, span = startSpan(r)
		defer func() { endSpan(span, x) }()
	}
	defer h.finish(x, r)

	pin, _ := r.Context().Value(tunnelKey{}).(*tunnelTarget)
	if pin == nil && reverse == "" && r.Method == http.MethodGet && r.URL.Path == "/healthz" && !r.URL.IsAbs() {
		// A gateway's health check of this agent (health_url = "/healthz"):
		// origin form, so never a proxy request.
		x.d = Decision{Reason: ReasonHealth}
		x.sw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(&x.sw, "ok\n")
		return
	}
	var client Client
	switch {
	case pin != nil:
		client = pin.client // authenticated at the CONNECT
	case reverse != "":
		// A reverse listener is an app's base URL, not a proxy: no proxy
		// authentication (its bind address protects it) and no client
		// identity.
	case h.auth != nil:
		user, ok := h.auth.check(r)
		if !ok {
			r.Header.Del("Proxy-Authorization")
			x.d = deny(ReasonProxyAuth, proxyAuthRequired)
			h.fail(x, r, proxyAuthRequired)
			return
		}
		client = Client{User: user}
	default:
		client = certClient(r) // the agent listener's verified client certificate
	}
	r.Header.Del("Proxy-Authorization")

	switch {
	case reverse != "":
		x.d = h.decide.reverse(r, h.reverse[reverse], reverse, &client)
	case r.Method == http.MethodConnect && pin == nil:
		x.d = h.decide.connect(r, &client)
	case r.Method == http.MethodConnect:
		x.d = deny(ReasonMisdirected, &Failure{Code: CodeBadRequest, Message: "CONNECT inside an intercepted tunnel is not supported"})
	case pin != nil:
		x.d = h.decide.request(r, pin, &client)
	case !r.URL.IsAbs():
		x.d = deny(ReasonNotProxy, notAProxyRequest)
	default:
		x.d = h.decide.request(r, nil, &client)
	}
	x.d.Client = client.String()
	x.d.User = client.delegatedUser()
	x.client = client

	switch x.d.Action {
	case ActionDeny:
		h.fail(x, r, x.d.Failure)
	case ActionTunnel:
		h.tunnel(x, r)
	case ActionIntercept:
		h.intercept(x, r)
	default:
		resp, err := h.pipeline.RoundTrip(r, &x.d, &x.note)
		if err != nil {
			h.fail(x, r, failureOf(err, &x.d))
			return
		}
		h.write(x, resp)
	}
}

var (
	notAProxyRequest  = &Failure{Code: CodeBadRequest, Message: "authgress is a forward proxy: send requests with an absolute URL (set HTTP_PROXY=http://this-address)"}
	proxyAuthRequired = &Failure{Code: CodeProxyAuthRequired, Message: "this proxy requires authentication: send Proxy-Authorization with a configured user"}
)

// fail answers with an authgress error. A refused CONNECT is written on the
// raw connection so that its reason phrase can carry the message (clients
// print a CONNECT refusal's status line, not its body).
func (h *Handler) fail(x *exchange, r *http.Request, f *Failure) {
	x.code, x.failed = f.Code, f
	if reason := denialReason(f); reason != "" {
		recordDenied(reason)
	}
	resp := f.Response(r)
	if f.headline && r.ProtoMajor == 1 {
		if conn, buf, ok := hijack(x); ok {
			x.sw.status = resp.StatusCode
			resp.Close = true
			_ = resp.Write(buf)
			_ = buf.Flush()
			_ = conn.Close()
			return
		}
	}
	h.write(x, resp)
}

// write sends an upstream (or authgress) response to the client: headers,
// status, then the body — through ReadFrom for bodies of known length,
// flushed chunk by chunk for streams.
func (h *Handler) write(x *exchange, resp *http.Response) {
	defer resp.Body.Close()
	dst := x.sw.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	x.sw.WriteHeader(resp.StatusCode)
	if resp.Body != http.NoBody {
		_, _ = x.sw.ReadFrom(resp.Body)
	}
}

// finish records the request once: metric, access line (span in ServeHTTP).
func (h *Handler) finish(x *exchange, r *http.Request) {
	if x.done {
		return
	}
	x.done = true
	d := time.Since(x.start)
	recordRequest(x.d.Route, x.code, x.sw.status, d)
	if r := x.d.Route; r != nil && r.Stats != nil {
		r.Stats.record(x.failed, x.sw.status)
	}
	if h.accessLog {
		h.logAccess(r, x, x.start.Add(d), d)
	}
}

func (h *Handler) logAccess(r *http.Request, x *exchange, end time.Time, d time.Duration) {
	if h.lines == nil {
		var a attrLine
		accessFields(&a, r, x, d)
		h.log.LogAttrs(context.Background(), slog.LevelInfo, "request", a.attrs...)
		return
	}
	if !h.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	l := h.lines.Begin(end, "request")
	accessFields(l, r, x, d)
	l.End()
}

// accessFields puts an access line's fields, in their documented order.
func accessFields[L fields[L]](l L, r *http.Request, x *exchange, d time.Duration) {
	l.Str("connection", x.d.connection())
	l.Str("method", r.Method)
	if x.d.Host != "" {
		l.HostPort("host", x.d.Host, x.d.Port)
	} else {
		l.Str("host", r.Host)
	}
	l.Str("path", x.d.Path) // the path the client sent, as matched (before any url mapping)
	l.Int("status", x.sw.status)
	l.Float("duration_ms", float64(d.Microseconds())/1000)
	l.Str("reason", x.d.Reason)
	if x.code != "" {
		l.Str("error", x.code)
	}
	if x.d.Client != "" {
		l.Str("client", x.d.Client)
	}
	if x.tlsFailed {
		l.Str("tunnel", "client TLS handshake failed: does the client trust the interception CA?")
	}
	if x.note.Node != "" {
		l.Str("node", x.note.Node)
	}
	if x.note.Retries > 0 {
		l.Int("retries", x.note.Retries)
	}
	if x.note.Replayed {
		l.Bool("replayed_after_401", true)
	}
}

// fields is what an access line is written to: a logline.Line (the fast
// path, formatted as slog would) or slog attributes (when the engine was
// given only a *slog.Logger).
type fields[L any] interface {
	Str(k, v string) L
	HostPort(k, host, port string) L
	Int(k string, v int) L
	Float(k string, v float64) L
	Bool(k string, v bool) L
}

type attrLine struct{ attrs []slog.Attr }

func (a *attrLine) add(x slog.Attr) *attrLine { a.attrs = append(a.attrs, x); return a }
func (a *attrLine) Str(k, v string) *attrLine { return a.add(slog.String(k, v)) }
func (a *attrLine) HostPort(k, host, port string) *attrLine {
	return a.add(slog.String(k, net.JoinHostPort(host, port)))
}
func (a *attrLine) Int(k string, v int) *attrLine       { return a.add(slog.Int(k, v)) }
func (a *attrLine) Float(k string, v float64) *attrLine { return a.add(slog.Float64(k, v)) }
func (a *attrLine) Bool(k string, v bool) *attrLine     { return a.add(slog.Bool(k, v)) }

func (d *Decision) connection() string {
	if d.Route == nil {
		return ""
	}
	return d.Route.Name
}

// hijack takes over the client connection (a CONNECT's, or one whose
// refusal must be written by hand).
func hijack(x *exchange) (net.Conn, *bufio.ReadWriter, bool) {
	hj, ok := x.sw.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, false
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	return conn, buf, true
}

// CloseIdle closes idle connections of the transport for unmatched traffic
// (route transports belong to the profiles).
func (h *Handler) CloseIdle() {
	if c, ok := h.pipeline.tunnel.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
