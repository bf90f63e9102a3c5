package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are removed in both directions (RFC 9110 §7.6.1), with every
// header the Connection header names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		if _, ok := h[name]; ok {
			delete(h, name)
		}
	}
}
