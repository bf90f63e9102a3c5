package tokencache

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/authgress/authgress/vault"
)

var (
	meter         = otel.Meter("github.com/authgress/authgress/tokencache")
	tracer        = otel.Tracer("github.com/authgress/authgress/tokencache")
	fetchesTotal  metric.Int64Counter
	fetchDuration metric.Float64Histogram
)

func init() {
	fetchesTotal, _ = meter.Int64Counter("authgress_token_fetches",
		metric.WithDescription("Token fetches, by credential and result (ok, unavailable, rejected, unsupported_token_type, vault_unavailable, credential_not_found)."))
	fetchDuration, _ = meter.Float64Histogram("authgress_token_fetch_duration",
		metric.WithDescription("Time to fetch a token (vault lookup and token request), by credential."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
}

// Result classifies a fetch outcome for metrics and status pages.
func Result(err error) string {
	var te *Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, vault.ErrNotFound):
		return "credential_not_found"
	case errors.Is(err, vault.ErrUnavailable):
		return "vault_unavailable"
	case errors.As(err, &te):
		return te.Kind.String()
	}
	return "unavailable"
}

func recordFetch(credential string, err error, d time.Duration) {
	ctx := context.Background()
	cred := attribute.String("credential", credential)
	fetchesTotal.Add(ctx, 1, metric.WithAttributes(cred, attribute.String("result", Result(err))))
	fetchDuration.Record(ctx, d.Seconds(), metric.WithAttributes(cred))
}

// registerExpiryGauge exports authgress_token_expiry_seconds{credential}:
// the time left on the credential's token (the shortest, when connections
// ask it for several scope sets), or 0 without a usable token.
func (c *Cache) registerExpiryGauge() {
	g, err := meter.Float64ObservableGauge("authgress_token_expiry",
		metric.WithDescription("Seconds until the credential's cached token expires (0: no usable token)."),
		metric.WithUnit("s"))
	if err != nil {
		return
	}
	_, _ = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		left := map[string]float64{}
		for _, s := range c.Slots() {
			v := 0.0
			if t := s.cur.Load(); t != nil && s.now().Before(t.UsableTo) {
				v = t.ExpiresAt.Sub(s.now()).Seconds()
			}
			if cur, ok := left[s.Name]; !ok || v < cur {
				left[s.Name] = v
			}
		}
		for name, v := range left {
			o.ObserveFloat64(g, v, metric.WithAttributes(attribute.String("credential", name)))
		}
		return nil
	}, g)
}

// registerRequestCounter exports authgress_cache_requests_total{level,result}
// (with a shared level only): level local (hit, miss) and shared (hit, miss,
// error). A shared hit is not a token fetch.
func (c *Cache) registerRequestCounter() {
	ctr, err := meter.Int64ObservableCounter("authgress_cache_requests",
		metric.WithDescription("Token cache requests, by level (local: this process; shared: Redis) and result (hit, miss, error)."))
	if err != nil {
		return
	}
	attrs := func(level, result string) metric.ObserveOption {
		return metric.WithAttributes(attribute.String("level", level), attribute.String("result", result))
	}
	localHit, localMiss := attrs("local", "hit"), attrs("local", "miss")
	sharedHitA, sharedMissA, sharedErrA := attrs("shared", "hit"), attrs("shared", "miss"), attrs("shared", "error")
	_, _ = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if !c.HasShared() {
			return nil
		}
		st := c.Stats()
		o.ObserveInt64(ctr, st.LocalHits, localHit)
		o.ObserveInt64(ctr, st.LocalMisses, localMiss)
		o.ObserveInt64(ctr, st.SharedHits, sharedHitA)
		o.ObserveInt64(ctr, st.SharedMisses, sharedMissA)
		o.ObserveInt64(ctr, st.SharedErrors, sharedErrA)
		return nil
	}, ctr)
}
