package vault

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/safetext"
)

// fuzzCanary is a secret the process knows: no error may quote it.
const fuzzCanary = "fuzz-canary-secret"

func fuzzCCP() *CCP {
	return NewCCP(CCPConfig{Name: "corp", URL: "https://ccp.example.com/AIMWebService/api/Accounts", AppID: "authgress app", Safe: "OAuthClients"})
}

// FuzzCCPResponse: whatever the CCP answers, parsing does not panic; an
// accepted account has a non-empty secret (and a client id, or an error that
// says it has none); a failure is a classified *Error whose text has no
// control characters and no known secret.
func FuzzCCPResponse(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{200, `{"Content":"s3cret","UserName":"client-1","PasswordChangeInProcess":false}`},
		{200, `{"Content":"s3cret","UserName":"client-1","PasswordChangeInProcess":"True"}`},
		{200, `{"Content":"s3cret"}`},
		{200, `{"Content":"","UserName":"u"}`},
		{200, `{"Content":"s3cret","ErrorCode":"APPAP282E","ErrorMsg":"Password change in process"}`},
		{404, `{"ErrorCode":"APPAP004E","ErrorMsg":"Password object matching query [Safe=OAuthClients;Object=x] was not found (Diagnostic Info: 5)"}`},
		{500, `{"ErrorCode":"APPAP007E","ErrorMsg":"Connection to the Vault has failed"}`},
		{403, `{"ErrorCode":"APPAP306E","ErrorMsg":"Failed to verify application authentication data ` + fuzzCanary + `"}`},
		{400, `{"ErrorCode":"AIMWS031E","ErrorMsg":"Invalid query format: AppID must be specified"}`},
		{400, `{"Message":"The request is invalid. ` + fuzzCanary + `\u0000"}`},
		{500, `<html><body>Server Error</body></html>`},
		{302, ``},
		{429, `{}`},
		{200, `not json`},
		{200, `{"Content":"s3cret","UserName":"client-1","Address":"login.example.com","Folder":"Root","Safe":"OAuthClients"}`},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body))
	}
	c := fuzzCCP()
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			t.Skip()
		}
		safetext.Register(fuzzCanary)
		s, err := c.parse(status, body, "OAuthClients:graph")
		if err == nil {
			if status != 200 || s.ClientSecret == "" {
				t.Fatalf("accepted: HTTP %d, secret %d bytes", status, len(s.ClientSecret))
			}
			if (s.ClientID == "") != (s.CheckClientID() != nil) {
				t.Fatalf("client id %q, CheckClientID %v", s.ClientID, s.CheckClientID())
			}
			if s.cacheFor != 0 && s.cacheFor != passwordChangeTTL {
				t.Fatalf("cacheFor %v", s.cacheFor)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !(errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable)) {
			t.Fatalf("unclassified failure %T: %v", err, err)
		}
		if _, transient := ccpTransient[e.Code]; transient && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("transient code %s classified as %v", e.Code, e.Kind)
		}
		msg := err.Error()
		if strings.Contains(msg, fuzzCanary) {
			t.Fatalf("the error quotes a known secret: %q", msg)
		}
		for _, r := range msg {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in the error: %q", msg)
			}
		}
	})
}

// FuzzCCPQuery: whatever the credential ID, building the query does not
// panic, and an accepted ID gives exactly the query CyberArk reads back as
// that ID's safe, object and platform: no parameter injected, none lost.
func FuzzCCPQuery(f *testing.F) {
	for _, id := range []string{"graph client", "Other Safe:graph", ":graph", "S:graph:OAuth2Client", "a:b:c:d", "S:a+b", "S:a;b", "S:",
		"S:a%b", "S:a&Object=evil", "S:a#frag", "S:a?b=c", "S:ü/ö", "S:a\x00b", "S:a\r\nX-Header: 1", ""} {
		f.Add(id)
	}
	c := fuzzCCP()
	f.Fuzz(func(t *testing.T, id string) {
		u, err := c.query(id)
		if err != nil {
			return
		}
		safe, object, policy, perr := conf.ParseCCPID(id)
		if perr != nil {
			t.Fatalf("query accepted an ID that ParseCCPID refuses (%v): %q", perr, id)
		}
		if safe == "" {
			safe = c.safe
		}
		p, err := url.Parse(u)
		if err != nil || p.Fragment != "" || p.Host != "ccp.example.com" || p.Path != "/AIMWebService/api/Accounts" || strings.Contains(p.RawQuery, "+") {
			t.Fatalf("query URL %q: %v", u, err)
		}
		q, err := url.ParseQuery(p.RawQuery)
		if err != nil {
			t.Fatalf("query %q: %v", p.RawQuery, err)
		}
		want := map[string]string{"AppID": c.appID, "Safe": safe, "Folder": c.folder, "Object": object}
		if policy != "" {
			want["PolicyID"] = policy
		}
		keys, wantKeys := slices.Sorted(maps.Keys(q)), slices.Sorted(maps.Keys(want))
		if !slices.Equal(keys, wantKeys) {
			t.Fatalf("ID %q: query parameters %v, want %v", id, keys, wantKeys)
		}
		for k, v := range want {
			if len(q[k]) != 1 || q[k][0] != v {
				t.Fatalf("ID %q: %s = %q, want %q", id, k, q[k], v)
			}
		}
	})
}
