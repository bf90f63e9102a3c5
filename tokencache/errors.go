package tokencache

import (
	"fmt"
	"time"
)

// Kind classifies a token failure for clients and metrics.
type Kind int

const (
	// Unavailable: the token endpoint is unreachable, failing, or answered malformed data.
	Unavailable Kind = iota
	// Rejected: the token endpoint refused the client (an OAuth error code).
	Rejected
	// UnsupportedType: the token is not a bearer token.
	UnsupportedType
)

func (k Kind) String() string {
	switch k {
	case Rejected:
		return "rejected"
	case UnsupportedType:
		return "unsupported_token_type"
	}
	return "unavailable"
}

// Error is a classified token endpoint failure. Its message is safe to show:
// it never holds the response body, a secret or an address.
type Error struct {
	Kind        Kind
	Code        string // OAuth error code (invalid_client, ...)
	Description string // OAuth error_description, sanitised
	Status      int
	Msg         string
	Err         error // cause, for logs
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Code != "" {
		s += ": " + e.Code
		if e.Description != "" {
			s += " (" + e.Description + ")"
		}
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" [HTTP %d]", e.Status)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// FetchError is what a slot returns when it has no usable token: the cause
// (a *Error, or a vault error) and how long until the next fetch is tried.
type FetchError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *FetchError) Error() string { return e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }
