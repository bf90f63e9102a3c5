// Command tokenserver is the benchmark's OAuth 2.0 token endpoint: it
// answers client_credentials requests (any client) with random opaque tokens
// of a fixed lifetime and counts them (GET /count).
//
//	tokenserver -listen 127.0.0.1:18400 -ttl 300
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18400", "listen address")
	ttl := flag.Int("ttl", 300, "token lifetime in seconds (expires_in)")
	flag.Parse()
	var issued atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("grant_type") != "client_credentials" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"bench_%s","token_type":"Bearer","expires_in":%d}`, hex.EncodeToString(b), *ttl)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, issued.Load()) })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
