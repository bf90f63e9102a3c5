// Package basicauth checks Basic-authentication users ([server.auth] for
// the proxy, [server.admin_auth] for the admin listener). Passwords are
// kept and compared as SHA-256 digests in constant time, and an unknown
// user costs the same comparison as a known one.
package basicauth

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Users is a set of user names with their passwords.
type Users struct {
	digests map[string][32]byte
}

// New returns the users of name → password.
func New(passwords map[string]string) *Users {
	u := &Users{digests: make(map[string][32]byte, len(passwords))}
	for name, pw := range passwords {
		u.digests[name] = sha256.Sum256([]byte(pw))
	}
	return u
}

// Verify reports whether pass is user's password.
func (u *Users) Verify(user, pass string) bool {
	want, known := u.digests[user]
	got := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1 && known
}
