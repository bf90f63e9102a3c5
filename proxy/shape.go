package proxy

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// ShapeListener wraps a listener whose connections an http.Server serves,
// so that the answers net/http writes by itself before any handler runs —
// 400 (unparsable request), 431 (headers larger than max_header_bytes), 501
// (unknown transfer coding), 505 — carry X-Authgress-Error: bad_request and
// the JSON error body like every other authgress answer. net/http writes
// them in one Write straight to the connection, in a fixed shape that no
// handler's response has (its first header is Content-Type, and there is no
// Date), so they can be recognised exactly.
func ShapeListener(ln net.Listener) net.Listener { return shapeListener{ln} }

type shapeListener struct{ net.Listener }

func (l shapeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &shapeConn{Conn: c}, nil
}

type shapeConn struct {
	net.Conn
	once sync.Once
}

// goErrorHeaders is what net/http's server puts between the status line and
// the body of the answers it writes without a handler.
var goErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

func (c *shapeConn) Write(p []byte) (int, error) {
	if shaped := shapeGoError(p); shaped != nil {
		if _, err := c.Conn.Write(shaped); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// shapeGoError returns the JSON form of one of net/http's own error
// answers, or nil if p is not one.
func shapeGoError(p []byte) []byte {
	if len(p) < 13 || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return nil
	}
	i := bytes.Index(p, goErrorHeaders)
	if i < 0 || bytes.IndexByte(p[:i], '\n') >= 0 {
		return nil // not directly after the status line: a handler's response
	}
	status, err := strconv.Atoi(string(p[9:12]))
	if err != nil || status < 400 || status > 599 {
		return nil
	}
	return BadRequestAnswer(status, string(p[i+len(goErrorHeaders):]))
}

// BadRequestAnswer is authgress's answer to a request the server could not
// parse: X-Authgress-Error: bad_request and the JSON error body, with the
// server's status (400, 417, 431, 501, 505) and its text as the detail.
// The whole response, Connection: close included.
func BadRequestAnswer(status int, detail string) []byte {
	if len(detail) > 200 {
		detail = detail[:200]
	}
	recordRequest(nil, CodeBadRequest, status, 0)
	f := &Failure{Code: CodeBadRequest, Message: "the request could not be parsed (" + headlineText(detail) + ")"}
	resp := f.Response(nil)
	resp.StatusCode, resp.Status = status, strconv.Itoa(status)+" "+http.StatusText(status)
	resp.Close = true
	var b bytes.Buffer
	_ = resp.Write(&b)
	return b.Bytes()
}
