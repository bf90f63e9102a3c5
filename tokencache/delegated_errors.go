package tokencache

import "errors"

// ErrLoginRequired: a delegated credential has no token for this user; the
// user must log in (again) through the broker.
var ErrLoginRequired = errors.New("login required")

// errNoRefreshToken: the user never logged in here (nothing to refresh).
var errNoRefreshToken = errors.New("no refresh token")
