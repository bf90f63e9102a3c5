package proxy

import (
	"net/url"
	"strings"
)

// normalizePath returns the path a request is matched by (RFC 3986 §6.2.2):
// percent-escapes of unreserved characters decoded, other escapes with
// upper-case hex, dot segments removed. "/v1/%2e%2e/v2" and "/v1/../v2" are
// matched as "/v2"; "%2F" stays an escaped byte inside one segment. When the
// path changes, u is rewritten so that the upstream gets the path that was
// matched. ok is false for bad escapes and for dot segments that climb above
// the root.
func normalizePath(u *url.URL) (string, bool) {
	raw := u.EscapedPath()
	if !needsNormalizing(raw) {
		return raw, true // the common case: no escapes, no dot segments; no allocation
	}
	dec, ok := decodeUnreserved(raw)
	if !ok {
		return "", false
	}
	norm, ok := removeDotSegments(dec)
	if !ok {
		return "", false
	}
	if norm != raw {
		p, err := url.PathUnescape(norm)
		if err != nil {
			return "", false
		}
		u.Path, u.RawPath = p, norm
	}
	return norm, true
}

func needsNormalizing(p string) bool {
	if strings.IndexByte(p, '%') >= 0 {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '.' && (i == 0 || p[i-1] == '/') {
			return true
		}
	}
	return false
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const upperHex = "0123456789ABCDEF"

func decodeUnreserved(p string) (string, bool) {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		if c := hi<<4 | lo; isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[hi])
			b.WriteByte(upperHex[lo])
		}
		i += 2
	}
	return b.String(), true
}

// removeDotSegments drops "." segments and resolves ".." against the
// segment before it. A ".." with nothing left to remove makes the path
// invalid: a client that climbs above the root is refused, not clamped.
func removeDotSegments(p string) (string, bool) {
	if p == "" {
		return p, true
	}
	abs := p[0] == '/'
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			trailing = last
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	res := strings.Join(out, "/")
	if trailing && res != "" {
		res += "/"
	}
	if abs {
		res = "/" + res
	}
	return res, true
}
