package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/elazarl/goproxy"
	"go.opentelemetry.io/otel/trace"
)

// Forward is the forward-proxy way in (HTTP_PROXY): absolute-URI requests go
// through the pipeline; CONNECT is refused for matched hosts (no interception
// yet) and decided by the egress policy otherwise. goproxy speaks the proxy
// protocol and splices CONNECT tunnels; every response comes from the
// pipeline, so goproxy's own transport and error texts are never used.
type Forward struct {
	pipeline   *Pipeline
	auth       *proxyAuth // nil: no proxy authentication
	guard      *Guard
	tunnelIdle time.Duration
	log        *slog.Logger
	accessLog  bool
	tracing    bool
	gp         *goproxy.ProxyHttpServer
}

type infoKey struct{}
type pinnedKey struct{}

type pinned struct {
	addrs []netip.Addr
	port  string
}

func newForward(p *Pipeline, auth *proxyAuth, guard *Guard, tunnelIdle time.Duration, log *slog.Logger, accessLog, tracing bool) *Forward {
	f := &Forward{pipeline: p, auth: auth, guard: guard, tunnelIdle: tunnelIdle, log: log, accessLog: accessLog, tracing: tracing}
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{Proxy: nil, DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("goproxy's own transport is not used")
	}}
	gp.ConnectDial = nil // never chain through HTTPS_PROXY from our own environment
	gp.ConnectDialWithReq = f.dialTunnel
	gp.KeepAcceptEncoding = true
	gp.Logger = goproxyLogger{log}
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { notAProxyRequest.Write(w) })
	gp.ConnectionErrHandler = f.tunnelDialFailed
	gp.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		info, _ := r.Context().Value(infoKey{}).(*reqInfo)
		if info == nil {
			info = &reqInfo{}
		}
		return r, f.pipeline.Serve(r, info)
	})
	// CONNECT was decided in ServeHTTP before goproxy sees it.
	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return goproxy.OkConnect, host
	})
	f.gp = gp
	return f
}

var notAProxyRequest = &Failure{Code: CodeBadRequest, Message: "authgress is a forward proxy: send requests with an absolute URL (set HTTP_PROXY=http://this-address)"}

func (f *Forward) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &streamWriter{ResponseWriter: w}
	info := &sw.info // one allocation for both
	if f.tracing {
		var span trace.Span
		r, span = startSpan(r)
		defer func() { endSpan(span, info, sw.status) }()
	}
	defer func() {
		d := time.Since(start)
		recordRequest(info.route, info.code, sw.status, d)
		if f.accessLog {
			f.logAccess(r, info, sw.status, d)
		}
	}()
	if f.auth != nil && !f.auth.allows(r) {
		r.Header.Del("Proxy-Authorization")
		f.fail(sw, info, &Failure{Code: CodeProxyAuthRequired, Message: "this proxy requires authentication: send Proxy-Authorization with a configured user"})
		return
	}
	r.Header.Del("Proxy-Authorization")
	if r.Method == http.MethodConnect {
		f.connect(w, sw, r, info)
		return
	}
	if !r.URL.IsAbs() {
		f.fail(sw, info, notAProxyRequest)
		return
	}
	f.gp.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
}

func (f *Forward) fail(sw *streamWriter, info *reqInfo, fl *Failure) {
	info.code = fl.Code
	if reason := denialReason(fl); reason != "" {
		recordDenied(reason)
	}
	fl.Write(sw)
}

