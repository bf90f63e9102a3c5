package upstream

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// live is the set whose nodes authgress_node_up reports (the serving
// configuration's).
var live atomic.Pointer[Set]

func init() {
	meter := otel.Meter("github.com/authgress/authgress/upstream")
	_, _ = meter.Int64ObservableGauge("authgress_node_up",
		metric.WithDescription("1 if the agent node is healthy, 0 if it is down or not checked yet, by cluster and node."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			s := live.Load()
			if s == nil {
				return nil
			}
			for _, cl := range s.Clusters() {
				for _, n := range cl.Nodes {
					up := int64(0)
					if n.State() == Healthy {
						up = 1
					}
					o.Observe(up, metric.WithAttributes(attribute.String("cluster", cl.Name), attribute.String("node", n.Name)))
				}
			}
			return nil
		}))
}

// Activate makes s the set authgress_node_up reports.
func (s *Set) Activate() { live.Store(s) }
