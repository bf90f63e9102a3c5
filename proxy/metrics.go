package proxy

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names are part of the contract (SPEC §11). Labels carry only
// configured names and fixed codes, never raw hosts or paths.
var (
	meter           = otel.Meter("github.com/authgress/authgress/proxy")
	requestsTotal   metric.Int64Counter
	requestDuration metric.Float64Histogram
	deniedTotal     metric.Int64Counter
	retriesTotal    metric.Int64Counter
)

func init() {
	requestsTotal, _ = meter.Int64Counter("authgress_requests",
		metric.WithDescription("Requests handled, by connection and code (an authgress error code, or the upstream's HTTP status)."))
	requestDuration, _ = meter.Float64Histogram("authgress_request_duration",
		metric.WithDescription("Time from receiving a request to having sent the response headers, by connection."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
	deniedTotal, _ = meter.Int64Counter("authgress_denied",
		metric.WithDescription("Requests and tunnels refused by policy, by reason."))
	retriesTotal, _ = meter.Int64Counter("authgress_retries",
		metric.WithDescription("Attempts sent again under a connection's retry policy, by connection and reason (connect, timeout, reset, or the status)."))
}

// Denial reasons for authgress_denied_total.
const (
	DeniedUnmatched      = "unmatched"
	DeniedPrivateAddress = "private_address"
	DeniedIntercept      = "intercept_disabled"
	DeniedProxyAuth      = "proxy_auth"
	DeniedMisdirected    = "misdirected"
)

// statusCodes holds the label value of every HTTP status, so recording a
// request does not format an integer.
var statusCodes = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return
}()

// statusLabel is the label value of an HTTP status ("" outside 0–599,
// which http.ReadResponse accepts but no label should hold).
func statusLabel(status int) string {
	if status >= 0 && status < len(statusCodes) {
		return statusCodes[status]
	}
	return ""
}

// attrCache keeps the options of one label set per {connection, code}, as
// ready-made slices: passing them with ... does not allocate.
type attrCache struct {
	mu    sync.RWMutex
	m     map[[2]string][]metric.AddOption
	names [2]string
}

var (
	requestAttrs = attrCache{m: map[[2]string][]metric.AddOption{}, names: [2]string{"connection", "code"}}
	retryAttrs   = attrCache{m: map[[2]string][]metric.AddOption{}, names: [2]string{"connection", "reason"}}
)

func (c *attrCache) get(k [2]string) []metric.AddOption {
	c.mu.RLock()
	o, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return o
	}
	o = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(c.names[0], k[0]), attribute.String(c.names[1], k[1])))}
	c.mu.Lock()
	c.m[k] = o
	c.mu.Unlock()
	return o
}

// connectionAttr is the label set {connection=name}; routes keep theirs.
func connectionAttr(name string) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("connection", name)))}
}

var unmatchedAttr = connectionAttr("")

// recordRequest counts one finished request (route nil: unmatched).
func recordRequest(route *Route, code string, status int, d time.Duration) {
	if code == "" {
		code = statusLabel(status)
	}
	name, attr := "", unmatchedAttr
	if route != nil {
		name, attr = route.Name, route.metricAttr
	}
	ctx := context.Background()
	requestsTotal.Add(ctx, 1, requestAttrs.get([2]string{name, code})...)
	requestDuration.Record(ctx, d.Seconds(), attr...)
}

var deniedAttrs sync.Map

func recordDenied(reason string) {
	o, ok := deniedAttrs.Load(reason)
	if !ok {
		o = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason)))
		deniedAttrs.Store(reason, o)
	}
	deniedTotal.Add(context.Background(), 1, o.(metric.MeasurementOption))
}

// recordRetry counts one attempt sent again.
func recordRetry(route *Route, reason string) {
	retriesTotal.Add(context.Background(), 1, retryAttrs.get([2]string{route.Name, reason})...)
}