// connect decides a CONNECT: matched hosts are refused (interception is not
// available), unmatched ones follow the egress policy.
func (f *Forward) connect(w http.ResponseWriter, sw *streamWriter, r *http.Request, info *reqInfo) {
	hostport := r.Host
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "443"
	}
	norm, ok := conf.NormalizeHost(host)
	if !ok || norm == "" {
		f.fail(sw, info, &Failure{Code: CodeBadRequest, Message: "the CONNECT target is not a valid host:port"})
		return
	}
	if route := f.pipeline.match.Match(norm, port, "", true); route != nil {
		info.route = route
		f.fail(sw, info, &Failure{Code: CodeInterceptDisabled, Connection: route.Name, Message: fmt.Sprintf(
			"%s is handled by connection %q, but authgress does not intercept CONNECT tunnels: call http://%s/... through the proxy (authgress sends it upstream over https with the credential), or configure [intercept]", norm, route.Name, norm)})
		return
	}
	if !f.pipeline.tunnelUnknown {
		f.fail(sw, info, unmatchedDenied(norm))
		return
	}
	addrs, err := f.guard.Resolve(r.Context(), host)
	if err != nil {
		f.fail(sw, info, upstreamFailure("", norm, err, false, 0)) // DeniedError becomes egress_denied
		return
	}
	sw.status = http.StatusOK
	f.gp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pinnedKey{}, pinned{addrs, port})))
}

// dialTunnel dials the address checked in connect, with an idle timeout.
func (f *Forward) dialTunnel(r *http.Request, network, _ string) (net.Conn, error) {
	pin, ok := r.Context().Value(pinnedKey{}).(pinned)
	if !ok {
		return nil, errors.New("tunnel target was not checked")
	}
	c, err := f.guard.dialAddrs(r.Context(), network, pin.addrs, pin.port)
	if err != nil {
		return nil, &tunnelDialError{host: r.Host, err: err}
	}
	return newIdleConn(c, f.tunnelIdle), nil
}

type tunnelDialError struct {
	host string
	err  error
}

func (e *tunnelDialError) Error() string { return e.err.Error() }
func (e *tunnelDialError) Unwrap() error { return e.err }

// tunnelDialFailed answers a CONNECT whose dial failed. goproxy also calls it
// for copy errors inside an established tunnel, where nothing may be written.
func (f *Forward) tunnelDialFailed(w io.Writer, _ *goproxy.ProxyCtx, err error) {
	var de *tunnelDialError
	if !errors.As(err, &de) {
		return
	}
	host, _, _ := net.SplitHostPort(de.host)
	resp := upstreamFailure("", host, de.err, false, 0).Response(nil)
	_ = resp.Write(w)
}

func (f *Forward) logAccess(r *http.Request, info *reqInfo, status int, d time.Duration) {
	host := r.Host
	path := ""
	if r.Method != http.MethodConnect && r.URL != nil {
		host, path = r.URL.Host, r.URL.Path
	}
	attrs := []slog.Attr{
		slog.String("connection", info.connection()),
		slog.String("method", r.Method),
		slog.String("host", host),
		slog.String("path", path),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	}
	if info.code != "" {
		attrs = append(attrs, slog.String("error", info.code))
	}
	if info.replayed {
		attrs = append(attrs, slog.Bool("replayed_after_401", true))
	}
	f.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// streamWriter records the status and flushes after every write when the
// response has no Content-Length (chunked, SSE, NDJSON). goproxy v1.9.2
// flushes only text/event-stream on this path (it looks for a
// Transfer-Encoding header net/http never leaves in resp.Header), which
// would hold NDJSON streams back until they end.
type streamWriter struct {
	http.ResponseWriter
	status int
	stream bool
	info   reqInfo // what the access log and metrics report
}

func (s *streamWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		s.stream = s.Header().Get("Content-Length") == ""
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.ResponseWriter.Write(p)
	if s.stream {
		if fl, ok := s.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
	}
	return n, err
}

// ReadFrom keeps the ResponseWriter's own ReadFrom reachable for responses
// of known length: without it io.Copy allocates a 32 KiB buffer per
// response. Streams are copied through a pooled buffer, flushed per chunk.
func (s *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok && !s.stream {
		return rf.ReadFrom(r)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(writerOnly{s}, r, *buf)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writerOnly hides ReadFrom so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }

func (s *streamWriter) Flush() {
	if fl, ok := s.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (s *streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// goproxyLogger sends goproxy's own messages to the debug log.
type goproxyLogger struct{ log *slog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	g.log.Debug("goproxy", "msg", fmt.Sprintf(format, v...))
}
