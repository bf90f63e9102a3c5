package upstream

import (
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/authgress/authgress/conf"
)

// Policy is a connection's retry policy: which failed attempts are sent
// again, and how long to wait before each.
type Policy struct {
	Count       int
	Strategy    string // exponential | fixed | retry_after
	Interval    time.Duration
	MaxInterval time.Duration // caps one wait (0: no cap)
	MaxElapsed  time.Duration
	OnStatus    []int
	OnError     []string // connect | timeout | reset
	Methods     []string
	// Jitter returns a factor for exponential waits (default: uniform in
	// [0.9, 1.1)); tests replace it.
	Jitter func() float64
}

// NewPolicy returns the policy of a validated retry table (nil: none).
func NewPolicy(r *conf.Retry) *Policy {
	if r == nil || r.Count == 0 {
		return nil
	}
	return &Policy{Count: r.Count, Strategy: r.Strategy, Interval: r.Interval.D, MaxInterval: r.MaxInterval.D,
		MaxElapsed: r.MaxElapsed.D, OnStatus: r.OnStatus, OnError: r.OnError, Methods: r.Methods}
}

// Retries reports whether an attempt that ended with status (0 when there
// was no response) or with the error kind errKind ("connect", "timeout",
// "reset"; "" when there was a response) may be sent again.
func (p *Policy) Retries(method string, status int, errKind string) bool {
	if !slices.Contains(p.Methods, method) {
		return false
	}
	if errKind != "" {
		return slices.Contains(p.OnError, errKind)
	}
	return slices.Contains(p.OnStatus, status)
}

// Delay is the wait before retry number n (0 for the first retry). resp is
// the failed attempt's response, if any (for Retry-After).
func (p *Policy) Delay(n int, resp *http.Response, now time.Time) time.Duration {
	switch p.Strategy {
	case "fixed":
		return p.Interval
	case "retry_after":
		if resp != nil {
			if d, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
				return min(d, p.MaxElapsed)
			}
		}
		return p.Interval
	}
	d := float64(p.Interval) * math.Pow(2, float64(n))
	jitter := p.Jitter
	if jitter == nil {
		jitter = func() float64 { return 0.9 + rand.Float64()*0.2 }
	}
	d *= jitter()
	if p.MaxInterval > 0 && d > float64(p.MaxInterval) {
		d = float64(p.MaxInterval)
	}
	return time.Duration(d)
}

// retryAfter reads Retry-After: delay-seconds or an HTTP-date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
