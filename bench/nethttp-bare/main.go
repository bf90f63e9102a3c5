// Command nethttp-bare is the net/http floor of a forward proxy: a plain
// http.Handler that forwards absolute-URI requests through one
// http.Transport (the same settings as goproxy-bare), sets a static
// Authorization header, drops the hop-by-hop headers both ways and copies
// the response body with pooled buffers. No goproxy, no CONNECT, no
// matching, no token cache, no logging, no metrics.
//
//	nethttp-bare -listen 127.0.0.1:18094 -token test-token
package main

import (
	"crypto/tls"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// hopHeaders are removed from the request and the response (RFC 9110
// 7.6.1), as httputil.ReverseProxy does.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

type proxy struct {
	tr   *http.Transport
	auth []string
	bufs sync.Pool
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || !r.URL.IsAbs() {
		http.Error(w, "absolute-URI requests only", http.StatusBadRequest)
		return
	}
	// The handler owns r until it returns: forward it as is, without a copy.
	r.RequestURI = ""
	r.Close = false
	if r.ContentLength == 0 {
		r.Body = nil
	}
	for _, k := range hopHeaders {
		r.Header.Del(k)
	}
	r.Header["Authorization"] = p.auth
	resp, err := p.tr.RoundTrip(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range hopHeaders {
		resp.Header.Del(k)
	}
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				log.Printf("copy: %v", rerr)
			}
			return
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18094", "listen address")
	token := flag.String("token", "test-token", "static bearer token to inject")
	flag.Parse()
	p := &proxy{
		tr: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
			MaxIdleConnsPerHost: 256, DisableCompression: true, ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		},
		auth: []string{"Bearer " + *token},
		bufs: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
	}
	srv := &http.Server{Addr: *listen, Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
