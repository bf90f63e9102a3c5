package proxy

import (
	"testing"
)

// TestConnStatsCountWithoutAllocating: a request that succeeded costs two
// atomic adds and no allocation; failures are counted and keep the last one.
func TestConnStatsCountWithoutAllocating(t *testing.T) {
	s := NewStatsSet()
	c := s.For("api")
	if n := testing.AllocsPerRun(1000, func() { c.record(nil, 200) }); n != 0 {
		t.Fatalf("recording a request allocates %v times", n)
	}
	c.record(nil, 404) // the upstream's 4xx is its answer, not a failure
	c.record(&Failure{Code: CodeTokenUnavailable, Message: "could not obtain a token"}, 502)
	c.record(nil, 503)
	if c.Requests() != 1004 || c.Errors() != 2 {
		t.Fatalf("requests %d, errors %d", c.Requests(), c.Errors())
	}
	if l := c.Last(); l == nil || l.Code != "503" || l.Status != 503 || l.Message != "the upstream answered 503 Service Unavailable" {
		t.Fatalf("last error: %+v", l)
	}
	if s.For("api") != c {
		t.Fatal("For made new counters for a known name")
	}
	s.Retain(map[string]bool{"other": true})
	if s.For("api") == c {
		t.Fatal("Retain kept a removed connection's counters")
	}
}
