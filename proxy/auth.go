package proxy

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/authgress/authgress/internal/basicauth"
)

// proxyAuth checks Proxy-Authorization: Basic against the configured users.
type proxyAuth struct{ users *basicauth.Users }

func newProxyAuth(passwords map[string]string) *proxyAuth {
	return &proxyAuth{users: basicauth.New(passwords)}
}

// check returns the authenticated user name, or ok = false.
func (a *proxyAuth) check(r *http.Request) (user string, ok bool) {
	h := r.Header.Get("Proxy-Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || !a.users.Verify(user, pass) {
		return "", false
	}
	return user, true
}
