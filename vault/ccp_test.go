package vault

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ccpServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *CCP) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := NewCCP(CCPConfig{Name: "corp", URL: srv.URL + "/AIMWebService/api/Accounts", AppID: "authgress app", Safe: "OAuthClients", Transport: srv.Client().Transport})
	c.backoff = time.Millisecond
	return srv, c
}

func TestCCPRequestBuilding(t *testing.T) {
	var got string
	_, c := ccpServer(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery
		_, _ = io.WriteString(w, `{"Content":"s3cret","UserName":"client-1","PasswordChangeInProcess":false}`)
	})
	cases := []struct{ id, want string }{
		{"graph client", "AppID=authgress%20app&Safe=OAuthClients&Folder=Root&Object=graph%20client"},
		{"Other Safe:graph", "AppID=authgress%20app&Safe=Other%20Safe&Folder=Root&Object=graph"},
		{":graph", "AppID=authgress%20app&Safe=OAuthClients&Folder=Root&Object=graph"},
		{"S:graph:OAuth2Client", "AppID=authgress%20app&Safe=S&Folder=Root&Object=graph&PolicyID=OAuth2Client"},
	}
	for _, tc := range cases {
		s, err := c.Lookup(context.Background(), tc.id)
		if err != nil || s.ClientID != "client-1" || s.ClientSecret != "s3cret" {
			t.Fatalf("%s: %+v %v", tc.id, s, err)
		}
		if got != tc.want {
			t.Errorf("%s: query %q, want %q", tc.id, got, tc.want)
		}
	}
	for _, bad := range []string{"a:b:c:d", "S:a+b", "S:a;b", "S:", "S:a%b"} {
		if _, err := c.Lookup(context.Background(), bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// TestCCPErrorTable covers every row of CyberArk's documented error table
// (research domain.md §1.4) plus IIS-style and HTML failures.
func TestCCPErrorTable(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		kind   error
		code   string
		tries  int64
	}{
		{"invalid query", 400, `{"ErrorCode":"AIMWS030E","ErrorMsg":"Invalid query format"}`, ErrNotFound, "AIMWS030E", 1},
		{"too many objects", 400, `{"ErrorCode":"APPAP227E","ErrorMsg":"Too many objects"}`, ErrNotFound, "APPAP227E", 1},
		{"vault connection", 400, `{"ErrorCode":"APPAP007E","ErrorMsg":"Connection to the Vault has failed"}`, ErrUnavailable, "APPAP007E", 3},
		{"invalid content", 400, `{"ErrorCode":"APPAP081E","ErrorMsg":"Request message content is invalid"}`, ErrNotFound, "APPAP081E", 1},
		{"invalid user chars", 400, `{"ErrorCode":"CASVL010E","ErrorMsg":"Invalid characters in User Name"}`, ErrNotFound, "CASVL010E", 1},
		{"appid required", 400, `{"ErrorCode":"AIMWS031E","ErrorMsg":"AppID parameter is required"}`, ErrNotFound, "AIMWS031E", 1},
		{"auth check", 403, `{"ErrorCode":"APPAP306E","ErrorMsg":"App failed on authentication check"}`, ErrNotFound, "APPAP306E", 1},
		{"unknown app", 403, `{"ErrorCode":"APPAP008E","ErrorMsg":"ITATS982E User app11 is not defined"}`, ErrNotFound, "APPAP008E", 1},
		{"not found", 404, `{"ErrorCode":"APPAP004E","ErrorMsg":"Password object matching query [Safe=S;Folder=Root;Object=x] was not found"}`, ErrNotFound, "APPAP004E", 1},
		{"password changing", 500, `{"ErrorCode":"APPAP282E","ErrorMsg":"Password is currently being changed"}`, ErrUnavailable, "APPAP282E", 3},
		{"iis error", 500, `{"Message":"An error has occurred."}`, ErrUnavailable, "", 3},
		{"html 503", 503, `<html><body>Service Unavailable</body></html>`, ErrUnavailable, "", 3},
		{"redirect", 302, ``, ErrUnavailable, "", 3},
		{"200 not json", 200, `<html>login</html>`, ErrUnavailable, "", 3},
		{"empty content", 200, `{"Content":"","UserName":"u"}`, ErrNotFound, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tries atomic.Int64
			_, c := ccpServer(t, func(w http.ResponseWriter, r *http.Request) {
				tries.Add(1)
				if tc.status == 302 {
					w.Header().Set("Location", "https://elsewhere.example/")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			_, err := c.Lookup(context.Background(), "S:obj")
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tc.kind) || e.Code != tc.code {
				t.Fatalf("err = %v (%#v), want kind %v code %q", err, e, tc.kind, tc.code)
			}
			if tc.code != "" && !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("the CyberArk code is not in the message: %v", err)
			}
			if tries.Load() != tc.tries {
				t.Fatalf("%d requests, want %d (transient errors are retried, others not)", tries.Load(), tc.tries)
			}
		})
	}
}

func TestCCPPasswordChangeInProcessCachesBriefly(t *testing.T) {
	for _, flag := range []string{`true`, `"True"`} {
		_, c := ccpServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"Content":"old-but-valid","UserName":"u","PasswordChangeInProcess":`+flag+`}`)
		})
		s, err := c.Lookup(context.Background(), "S:obj")
		if err != nil || s.ClientSecret != "old-but-valid" || s.cacheFor != passwordChangeTTL {
			t.Fatalf("%s: %+v %v", flag, s, err)
		}
	}
}

func TestCCPResponseIsCapped(t *testing.T) {
	_, c := ccpServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"Content":"`+strings.Repeat("x", MaxResponse)+`"}`)
	})
	if _, err := c.Lookup(context.Background(), "S:obj"); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("err = %v", err)
	}
}

// TestCCPEchoedSecretIsRedacted: a CCP whose ErrorMsg (or an IIS Message)
// quotes a secret the process read before gets it redacted.
func TestCCPEchoedSecretIsRedacted(t *testing.T) {
	const secret = "ccp-canary-secret-42"
	var calls atomic.Int64
	_, c := ccpServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			_, _ = io.WriteString(w, `{"Content":"`+secret+`","UserName":"client-1"}`)
		case 2:
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"ErrorCode":"APPAP004E","ErrorMsg":"Password object `+secret+` not found"}`)
		default:
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"Message":"bad request for `+secret+`"}`)
		}
	})
	cached := NewCached("corp", c, 0, 0, time.Second) // cache_ttl 0: every Get asks the CCP
	if s, err := cached.Get(context.Background(), "graph"); err != nil || s.ClientSecret != secret {
		t.Fatalf("first lookup: %v", err)
	}
	for i := 0; i < 2; i++ {
		_, err := cached.Get(context.Background(), "graph")
		if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[redacted]") {
			t.Fatalf("lookup %d: %v", i+2, err)
		}
	}
}
