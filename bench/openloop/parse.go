package main

import (
	"bytes"
	"errors"
)

var (
	errIncomplete = errors.New("incomplete answer")
	errMalformed  = errors.New("malformed answer")
	errNoLength   = errors.New("an answer without Content-Length or chunked encoding (not supported)")
)

var (
	hdrContentLength    = []byte("content-length")
	hdrTransferEncoding = []byte("transfer-encoding")
	hdrConnection       = []byte("connection")
	tokChunked          = []byte("chunked")
	tokClose            = []byte("close")
	tokKeepAlive        = []byte("keep-alive")
	http1               = []byte("HTTP/1.")
)

// parseResponse parses the answer at the start of buf without allocating:
// used is its length in bytes (interim 1xx answers before it included);
// closeAfter says the server will close the connection after it.
// errIncomplete: buf does not hold all of it yet.
func parseResponse(buf []byte) (used, status int, closeAfter bool, err error) {
	for {
		n, st, ca, err := parseOne(buf[used:])
		if err != nil {
			return 0, 0, false, err
		}
		used += n
		if st >= 100 && st < 200 && st != 101 {
			continue // an interim answer: the real one follows
		}
		return used, st, ca, nil
	}
}

func parseOne(buf []byte) (used, status int, closeAfter bool, err error) {
	line, rest, ok := cutLine(buf)
	if !ok {
		if len(buf) >= 12 && !bytes.HasPrefix(buf, http1) {
			return 0, 0, false, errMalformed
		}
		return 0, 0, false, errIncomplete
	}
	if len(line) < 12 || !bytes.HasPrefix(line, http1) || line[8] != ' ' {
		return 0, 0, false, errMalformed
	}
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return 0, 0, false, errMalformed
		}
		status = status*10 + int(b-'0')
	}
	http10 := line[7] == '0'
	closeAfter = http10
	length, chunked := -1, false
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return 0, 0, false, errIncomplete
		}
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, false, errMalformed
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, hdrContentLength):
			if len(v) == 0 || len(v) > 15 {
				return 0, 0, false, errMalformed
			}
			length = 0
			for _, b := range v {
				if b < '0' || b > '9' {
					return 0, 0, false, errMalformed
				}
				length = length*10 + int(b-'0')
			}
		case bytes.EqualFold(k, hdrTransferEncoding):
			chunked = containsFold(v, tokChunked)
		case bytes.EqualFold(k, hdrConnection):
			if containsFold(v, tokClose) {
				closeAfter = true
			} else if http10 && containsFold(v, tokKeepAlive) {
				closeAfter = false
			}
		}
	}
	head := len(buf) - len(rest)
	switch {
	case status < 200 || status == 204 || status == 304:
		return head, status, closeAfter, nil
	case chunked:
		n, err := chunkedLen(rest)
		return head + n, status, closeAfter, err
	case length >= 0:
		if len(rest) < length {
			return 0, 0, false, errIncomplete
		}
		return head + length, status, closeAfter, nil
	}
	return 0, 0, false, errNoLength
}

// cutLine splits off one line (without its CRLF or LF).
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

func containsFold(s, tok []byte) bool {
	for i := 0; i+len(tok) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(tok)], tok) {
			return true
		}
	}
	return false
}

// chunkedLen is the length of the chunked body (and trailer) at the start
// of b.
func chunkedLen(b []byte) (int, error) {
	used := 0
	for {
		line, rest, ok := cutLine(b[used:])
		if !ok {
			return 0, errIncomplete
		}
		size, digits := 0, 0
		for _, c := range line {
			v := 255
			switch {
			case c >= '0' && c <= '9':
				v = int(c - '0')
			case c >= 'a' && c <= 'f':
				v = int(c-'a') + 10
			case c >= 'A' && c <= 'F':
				v = int(c-'A') + 10
			}
			if v == 255 {
				break // a chunk extension, or the end of the size
			}
			if digits++; digits > 15 {
				return 0, errMalformed
			}
			size = size<<4 | v
		}
		if digits == 0 {
			return 0, errMalformed
		}
		used = len(b) - len(rest)
		if size == 0 {
			for { // the trailer, up to an empty line
				line, rest, ok = cutLine(b[used:])
				if !ok {
					return 0, errIncomplete
				}
				used = len(b) - len(rest)
				if len(line) == 0 {
					return used, nil
				}
			}
		}
		if len(b)-used < size {
			return 0, errIncomplete
		}
		used += size
		line, rest, ok = cutLine(b[used:])
		if !ok {
			return 0, errIncomplete
		}
		if len(line) != 0 {
			return 0, errMalformed
		}
		used = len(b) - len(rest)
	}
}
