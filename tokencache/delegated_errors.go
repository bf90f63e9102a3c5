package tokencache

import "errors"

// ErrLoginRequired: a delegated (authorization_code) credential has no token
// for this user — no login yet, or its refresh token was refused.
var ErrLoginRequired = errors.New("login required")
