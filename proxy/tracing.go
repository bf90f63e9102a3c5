package proxy

import (
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var tracer = otel.Tracer("github.com/authgress/authgress/proxy")

// startSpan starts the server span of a proxied request, as a child of the
// trace context the client sent (if any).
func startSpan(r *http.Request) (*http.Request, trace.Span) {
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	host := r.Host
	if r.URL != nil && r.URL.Host != "" {
		host = r.URL.Hostname()
	}
	ctx, span := tracer.Start(ctx, "proxy "+r.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("server.address", host)))
	return r.WithContext(ctx), span
}

func endSpan(span trace.Span, x *exchange) {
	span.SetAttributes(attribute.String("authgress.connection", x.d.connection()), attribute.Int("http.response.status_code", x.sw.status),
		attribute.String("authgress.reason", x.d.Reason))
	if x.code != "" {
		span.SetAttributes(attribute.String("authgress.error", x.code))
		span.SetStatus(codes.Error, x.code)
	}
	span.End()
}

// injectTrace puts authgress's trace context on an upstream request. Only
// connections with propagate_trace do this: by default no trace or span id
// of ours reaches a third party (the client's own headers pass as sent).
func injectTrace(req *http.Request) {
	otel.GetTextMapPropagator().Inject(req.Context(), propagation.HeaderCarrier(req.Header))
}
