// Package telemetry installs the OpenTelemetry SDK for the authgress binary:
// metrics through a Prometheus exporter on a private registry (served on the
// admin listener), and traces exported with OTLP over HTTP only when the
// standard OTEL_EXPORTER_OTLP_* variables ask for it. The other packages use
// only the OpenTelemetry API, which does nothing until this runs.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Telemetry is the installed SDK.
type Telemetry struct {
	// Metrics serves the Prometheus text format.
	Metrics http.Handler
	// Tracing is true when spans are exported.
	Tracing  bool
	shutdown []func(context.Context) error
}

// TracingRequested reports whether the environment asks for OTLP traces.
func TracingRequested() bool {
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" {
		return v == "otlp"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the meter provider (always) and the tracer provider (when
// TracingRequested).
func Setup(ctx context.Context, version string) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("authgress"), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := promexp.New(promexp.WithRegisterer(reg), promexp.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	otel.SetMeterProvider(mp)
	t := &Telemetry{
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		shutdown: []func(context.Context) error{mp.Shutdown},
	}
	if TracingRequested() {
		texp, err := otlptracehttp.New(ctx) // endpoint, headers, TLS from OTEL_EXPORTER_OTLP_* variables
		if err != nil {
			return nil, err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(texp), sdktrace.WithResource(res))
		otel.SetTracerProvider(tp)
		t.Tracing = true
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return t, nil
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
