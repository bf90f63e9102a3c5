package main

import (
	"testing"
)

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		status     int
		closeAfter bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, false},
		{"chunked with extension and trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na;x=y\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", 200, false},
		{"interim answer first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 404, false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, true},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, true},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 200, false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", 204, false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, false},
	} {
		for i := 0; i < len(tc.in); i++ {
			if _, _, _, err := parseResponse([]byte(tc.in[:i])); err != errIncomplete {
				t.Errorf("%s: the first %d bytes: %v, want errIncomplete", tc.name, i, err)
				break
			}
		}
		// An answer is followed by the next one's bytes, which stay unread.
		used, status, closeAfter, err := parseResponse([]byte(tc.in + "HTTP/1.1 200"))
		if err != nil || used != len(tc.in) || status != tc.status || closeAfter != tc.closeAfter {
			t.Errorf("%s: got %d bytes, %d, %v, %v; want %d, %d, %v", tc.name, used, status, closeAfter, err, len(tc.in), tc.status, tc.closeAfter)
		}
	}
	for _, bad := range []string{"HTTP/1.1 2x0 OK\r\n\r\n", "SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nbody to the end"} {
		if _, _, _, err := parseResponse([]byte(bad)); err == nil || err == errIncomplete {
			t.Errorf("%q: %v, want an error", bad, err)
		}
	}
}

func TestParseResponseDoesNotAllocate(t *testing.T) {
	in := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello")
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = parseResponse(in) }); n != 0 {
		t.Errorf("%v allocations per answer", n)
	}
}
