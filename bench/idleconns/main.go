// Command idleconns opens n client connections to a forward proxy, sends one
// request on each (so the proxy holds them as idle keep-alive connections),
// holds them for a while, and reports how many it opened.
//
//	idleconns -proxy 127.0.0.1:18101 -target http://127.0.0.1:18080/ -n 10000 -hold 3s
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	proxy := flag.String("proxy", "", "proxy address")
	target := flag.String("target", "", "absolute URL to request through the proxy")
	n := flag.Int("n", 10000, "connections")
	hold := flag.Duration("hold", 3*time.Second, "how long to hold them idle")
	flag.Parse()
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	failed := 0
	for i := 0; i < *n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", *proxy, 10*time.Second)
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				return
			}
			req, _ := http.NewRequest("GET", *target, nil)
			_ = req.WriteProxy(c)
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err == nil {
				_, _ = bufio.NewReader(resp.Body).WriteTo(discard{})
				resp.Body.Close()
			}
			mu.Lock()
			if err != nil || resp.StatusCode != 200 {
				failed++
				c.Close()
			} else {
				conns = append(conns, c)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("open=%d\nfailed=%d\n", len(conns), failed)
	time.Sleep(*hold)
	for _, c := range conns {
		c.Close()
	}
	if failed > 0 {
		fmt.Fprintln(os.Stderr, "some connections failed")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
