package proxy

import (
	"fmt"
	"testing"

	"github.com/authgress/authgress/conf"
)

func route(t testing.TB, name string, hosts []string, paths ...string) *Route {
	r := &Route{Name: name, Paths: paths}
	for _, h := range hosts {
		p, err := conf.ParseHostPattern(h)
		if err != nil {
			t.Fatal(err)
		}
		r.Patterns = append(r.Patterns, p)
	}
	return r
}

func TestMatchPrecedence(t *testing.T) {
	m := NewMatcher([]*Route{
		route(t, "exact_port", []string{"api.example.com:8443"}),
		route(t, "exact", []string{"api.example.com"}),
		route(t, "exact_v2", []string{"api.example.com"}, "/v2"),
		route(t, "wild", []string{"*.example.com"}),
		route(t, "wild_deep", []string{"*.eu.example.com"}),
		route(t, "wild_port", []string{"*.example.com:9443"}),
		route(t, "only_path", []string{"paths.example.org"}, "/a/b", "/c/"),
		route(t, "ipv6", []string{"[::1]:8443"}),
		route(t, "ip", []string{"10.1.2.3"}),
	})
	cases := []struct {
		host, port, path string
		want             string
	}{
		{"api.example.com", "8443", "/x", "exact_port"},
		{"api.example.com", "443", "/x", "exact"},
		{"api.example.com", "80", "/v2", "exact_v2"},
		{"api.example.com", "80", "/v2/users", "exact_v2"},
		{"api.example.com", "80", "/v20", "exact"},
		{"x.example.com", "443", "/", "wild"},
		{"a.b.example.com", "443", "/", "wild"},
		{"x.eu.example.com", "443", "/", "wild_deep"},
		{"x.example.com", "9443", "/", "wild_port"},
		{"example.com", "443", "/", ""},
		{"notexample.com", "443", "/", ""},
		{"paths.example.org", "80", "/a/b/c", "only_path"},
		{"paths.example.org", "80", "/c", "only_path"},
		{"paths.example.org", "80", "/a", ""},
		{"::1", "8443", "/", "ipv6"},
		{"::1", "443", "/", ""},
		{"10.1.2.3", "80", "/", "ip"},
	}
	for _, tc := range cases {
		got := ""
		if r, _ := m.Match(tc.host, tc.port, tc.path, false, nil); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("Match(%s, %s, %s) = %q, want %q", tc.host, tc.port, tc.path, got, tc.want)
		}
	}
	if r, _ := m.Match("paths.example.org", "443", "", true, nil); r == nil || r.Name != "only_path" {
		t.Errorf("CONNECT match of a path-only host: %v", r)
	}
}

// matcherOf builds n connections: a third exact, a third exact:port, a
// third wildcards, under distinct domains.
func matcherOf(b testing.TB, n int) *Matcher {
	routes := make([]*Route, 0, n)
	for i := 0; i < n; i++ {
		var h string
		switch i % 3 {
		case 0:
			h = fmt.Sprintf("api%d.example%d.com", i, i)
		case 1:
			h = fmt.Sprintf("api%d.example%d.com:8443", i, i)
		default:
			h = fmt.Sprintf("*.svc%d.example.net", i)
		}
		routes = append(routes, route(b, fmt.Sprint("c", i), []string{h}))
	}
	return NewMatcher(routes)
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		m := matcherOf(b, n)
		last := n - 1 - (n-1)%3 // an exact host near the end
		exact := fmt.Sprintf("api%d.example%d.com", last, last)
		wild := fmt.Sprintf("deep.a.svc%d.example.net", 2)
		for _, tc := range []struct{ name, host string }{{"exact", exact}, {"wildcard", wild}, {"miss", "nothing.example.org"}} {
			b.Run(fmt.Sprintf("%d/%s", n, tc.name), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					_, _ = m.Match(tc.host, "443", "/v1/items", false, nil)
				}
			})
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	m := matcherOf(t, 10000)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = m.Match("api9999.example9999.com", "443", "/v1", false, nil)
		_, _ = m.Match("deep.a.svc2.example.net", "443", "/v1", false, nil)
		_, _ = m.Match("nothing.example.org", "443", "/", false, nil)
	})
	if allocs != 0 {
		t.Fatalf("matching allocates %v times per lookup set", allocs)
	}
}

func TestMatchClients(t *testing.T) {
	withClients := func(r *Route, c ...string) *Route { r.Clients = c; return r }
	m := NewMatcher([]*Route{
		withClients(route(t, "app1", []string{"api.example.com"}), "app1"),
		withClients(route(t, "billing", []string{"api.example.com"}), "app2", "CN=billing"),
		route(t, "everyone", []string{"api.example.com"}, "/public"),
		withClients(route(t, "v2_app1", []string{"other.example.com"}, "/v2"), "app1"),
		route(t, "other", []string{"other.example.com"}),
	})
	for _, tc := range []struct {
		client      Client
		host, path  string
		want        string
		wantRefused bool
	}{
		{Client{User: "app1"}, "api.example.com", "/x", "app1", false},
		{Client{User: "app2"}, "api.example.com", "/x", "billing", false},
		{Client{Subject: "CN=billing,O=Acme", CN: "billing"}, "api.example.com", "/x", "billing", false},
		{Client{User: "app3"}, "api.example.com", "/x", "", true},
		{Client{}, "api.example.com", "/x", "", true},
		{Client{User: "app3"}, "api.example.com", "/public/a", "everyone", false},
		{Client{User: "app1"}, "api.example.com", "/public/a", "everyone", false}, // the longest path prefix wins first
		{Client{User: "app1"}, "other.example.com", "/v2/x", "v2_app1", false},
		{Client{User: "app2"}, "other.example.com", "/v2/x", "other", false}, // not admitted at /v2: falls through to the connection for everybody
	} {
		r, refused := m.Match(tc.host, "443", tc.path, false, &tc.client)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tc.want || refused != tc.wantRefused {
			t.Errorf("%+v %s%s: got %q refused=%v, want %q refused=%v", tc.client, tc.host, tc.path, got, refused, tc.want, tc.wantRefused)
		}
	}
	c := &Client{User: "app2"}
	if n := testing.AllocsPerRun(1000, func() { _, _ = m.Match("other.example.com", "443", "/v2/x", false, c) }); n != 0 {
		t.Fatalf("matching with clients allocates %v times", n)
	}
}
