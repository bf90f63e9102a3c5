package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/authgress/authgress/tokencache"
)

func TestDecide(t *testing.T) {
	withToken := func(r *Route) *Route { r.Token = &tokencache.Slot{}; return r }
	routes := []*Route{
		withToken(route(t, "v1", []string{"api.example.com"}, "/v1")),
		route(t, "v2", []string{"api.example.com"}, "/v2"),
		withToken(route(t, "wild", []string{"*.svc.example"})),
	}
	deny := &decider{match: NewMatcher(routes)}
	tunnel := &decider{match: NewMatcher(routes), tunnelUnknown: true, intercept: true}
	pin := &tunnelTarget{host: "api.example.com", port: "443"}

	for _, tc := range []struct {
		name       string
		d          *decider
		method     string
		target     string // absolute URI, or origin-form with pin
		host       string // Host header (inside a tunnel)
		pin        *tunnelTarget
		action     Action
		conn, code string
		reason     string
	}{
		{"token route", deny, "GET", "http://api.example.com/v1/x", "", nil, ActionInject, "v1", "", ReasonMatched},
		{"route without credential", deny, "GET", "http://api.example.com/v2", "", nil, ActionUpgrade, "v2", "", ReasonMatched},
		{"dot segments are removed before matching", deny, "GET", "http://api.example.com/v1/../v2/x", "", nil, ActionUpgrade, "v2", "", ReasonMatched},
		{"escaped dot segments too", deny, "GET", "http://api.example.com/v1/%2e%2e/v2", "", nil, ActionUpgrade, "v2", "", ReasonMatched},
		{"escaped unreserved letters", deny, "GET", "http://api.example.com/%76%31/x", "", nil, ActionInject, "v1", "", ReasonMatched},
		{"escaped slash stays inside its segment", deny, "GET", "http://api.example.com/v1%2Fx", "", nil, ActionDeny, "", CodeEgressDenied, ReasonUnmatchedDenied},
		{"climbing above the root is refused", deny, "GET", "http://api.example.com/../v1", "", nil, ActionDeny, "", CodeBadRequest, ReasonBadPath},
		{"TRACE on a credential route", deny, "TRACE", "http://api.example.com/v1", "", nil, ActionDeny, "v1", CodeBadRequest, ReasonTrace},
		{"TRACE without a credential passes", deny, "TRACE", "http://api.example.com/v2", "", nil, ActionUpgrade, "v2", "", ReasonMatched},
		{"unmatched, deny", deny, "GET", "http://other.example/", "", nil, ActionDeny, "", CodeEgressDenied, ReasonUnmatchedDenied},
		{"unmatched, tunnel policy", tunnel, "GET", "http://other.example/", "", nil, ActionForward, "", "", ReasonUnmatchedTunnel},
		{"inside a tunnel: pinned", tunnel, "GET", "/v1/x", "api.example.com", pin, ActionInject, "v1", "", ReasonPinned},
		{"inside a tunnel: :443 may be written", tunnel, "GET", "/v1/x", "api.example.com:443", pin, ActionInject, "v1", "", ReasonPinned},
		{"inside a tunnel: Host names another host", tunnel, "GET", "/v1/x", "wild.svc.example", pin, ActionDeny, "", CodeMisdirected, ReasonMisdirected},
		{"inside a tunnel: another port", tunnel, "GET", "/v1/x", "api.example.com:8443", pin, ActionDeny, "", CodeMisdirected, ReasonMisdirected},
		{"inside a tunnel: absolute URI to another host", tunnel, "GET", "https://wild.svc.example/v1", "api.example.com", pin, ActionDeny, "", CodeMisdirected, ReasonMisdirected},
		{"inside a tunnel: unmatched path follows the policy", tunnel, "GET", "/v3", "api.example.com", pin, ActionForward, "", "", ReasonUnmatchedTunnel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, nil)
			if tc.host != "" {
				r.Host = tc.host
			}
			got := tc.d.request(r, tc.pin, &Client{})
			code := ""
			if got.Failure != nil {
				code = got.Failure.Code
			}
			if got.Action != tc.action || got.connection() != tc.conn || code != tc.code || got.Reason != tc.reason {
				t.Fatalf("got %s conn=%q code=%q reason=%q; want %s conn=%q code=%q reason=%q",
					got.Action, got.connection(), code, got.Reason, tc.action, tc.conn, tc.code, tc.reason)
			}
		})
	}
}

func TestDecideConnect(t *testing.T) {
	routes := []*Route{route(t, "api", []string{"api.example.com"}, "/v1")}
	for _, tc := range []struct {
		name   string
		d      *decider
		target string
		action Action
		code   string
	}{
		{"matched, interception on", &decider{match: NewMatcher(routes), intercept: true}, "api.example.com:443", ActionIntercept, ""},
		{"matched host whatever its paths", &decider{match: NewMatcher(routes), intercept: true}, "API.example.com.:443", ActionIntercept, ""},
		{"matched, interception off", &decider{match: NewMatcher(routes)}, "api.example.com:443", ActionDeny, CodeInterceptDisabled},
		{"unmatched, deny", &decider{match: NewMatcher(routes), intercept: true}, "other.example:443", ActionDeny, CodeEgressDenied},
		{"unmatched, tunnel: never intercepted", &decider{match: NewMatcher(routes), intercept: true, tunnelUnknown: true}, "other.example:443", ActionTunnel, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{Method: http.MethodConnect, Host: tc.target, URL: &url.URL{Host: tc.target}}
			got := tc.d.connect(r, &Client{})
			code := ""
			if got.Failure != nil {
				code = got.Failure.Code
			}
			if got.Action != tc.action || code != tc.code {
				t.Fatalf("got %s %q, want %s %q", got.Action, code, tc.action, tc.code)
			}
		})
	}
}

func TestInterceptDisabledMessageKeepsThePort(t *testing.T) {
	for _, tc := range []struct{ port, url string }{{"443", "http://api.example.com/..."}, {"8443", "http://api.example.com:8443/..."}} {
		f := interceptDisabled("api", "api.example.com", tc.port)
		resp := f.Response(nil)
		msg := resp.Header.Get(MessageHeader)
		if !contains(msg, tc.url) || !contains(resp.Status, tc.url) {
			t.Fatalf("port %s: header %q, status %q: want %s in both", tc.port, msg, resp.Status, tc.url)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/v1/items", "/v1/items", true},
		{"/v1/../v2", "/v2", true},
		{"/v1/./x/", "/v1/x/", true},
		{"/v1/%2e%2E/v2", "/v2", true},
		{"/a%2fb", "/a%2Fb", true},
		{"/%7euser", "/~user", true},
		{"/v1/..", "/", true},
		{"/..", "", false},
		{"/a/../../b", "", false},
		{"", "", true},
	} {
		u := &url.URL{}
		if tc.in != "" {
			var err error
			if u, err = url.Parse("http://h" + tc.in); err != nil {
				t.Fatalf("%q: %v", tc.in, err)
			}
		}
		got, ok := normalizePath(u)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("normalizePath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && u.EscapedPath() != got && tc.in != "" {
			t.Errorf("%q: the URL sent upstream has %q, matched %q", tc.in, u.EscapedPath(), got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = normalizePath(&url.URL{Path: "/v1/items"}) }); n != 0 {
		t.Errorf("a plain path allocates %v times", n)
	}
}
