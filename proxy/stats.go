package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ConnStats counts one connection's requests since the process started
// (a reload keeps them: they belong to the connection's name, not to the
// configuration). The wrapper records each finished request with two
// atomic adds; only a failed request stores its last error.
type ConnStats struct {
	requests atomic.Int64
	errors   atomic.Int64
	last     atomic.Pointer[LastError]
}

// LastError is a connection's most recent failed request.
type LastError struct {
	At time.Time `json:"at"`
	// Code is the authgress error code, or the upstream's HTTP status
	// (5xx) when the upstream answered with a server error.
	Code    string `json:"code"`
	Status  int    `json:"status"`
	Message string `json:"message"` // never a secret or a token (as the client's error body)
}

// Requests is how many requests the connection handled.
func (s *ConnStats) Requests() int64 { return s.requests.Load() }

// Errors is how many of them failed: authgress answered with an error
// code (token_unavailable, upstream_unreachable, …), or the upstream
// answered with a 5xx.
func (s *ConnStats) Errors() int64 { return s.errors.Load() }

// Last is the most recent failure (nil: none yet).
func (s *ConnStats) Last() *LastError { return s.last.Load() }

// record counts one finished request. f is authgress's own failure, if it
// answered with one.
func (s *ConnStats) record(f *Failure, status int) {
	s.requests.Add(1)
	switch {
	case f != nil:
		s.errors.Add(1)
		s.last.Store(&LastError{At: time.Now(), Code: f.Code, Status: codeStatus[f.Code], Message: f.Message})
	case status >= 500:
		s.errors.Add(1)
		s.last.Store(&LastError{At: time.Now(), Code: strconv.Itoa(status), Status: status,
			Message: "the upstream answered " + strconv.Itoa(status) + " " + http.StatusText(status)})
	}
}

// StatsSet holds every connection's counters by name, across reloads.
type StatsSet struct {
	mu sync.Mutex
	m  map[string]*ConnStats
}

// NewStatsSet returns an empty set.
func NewStatsSet() *StatsSet { return &StatsSet{m: map[string]*ConnStats{}} }

// For returns the counters of the named connection, creating them.
func (s *StatsSet) For(name string) *ConnStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[name]
	if c == nil {
		c = &ConnStats{}
		s.m[name] = c
	}
	return c
}

// Retain drops the counters of connections that are no longer configured.
func (s *StatsSet) Retain(names map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := range s.m {
		if !names[n] {
			delete(s.m, n)
		}
	}
}
