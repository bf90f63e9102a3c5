// Command tunnelload drives a forward proxy the way an SDK does: c client
// goroutines, each with its own kept-alive connection, sending GETs for d.
// An https:// target goes through CONNECT (one tunnel per connection, kept
// alive), an http:// target as absolute-URI requests — the same client code
// for both, so the two rows compare the proxy, not the load generators. wrk
// cannot send CONNECT. Prints one line: requests=N rps=X p50=ms p99=ms
// errors=E resumed=R (R: requests whose TLS handshake resumed a session).
//
// With -new, every request gets a connection of its own (no keep-alive): for
// an https:// target a new CONNECT, a new TLS handshake through it and the
// request; the latency is that of the whole. The client keeps no TLS
// session cache unless -resume is set, so each handshake is a full one.
//
// With -hold, it instead opens c connections (tunnels), sends one request on
// each, prints "open=N failed=F" once all are done, and keeps them open (idle,
// kept alive) for the hold duration before closing them: the proxy's memory
// per held tunnel is measured from outside meanwhile.
//
//	tunnelload -proxy 127.0.0.1:18102 -target https://127.0.0.1:18443/ -ca ca.pem -c 64 -d 5s
//	tunnelload -proxy 127.0.0.1:18102 -target https://127.0.0.1:18443/ -ca ca.pem -c 64 -d 5s -new [-resume]
//	tunnelload -proxy 127.0.0.1:18102 -target https://127.0.0.1:18443/ -ca ca.pem -c 1000 -hold 3s
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	proxy := flag.String("proxy", "", "proxy address")
	target := flag.String("target", "", "URL to request through the proxy")
	caFile := flag.String("ca", "", "PEM roots for https targets")
	c := flag.Int("c", 64, "connections")
	d := flag.Duration("d", 5*time.Second, "duration")
	hold := flag.Duration("hold", 0, "open -c tunnels, one request each, and hold them this long (no load)")
	fresh := flag.Bool("new", false, "a new connection (for https, a new tunnel and TLS handshake) for every request")
	resume := flag.Bool("resume", false, "with -new: keep a TLS session cache per client, so handshakes may resume")
	flag.Parse()
	roots := x509.NewCertPool()
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
		if err != nil || !roots.AppendCertsFromPEM(b) {
			fmt.Fprintln(os.Stderr, "tunnelload: cannot read -ca")
			os.Exit(2)
		}
	}
	pu, err := url.Parse("http://" + *proxy)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *hold > 0 {
		holdOpen(pu, roots, *target, *c, *hold)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), *d)
	defer cancel()
	var (
		mu      sync.Mutex
		lat     []time.Duration
		errors  int
		resumed int
		wg      sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < *c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One transport per goroutine: one connection (one tunnel) each,
			// or with -new one per request.
			tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots},
				MaxIdleConnsPerHost: 1, DisableCompression: true, DisableKeepAlives: *fresh}
			if *resume {
				tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			}
			defer tr.CloseIdleConnections()
			var mine []time.Duration
			bad, res := 0, 0
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "GET", *target, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					if ctx.Err() == nil {
						bad++
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
				if resp.TLS != nil && resp.TLS.DidResume {
					res++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errors += bad
			resumed += res
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	fmt.Printf("requests=%d rps=%.1f p50=%.3f p99=%.3f errors=%d resumed=%d\n", len(lat), float64(len(lat))/elapsed.Seconds(), pct(0.50), pct(0.99), errors, resumed)
}

// holdOpen opens n connections through the proxy (at most 50 handshakes at
// a time), one request on each, and holds them idle for hold.
func holdOpen(pu *url.URL, roots *x509.CertPool, target string, n int, hold time.Duration) {
	var (
		mu           sync.Mutex
		wg           sync.WaitGroup
		open, failed int
		transports   []*http.Transport
		sem          = make(chan struct{}, 50)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots},
				MaxIdleConnsPerHost: 1, DisableCompression: true}
			ok := false
			if resp, err := tr.RoundTrip(mustGet(target)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == 200
			}
			mu.Lock()
			defer mu.Unlock()
			if ok {
				open++
				transports = append(transports, tr) // its idle connection stays open
			} else {
				failed++
				tr.CloseIdleConnections()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("open=%d failed=%d\n", open, failed)
	time.Sleep(hold)
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
}

func mustGet(target string) *http.Request {
	req, err := http.NewRequest("GET", target, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return req
}
