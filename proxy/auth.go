package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// proxyAuth checks Proxy-Authorization: Basic against the configured users.
// Passwords are compared as SHA-256 digests in constant time.
type proxyAuth struct {
	users map[string][32]byte
}

func newProxyAuth(passwords map[string]string) *proxyAuth {
	a := &proxyAuth{users: map[string][32]byte{}}
	for name, pw := range passwords {
		a.users[name] = sha256.Sum256([]byte(pw))
	}
	return a
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
	if !ok {
		return "", false
	}
	want, known := a.users[user]
	got := sha256.Sum256([]byte(pass))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		return "", false
	}
	return user, true
}
