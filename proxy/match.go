package proxy

import (
	"sort"
	"strings"
)

// Matcher finds the connection for a request: exact host+port, then exact
// host, then the longest wildcard suffix (port-specific before any-port at
// each level); within the winning level, the longest path prefix. A level
// whose entries all have non-matching paths falls through to the next.
// Lookups do not allocate for ASCII lower-case hosts.
type Matcher struct {
	exactPort map[hostPort][]entry
	exact     map[string][]entry
	wildPort  map[hostPort][]entry
	wild      map[string][]entry
}

type hostPort struct{ host, port string }

type entry struct {
	prefix  string   // "" matches every path
	clients []string // nil: every client
	route   *Route
}

// NewMatcher indexes the routes' host patterns and paths.
func NewMatcher(routes []*Route) *Matcher {
	m := &Matcher{exactPort: map[hostPort][]entry{}, exact: map[string][]entry{}, wildPort: map[hostPort][]entry{}, wild: map[string][]entry{}}
	for _, r := range routes {
		prefixes := r.Paths
		if len(prefixes) == 0 {
			prefixes = []string{""}
		}
		for _, pat := range r.Patterns {
			for _, pfx := range prefixes {
				e := entry{prefix: strings.TrimSuffix(pfx, "/"), clients: r.Clients, route: r}
				switch {
				case pat.Wildcard && pat.Port != "":
					k := hostPort{pat.Host, pat.Port}
					m.wildPort[k] = append(m.wildPort[k], e)
				case pat.Wildcard:
					m.wild[pat.Host] = append(m.wild[pat.Host], e)
				case pat.Port != "":
					k := hostPort{pat.Host, pat.Port}
					m.exactPort[k] = append(m.exactPort[k], e)
				default:
					m.exact[pat.Host] = append(m.exact[pat.Host], e)
				}
			}
		}
	}
	for _, idx := range []map[string][]entry{m.exact, m.wild} {
		for _, es := range idx {
			sortEntries(es)
		}
	}
	for _, idx := range []map[hostPort][]entry{m.exactPort, m.wildPort} {
		for _, es := range idx {
			sortEntries(es)
		}
	}
	return m
}

// sortEntries orders a level: longest path prefix first and, for one
// prefix, connections restricted to clients before the one for everybody.
func sortEntries(es []entry) {
	sort.SliceStable(es, func(i, j int) bool {
		if len(es[i].prefix) != len(es[j].prefix) {
			return len(es[i].prefix) > len(es[j].prefix)
		}
		return es[i].clients != nil && es[j].clients == nil
	})
}

// Match returns the route for a normalised host, a port ("80", "443", …), a
// path and a client, or nil. anyPath matches a host whatever its paths
// (CONNECT). A connection restricted to clients is skipped for others, who
// fall through to a connection without clients; refused reports that a
// connection matched the request but did not admit the client (and none
// admitted it).
func (m *Matcher) Match(host, port, path string, anyPath bool, client *Client) (r *Route, refused bool) {
	if r = pick(m.exactPort[hostPort{host, port}], path, anyPath, client, &refused); r != nil {
		return r, false
	}
	if r = pick(m.exact[host], path, anyPath, client, &refused); r != nil {
		return r, false
	}
	for i := 0; i < len(host); i++ {
		if host[i] != '.' {
			continue
		}
		suffix := host[i+1:]
		if r = pick(m.wildPort[hostPort{suffix, port}], path, anyPath, client, &refused); r != nil {
			return r, false
		}
		if r = pick(m.wild[suffix], path, anyPath, client, &refused); r != nil {
			return r, false
		}
	}
	return nil, refused
}

func pick(es []entry, path string, anyPath bool, client *Client, refused *bool) *Route {
	for _, e := range es {
		if !anyPath && !pathHasPrefix(path, e.prefix) {
			continue
		}
		if e.clients != nil && !client.admittedBy(e.clients) {
			*refused = true
			continue
		}
		return e.route
	}
	return nil
}

// pathHasPrefix matches whole segments: "/v1" matches "/v1" and "/v1/x", not "/v10".
func pathHasPrefix(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}
