package h1

import (
	"bufio"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeRequest writes req as net/http's Request.Write does, byte for byte,
// without its allocations when req is a plain one: no body, no trailer, no
// Connection: close, an origin-form target, at most maxHeaders header
// fields and no line breaks in header values. Any other request goes
// through Request.Write.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	if !plain(req) {
		return req.Write(bw)
	}
	u := req.URL
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	if !isASCII(host) || strings.HasPrefix(host, "[") || hasCTL(path) || hasCTL(u.RawQuery) {
		return req.Write(bw) // punycode, IPv6 zones, or an error to report
	}
	if !httpguts.ValidHostHeader(host) {
		host = ""
	}
	var keys [maxHeaders]string
	n := 0
	for k, vs := range req.Header {
		if excluded(k) {
			continue
		}
		if n == maxHeaders {
			return req.Write(bw)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				return req.Write(bw)
			}
		}
		keys[n] = k
		n++
	}
	slices.Sort(keys[:n])
	ua := "Go-http-client/1.1"
	if vs, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(vs) > 0 {
			if strings.ContainsAny(vs[0], "\r\n") {
				return req.Write(bw)
			}
			ua = textproto.TrimString(vs[0])
		}
	}

	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua)
		bw.WriteString("\r\n")
	}
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		bw.WriteString("Content-Length: 0\r\n") // many servers expect one
	}
	for _, k := range keys[:n] {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range req.Header[k] {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

const maxHeaders = 32

// plain reports whether req has nothing writeRequest leaves to
// Request.Write.
func plain(req *http.Request) bool {
	return !hasBody(req) && req.ContentLength == 0 && !req.Close && len(req.Trailer) == 0 &&
		len(req.TransferEncoding) == 0 && req.URL.Opaque == "" && req.Method != http.MethodConnect
}

func excluded(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return true
		}
	}
	return false
}
