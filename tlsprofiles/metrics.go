package tlsprofiles

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// active is the Set whose certificates the expiry gauge reports.
var (
	active       atomic.Pointer[Set]
	registerOnce sync.Once
)

// Activate makes s the set reported by authgress_client_certificate_expiry_seconds.
func (s *Set) Activate() {
	active.Store(s)
	registerOnce.Do(registerExpiryGauge)
}

func registerExpiryGauge() {
	meter := otel.Meter("github.com/authgress/authgress/tlsprofiles")
	g, err := meter.Float64ObservableGauge("authgress_client_certificate_expiry",
		metric.WithDescription("Seconds until the client certificate of a protocol profile expires (negative: expired)."),
		metric.WithUnit("s"))
	if err != nil {
		return
	}
	_, _ = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := active.Load()
		if s == nil {
			return nil
		}
		for name, p := range s.profiles {
			if p.Identity != nil {
				o.ObserveFloat64(g, time.Until(p.Identity.Certificate().Leaf.NotAfter).Seconds(), metric.WithAttributes(attribute.String("profile", name)))
			}
		}
		return nil
	}, g)
}
