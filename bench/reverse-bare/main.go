// Command reverse-bare is the library floor of authgress's reverse
// listeners: net/http's httputil.ReverseProxy in front of one upstream,
// setting a static Authorization header, with a buffer pool and the same
// upstream transport settings as goproxy-bare. No matching, no token
// cache, no logging, no metrics.
//
//	reverse-bare -listen 127.0.0.1:18092 -upstream http://127.0.0.1:18080 -token test-token
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

func main() {
	listen := flag.String("listen", "127.0.0.1:18092", "listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18080", "upstream base URL")
	token := flag.String("token", "test-token", "static bearer token to inject")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	auth := "Bearer " + *token
	pool := &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
			r.Out.Header.Set("Authorization", auth)
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
			MaxIdleConnsPerHost: 256, DisableCompression: true, ForceAttemptHTTP2: true,
		},
		BufferPool: pool,
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
