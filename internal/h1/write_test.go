package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// writeRequest must write exactly what Request.Write writes.
func TestWriteRequestMatchesNetHTTP(t *testing.T) {
	many := http.Header{}
	for i := 0; i < 40; i++ {
		many.Set("X-H"+strings.Repeat("a", i), "v")
	}
	cases := []struct {
		method, url string
		header      http.Header
		host        string
		body        io.Reader
		close       bool
	}{
		{method: "GET", url: "http://api.example.com/v1/items"},
		{method: "GET", url: "http://api.example.com:8080/v1/items?a=1&b=%20x", header: http.Header{"Authorization": {"Bearer t"}, "Accept": {"a", "b"}}},
		{method: "", url: "http://h/"},
		{method: "GET", url: "http://h", header: http.Header{"User-Agent": {" curl/8 "}}},
		{method: "GET", url: "http://h/", header: http.Header{"User-Agent": {""}}},
		{method: "GET", url: "http://h/", header: http.Header{"User-Agent": {}}},
		{method: "GET", url: "http://h/", header: http.Header{"User-Agent": {"a\r\nb"}}},
		{method: "POST", url: "http://h/x"},
		{method: "PUT", url: "http://h/x"},
		{method: "PATCH", url: "http://h/x"},
		{method: "DELETE", url: "http://h/x"},
		{method: "OPTIONS", url: "http://h/*"},
		{method: "HEAD", url: "http://h/x"},
		{method: "GET", url: "http://h/x", host: "other.example:81"},
		{method: "GET", url: "http://h/x", host: "bad host/"},
		{method: "GET", url: "http://[::1]:80/x"},
		{method: "GET", url: "http://h/caf%C3%A9/a%2Fb"},
		{method: "GET", url: "http://h/x?", header: http.Header{"X-Multi": {" a ", "b\t"}}},
		{method: "GET", url: "http://h/x", header: http.Header{"Bad Name": {"x"}, "Ok": {"y"}}},
		{method: "GET", url: "http://h/x", header: http.Header{"X-Nl": {"a\nb"}}},
		{method: "GET", url: "http://h/x", header: http.Header{"Host": {"ignored"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"x"}}},
		{method: "GET", url: "http://h/x", header: many},
		{method: "GET", url: "http://h/x", close: true},
		{method: "POST", url: "http://h/x", body: strings.NewReader("body")},
		{method: "GET", url: "http://bücher.example/x"},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, tc.url, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if tc.header != nil {
			req.Header = tc.header.Clone()
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		req.Close = tc.close
		var want bytes.Buffer
		if err := req.Clone(req.Context()).Write(&want); err != nil {
			t.Fatal(err)
		}
		if tc.body != nil {
			req, _ = http.NewRequest(tc.method, tc.url, strings.NewReader("body"))
		}
		var got bytes.Buffer
		bw := bufio.NewWriter(&got)
		if err := writeRequest(bw, req); err != nil {
			t.Fatal(err)
		}
		_ = bw.Flush()
		if got.String() != want.String() {
			t.Errorf("%s %s:\n got %q\nwant %q", tc.method, tc.url, got.String(), want.String())
		}
	}
}

func TestWriteRequestDoesNotAllocate(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://api.example.com/v1/items?x=1", nil)
	req.Header.Set("Authorization", "Bearer abc")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("User-Agent", "curl/8.0")
	bw := bufio.NewWriter(io.Discard)
	if n := testing.AllocsPerRun(100, func() { _ = writeRequest(bw, req) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
