// Command goproxy-bare is the library floor authgress is measured against:
// goproxy v1.9.2 as a forward proxy that sets a static Authorization header,
// with the same upstream transport settings and the two fixes every goproxy
// user needs (no env proxy chaining; req.Close cleared so a client's
// Connection: close does not tear down upstream keep-alive). No matching,
// no token cache, no logging, no metrics. With -cert/-key/-ca it upgrades
// http:// requests to https with that client certificate (the mTLS rows).
//
// Two of them chain (the agent rows): the first sends every request to the
// second as its upstream proxy (-upstream-proxy, goproxy's Tr.Proxy; with
// an https:// proxy, -cert/-key/-ca are the client identity and roots for
// the TLS connection to it, and nothing is upgraded), and the second serves
// TLS with client certificates (-tls-cert/-tls-key/-client-ca, ALPN
// http/1.1), as an authgress gateway and agent do. -token "" sets no header.
//
//	goproxy-bare -listen 127.0.0.1:18090 -token test-token [-cert c.pem -key k.pem -ca ca.pem]
//	goproxy-bare -listen 127.0.0.1:18096 -tls-cert s.pem -tls-key s-key.pem -client-ca ca.pem
//	goproxy-bare -listen 127.0.0.1:18095 -token "" -upstream-proxy https://127.0.0.1:18096 -cert c.pem -key k.pem -ca ca.pem
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net"
	"net/http"
	"net/url"
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
	upstreamProxy := flag.String("upstream-proxy", "", "send every request through this forward proxy (http:// or https://)")
	tlsCert := flag.String("tls-cert", "", "serve TLS on the listener with this certificate (PEM)")
	tlsKey := flag.String("tls-key", "", "its key (PEM)")
	clientCA := flag.String("client-ca", "", "with -tls-cert: require client certificates from this CA (PEM)")
	flag.Parse()
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
		MaxIdleConnsPerHost: 256, DisableCompression: true, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if *upstreamProxy != "" {
		u, err := url.Parse(*upstreamProxy)
		if err != nil {
			log.Fatal(err)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	upgrade := *cert != "" && *upstreamProxy == ""
	if *cert != "" {
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
		if *token != "" {
			r.Header.Set("Authorization", auth)
		}
		if upgrade {
			r.URL.Scheme = "https"
		}
		return r, nil
	})
	srv := &http.Server{Addr: *listen, Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if *tlsCert == "" {
		log.Fatal(srv.ListenAndServe())
	}
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2
	if *clientCA != "" {
		pem, err := os.ReadFile(*clientCA)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		srv.TLSConfig.ClientCAs = pool
		srv.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
	}
	log.Fatal(srv.ListenAndServeTLS(*tlsCert, *tlsKey))
}
