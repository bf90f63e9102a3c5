package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// Users checks HTTP Basic credentials ([server.admin_auth]). Passwords are
// kept and compared as SHA-256 digests in constant time, and an unknown
// user costs the same comparison as a known one.
type Users struct {
	digests map[string][32]byte
}

// NewUsers returns the checker for name → password.
func NewUsers(passwords map[string]string) *Users {
	u := &Users{digests: make(map[string][32]byte, len(passwords))}
	for name, pw := range passwords {
		u.digests[name] = sha256.Sum256([]byte(pw))
	}
	return u
}

// Check returns the authenticated user of r's Authorization: Basic header.
func (u *Users) Check(r *http.Request) (string, bool) {
	name, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	want, known := u.digests[name]
	got := sha256.Sum256([]byte(pass))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		return "", false
	}
	return name, true
}

// Challenge answers 401 with a Basic challenge.
func Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="authgress admin", charset="UTF-8"`)
	writeError(w, http.StatusUnauthorized, "authentication_required", "the admin listener requires a user of [server.admin_auth] (HTTP Basic)")
}
