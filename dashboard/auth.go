package dashboard

import (
	"net/http"

	"github.com/authgress/authgress/internal/basicauth"
)

// Users checks HTTP Basic credentials ([server.admin_auth]).
type Users struct{ users *basicauth.Users }

// NewUsers returns the checker for name → password.
func NewUsers(passwords map[string]string) *Users {
	return &Users{users: basicauth.New(passwords)}
}

// Check returns the authenticated user of r's Authorization: Basic header.
func (u *Users) Check(r *http.Request) (string, bool) {
	name, pass, ok := r.BasicAuth()
	if !ok || !u.users.Verify(name, pass) {
		return "", false
	}
	return name, true
}

// Challenge answers 401 with a Basic challenge.
func Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="authgress admin", charset="UTF-8"`)
	writeError(w, http.StatusUnauthorized, "authentication_required", "the admin listener requires a user of [server.admin_auth] (HTTP Basic)")
}
