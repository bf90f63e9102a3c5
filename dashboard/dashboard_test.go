package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func newServer(t *testing.T) (*Dashboard, *httptest.Server) {
	d := New(Options{Version: "v-test", Test: func(_ context.Context, name string) (any, error) {
		if name != "api" {
			return nil, ErrNotFound
		}
		return map[string]any{"connection": name, "ok": true}, nil
	}})
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return d, srv
}

func do(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestPageIsSelfContained: the page loads only its own assets, carries the
// CSRF token, and its headers forbid anything else.
func TestPageIsSelfContained(t *testing.T) {
	d, srv := newServer(t)
	resp, page := do(t, "GET", srv.URL+"/", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `<meta name="authgress-csrf" content="`+d.csrf+`">`) || !strings.Contains(page, "v-test") {
		t.Fatalf("page: %d\n%s", resp.StatusCode, page)
	}
	for _, ref := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if u := ref[1]; !strings.HasPrefix(u, "/") || strings.HasPrefix(u, "//") {
			if u != "data:," {
				t.Errorf("the page refers to %q, which is not on the admin listener", u)
			}
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, a := range []struct{ path, ctype string }{{"/assets/dashboard.js", "text/javascript"}, {"/assets/dashboard.css", "text/css"}} {
		resp, body := do(t, "GET", srv.URL+a.path, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), a.ctype) || len(body) < 100 {
			t.Errorf("%s: %d %s", a.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "@import") {
			t.Errorf("%s refers to something outside the admin listener", a.path)
		}
	}
	for _, p := range []string{"/assets/index.html", "/assets/", "/assets/nope.js", "/other"} {
		if resp, _ := do(t, "GET", srv.URL+p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestPostNeedsCSRFTokenAndSameOrigin: a POST without the token, with a
// wrong one, without Origin or from another origin gets 403.
func TestPostNeedsCSRFTokenAndSameOrigin(t *testing.T) {
	d, srv := newServer(t)
	origin := srv.URL
	cases := []struct {
		what   string
		header map[string]string
		want   int
	}{
		{"nothing", nil, 403},
		{"origin only", map[string]string{"Origin": origin}, 403},
		{"wrong token", map[string]string{"Origin": origin, CSRFHeader: d.csrf[1:]}, 403},
		{"token only", map[string]string{CSRFHeader: d.csrf}, 403},
		{"null origin", map[string]string{CSRFHeader: d.csrf, "Origin": "null"}, 403},
		{"foreign origin", map[string]string{CSRFHeader: d.csrf, "Origin": "http://evil.example"}, 403},
		{"origin with a path", map[string]string{CSRFHeader: d.csrf, "Origin": origin + "/x"}, 403},
		{"cross-site fetch", map[string]string{CSRFHeader: d.csrf, "Origin": origin, "Sec-Fetch-Site": "same-site"}, 403},
		{"token and origin", map[string]string{CSRFHeader: d.csrf, "Origin": origin}, 200},
		{"https origin behind a proxy", map[string]string{CSRFHeader: d.csrf, "Origin": strings.Replace(origin, "http:", "https:", 1)}, 200},
		{"browser same-origin", map[string]string{CSRFHeader: d.csrf, "Origin": origin, "Sec-Fetch-Site": "same-origin"}, 200},
	}
	for _, c := range cases {
		resp, body := do(t, "POST", srv.URL+"/api/test/api", c.header)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d: %s", c.what, resp.StatusCode, c.want, body)
		}
		if c.want == 200 {
			var rep map[string]any
			if err := json.Unmarshal([]byte(body), &rep); err != nil || rep["connection"] != "api" {
				t.Errorf("%s: report %s", c.what, body)
			}
		}
	}
	ok := map[string]string{CSRFHeader: d.csrf, "Origin": origin}
	if resp, _ := do(t, "POST", srv.URL+"/api/test/nope", ok); resp.StatusCode != 404 {
		t.Errorf("unknown connection: %d, want 404", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", srv.URL+"/api/test/api", nil); resp.StatusCode != 405 {
		t.Errorf("GET of the test API: %d, want 405", resp.StatusCode)
	}
	if New(Options{}).csrf == d.csrf {
		t.Error("two dashboards share a CSRF token")
	}
}

// TestTestsAreBounded: past MaxTests running tests, a POST gets 429.
func TestTestsAreBounded(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	d := New(Options{MaxTests: 1, Test: func(context.Context, string) (any, error) {
		started <- struct{}{}
		<-release
		return map[string]bool{"ok": true}, nil
	}})
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ok := map[string]string{CSRFHeader: d.csrf, "Origin": srv.URL}
	done := make(chan int)
	go func() { resp, _ := do(t, "POST", srv.URL+"/api/test/a", ok); done <- resp.StatusCode }()
	<-started
	if resp, _ := do(t, "POST", srv.URL+"/api/test/b", ok); resp.StatusCode != 429 {
		t.Errorf("second test: %d, want 429", resp.StatusCode)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Errorf("first test: %d", code)
	}
}

func TestUsers(t *testing.T) {
	u := NewUsers(map[string]string{"ops": "s3cret-pass"})
	for _, c := range []struct {
		user, pass string
		set, want  bool
	}{
		{"ops", "s3cret-pass", true, true},
		{"ops", "s3cret-pas", true, false},
		{"other", "s3cret-pass", true, false},
		{"", "", false, false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.set {
			r.SetBasicAuth(c.user, c.pass)
		}
		if name, ok := u.Check(r); ok != c.want || (ok && name != c.user) {
			t.Errorf("%q/%q: %q %v, want %v", c.user, c.pass, name, ok, c.want)
		}
	}
	w := httptest.NewRecorder()
	Challenge(w)
	if w.Code != 401 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic realm=") {
		t.Errorf("challenge: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}
