package vault

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

var (
	meter         = otel.Meter("github.com/authgress/authgress/vault")
	tracer        = otel.Tracer("github.com/authgress/authgress/vault")
	requestsTotal metric.Int64Counter
)

func init() {
	requestsTotal, _ = meter.Int64Counter("authgress_vault_requests",
		metric.WithDescription("Vault backend lookups (cache misses), by vault and result (ok, not_found, unavailable)."))
}

// Result classifies a lookup outcome for metrics and status pages.
func Result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	}
	return "unavailable"
}

func recordLookup(vault string, err error) {
	requestsTotal.Add(context.Background(), 1, metric.WithAttributes(attribute.String("vault", vault), attribute.String("result", Result(err))))
}
