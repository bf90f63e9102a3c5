package conf

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// HostPattern is one parsed entry of a connection's hosts list.
type HostPattern struct {
	// Host is the normalised host (lower case, punycode, no trailing dot, IPv6
	// without brackets). For a wildcard it is the suffix after "*.".
	Host     string
	Port     string // empty: every port
	Wildcard bool
}

// String is the canonical form, used to detect duplicate patterns.
func (p HostPattern) String() string {
	h := p.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if p.Wildcard {
		h = "*." + h
	}
	if p.Port != "" {
		h += ":" + p.Port
	}
	return h
}

// ParseHostPattern parses "api.example.com", "api.example.com:8443",
// "*.example.com", an IPv4 literal, or a bracketed IPv6 literal.
func ParseHostPattern(s string) (HostPattern, error) {
	var p HostPattern
	s = strings.TrimSpace(s)
	if s == "" {
		return p, fmt.Errorf("empty host pattern")
	}
	if strings.Contains(s, "/") {
		return p, fmt.Errorf("%q is a URL or path, not a host: write only the host (and port), and use paths for path prefixes", s)
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 {
			return p, fmt.Errorf("%q has an invalid port", s)
		}
		host, p.Port = h, strconv.Itoa(n)
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if strings.HasPrefix(host, "*.") {
		p.Wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return p, fmt.Errorf("%q: a wildcard is only allowed as the whole first label, like *.example.com", s)
	}
	if ip := net.ParseIP(host); ip != nil {
		if p.Wildcard {
			return p, fmt.Errorf("%q: an IP address cannot be a wildcard", s)
		}
		p.Host = ip.String()
		return p, nil
	}
	norm, ok := NormalizeHost(host)
	if !ok || norm == "" {
		return p, fmt.Errorf("%q is not a valid host name", s)
	}
	if ip := net.ParseIP(norm); ip != nil { // an IP literal with a trailing dot
		if p.Wildcard {
			return p, fmt.Errorf("%q: an IP address cannot be a wildcard", s)
		}
		p.Host = ip.String()
		return p, nil
	}
	if strings.Contains(norm, ":") {
		return p, fmt.Errorf("%q is not a valid host name (an IPv6 address is written in brackets, like [::1]:8443)", s)
	}
	if p.Wildcard && !strings.Contains(norm, ".") {
		return p, fmt.Errorf("%q: a wildcard needs at least two labels after *., like *.example.com", s)
	}
	p.Host = norm
	return p, nil
}

// NormalizeHost lower-cases a host name, drops the one trailing dot of a fully
// qualified name and converts an internationalised name to punycode. It
// allocates only when the name changes. ok is false for characters no host
// name may contain and for empty labels ("a..b", ".a", "a..", ".", ""). The
// result has no upper case and no trailing dot, so normalising it again
// returns it unchanged.
func NormalizeHost(h string) (string, bool) {
	h = strings.TrimSuffix(h, ".")
	needLower, ascii := false, true
	prev := byte('.') // a leading dot is an empty label
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 0x80:
			ascii = false
		case c >= 'A' && c <= 'Z':
			needLower = true
		case c == '.':
			if prev == '.' {
				return "", false
			}
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == ':':
		default:
			return "", false
		}
		prev = c
	}
	if prev == '.' { // "" or a name that ended in two dots
		return "", false
	}
	if !ascii {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil || !isASCII(a) {
			return "", false
		}
		// IDNA maps other dots (U+3002 and the like) to '.', so the ASCII
		// form can end in a dot or hold empty labels: check it again.
		return NormalizeHost(a)
	}
	if needLower {
		return strings.ToLower(h), true
	}
	return h, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
