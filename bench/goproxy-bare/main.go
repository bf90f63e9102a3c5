// Command goproxy-bare is the library floor authgress is measured against:
// goproxy v1.9.2 as a forward proxy that sets a static Authorization header,
// with the same upstream transport settings and the two fixes every goproxy
// user needs (no env proxy chaining; req.Close cleared so a client's
// Connection: close does not tear down upstream keep-alive). No matching,
// no token cache, no logging, no metrics. With -cert/-key/-ca it upgrades
// http:// requests to https with that client certificate (the mTLS rows).
//
//	goproxy-bare -listen 127.0.0.1:18090 -token test-token [-cert c.pem -key k.pem -ca ca.pem]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/elazarl/goproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "listen address")
	token := flag.String("token", "test-token", "static bearer token to inject")
	cert := flag.String("cert", "", "client certificate (PEM): upgrade requests to https with mTLS")
	key := flag.String("key", "", "client key (PEM)")
	ca := flag.String("ca", "", "CA bundle for the upstream")
	flag.Parse()
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
		MaxIdleConnsPerHost: 256, DisableCompression: true, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	upgrade := *cert != ""
	if upgrade {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		pem, err := os.ReadFile(*ca)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig.Certificates = []tls.Certificate{pair}
		tr.TLSClientConfig.RootCAs = pool
	}
	p := goproxy.NewProxyHttpServer()
	p.Tr = tr
	p.ConnectDial = nil
	p.KeepAcceptEncoding = true
	auth := "Bearer " + *token
	p.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		r.Close = false
		r.Header.Set("Authorization", auth)
		if upgrade {
			r.URL.Scheme = "https"
		}
		return r, nil
	})
	srv := &http.Server{Addr: *listen, Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
