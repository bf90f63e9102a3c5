package proxy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/authgress/authgress/conf"
)

// fuzzRoutes is a fixed set of connections with every pattern kind and
// split paths, without overlaps (as check guarantees).
func fuzzRoutes(t testing.TB) []*Route {
	return []*Route{
		route(t, "exact", []string{"api.example.com"}),
		route(t, "exact_port", []string{"api.example.com:8443"}),
		route(t, "exact_v1", []string{"api.example.com"}, "/v1"),
		route(t, "exact_v1_deep", []string{"api.example.com"}, "/v1/deep"),
		route(t, "wild", []string{"*.example.com"}),
		route(t, "wild_port", []string{"*.example.com:8443"}),
		route(t, "wild_deeper", []string{"*.svc.example.com"}, "/api"),
		route(t, "wild_other", []string{"*.example.org"}, "/x", "/y/z"),
		route(t, "ip", []string{"10.0.0.1"}),
		route(t, "ip_port", []string{"[::1]:9000"}),
	}
}

// referenceMatch is the matching rule written plainly: of every pattern
// and path prefix that matches, take the most specific pattern (exact+port
// > exact > longer wildcard suffix, port-specific first), then the longest
// path prefix.
func referenceMatch(routes []*Route, host, port, path string) *Route {
	var best *Route
	bestRank, bestPrefix := -1, -1
	for _, r := range routes {
		for _, p := range r.Patterns {
			rank := -1
			switch {
			case !p.Wildcard && p.Host == host && p.Port == port:
				rank = 1 << 20
			case !p.Wildcard && p.Host == host && p.Port == "":
				rank = 1 << 19
			case p.Wildcard && strings.HasSuffix(host, "."+p.Host) && (p.Port == "" || p.Port == port):
				rank = len(p.Host) * 2
				if p.Port != "" {
					rank++
				}
			}
			if rank < 0 {
				continue
			}
			prefixes := r.Paths
			if len(prefixes) == 0 {
				prefixes = []string{""}
			}
			for _, pfx := range prefixes {
				pfx = strings.TrimSuffix(pfx, "/")
				if !pathHasPrefix(path, pfx) {
					continue
				}
				if rank > bestRank || rank == bestRank && len(pfx) > bestPrefix {
					best, bestRank, bestPrefix = r, rank, len(pfx)
				}
			}
		}
	}
	return best
}

func FuzzMatchAgainstReference(f *testing.F) {
	for _, s := range [][3]string{
		{"api.example.com", "443", "/v1/x"}, {"API.example.com.", "8443", "/"}, {"a.svc.example.com", "80", "/api/x"},
		{"b.example.org", "443", "/y/z/w"}, {"example.com", "443", "/"}, {"10.0.0.1", "1", ""}, {"::1", "9000", "/"},
		{"x.example.com", "8443", "/v1"}, {"api.example.com", "443", "/v1/deeper"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	routes := fuzzRoutes(f)
	m := NewMatcher(routes)
	f.Fuzz(func(t *testing.T, rawHost, port, path string) {
		host, ok := conf.NormalizeHost(rawHost)
		if !ok || host == "" {
			return
		}
		got, _ := m.Match(host, port, path, false, nil)
		want := referenceMatch(routes, host, port, path)
		if got != want {
			t.Fatalf("Match(%q, %q, %q) = %v, reference %v", host, port, path, name(got), name(want))
		}
	})
}

func name(r *Route) string {
	if r == nil {
		return "<none>"
	}
	return r.Name
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/v1/../v2", "/v1/%2e%2e/v2", "/a%2fb", "/%7euser", "/./x/.", "/..", "/a//b", "/%41%42", "/%zz", "/v1/%2E%2e/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		u, err := url.Parse("http://h" + p)
		if err != nil || u.Host != "h" {
			return
		}
		norm, ok := normalizePath(u)
		if !ok {
			return
		}
		if u.EscapedPath() != norm && !(norm == "" && u.EscapedPath() == "") {
			t.Fatalf("%q: matched as %q but sent upstream as %q", p, norm, u.EscapedPath())
		}
		for _, seg := range strings.Split(norm, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q: %q keeps a dot segment", p, norm)
			}
		}
		for i := 0; i+2 < len(norm); i++ {
			if norm[i] == '%' {
				hi, _ := unhex(norm[i+1])
				lo, _ := unhex(norm[i+2])
				if isUnreserved(hi<<4|lo) || norm[i+1] != upperHex[hi] || norm[i+2] != upperHex[lo] {
					t.Fatalf("%q: %q keeps a non-canonical escape", p, norm)
				}
			}
		}
		again, ok := normalizePath(&url.URL{Path: u.Path, RawPath: u.RawPath})
		if !ok || again != norm {
			t.Fatalf("%q: not idempotent: %q then %q (%v)", p, norm, again, ok)
		}
	})
}
