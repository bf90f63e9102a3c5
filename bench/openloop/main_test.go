//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun: every scheduled request is sent and answered, directly and through
// a forward proxy (absolute-URI request lines), over kept-alive connections,
// including when the server closes some of them.
func TestRun(t *testing.T) {
	for _, viaProxy := range []bool{false, true} {
		var conns, proxied, requests atomic.Int64
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.IsAbs() {
				proxied.Add(1)
			}
			if requests.Add(1)%50 == 0 {
				w.Header().Set("Connection", "close")
			}
			fmt.Fprint(w, "ok")
		}))
		up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		up.Start()
		defer up.Close()
		proxy := ""
		if viaProxy {
			proxy = strings.TrimPrefix(up.URL, "http://")
		}
		g, err := newGen(proxy, up.URL+"/x", 400, 4, 500*time.Millisecond, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := g.run(time.Second, &out); err != nil {
			t.Fatal(err)
		}
		t.Log(out.String())
		if g.next != 200 || g.done != 200 || g.non2xx+g.failed != 0 || requests.Load() != 200 {
			t.Errorf("proxy %q: sent %d, done %d, non-2xx %d, failed %d, server saw %d", proxy, g.next, g.done, g.non2xx, g.failed, requests.Load())
		}
		if n := proxied.Load(); proxy != "" && n != 200 || proxy == "" && n != 0 {
			t.Errorf("proxy %q: %d absolute-URI requests", proxy, n)
		}
		if g.eager {
			t.Errorf("proxy %q: no kernel receive timestamps; answers were timed on arrival", proxy)
		}
		// 4, and a new one after each close (the last may not be dialled
		// before the run ends, or counted before this check).
		if n := conns.Load(); n < 4+3 || n > 4+4 {
			t.Errorf("proxy %q: %d connections, want 4 and one per close", proxy, n)
		}
	}
}

// TestStallCounts: when the server stalls, the requests scheduled during the
// stall count it in their latencies (no coordinated omission): with one
// connection at 200/s, a 100 ms stall delays the ~20 requests due meanwhile.
func TestStallCounts(t *testing.T) {
	var requests atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 50 {
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	g, err := newGen("", up.URL+"/", 200, 1, time.Second, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := g.run(2*time.Second, &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	if len(g.lats) != 200 {
		t.Fatalf("%d answers, want 200", len(g.lats))
	}
	// The stalled request took 100 ms; the ones due after it waited for it:
	// about 95, 90, … 5 ms.
	if slow := g.lats[len(g.lats)-19]; slow < 4*int64(time.Millisecond) {
		t.Errorf("the 19th slowest answer took %v, want the stall in it", time.Duration(slow))
	}
	if g.lats[len(g.lats)-1] < 100*int64(time.Millisecond) {
		t.Errorf("the slowest answer took %v, want at least the 100 ms stall", time.Duration(g.lats[len(g.lats)-1]))
	}
	if g.nLate < 18 {
		t.Errorf("%d requests late, want the ~19 due during the stall", g.nLate)
	}
}
