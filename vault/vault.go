// Package vault holds the secret backends behind one small interface, and the
// cache in front of them. A backend returns the client id and client secret for
// a credential ID; a secret reference ({ vault, id }) takes the secret half.
package vault

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backend is one secret store. Implementations classify their errors with
// ErrNotFound or ErrUnavailable (wrapped in *Error) and never put a secret
// value into an error.
type Backend interface {
	Lookup(ctx context.Context, id string) (Secret, error)
}

// Secret is what a backend returns. Its fmt and slog forms are redacted.
type Secret struct {
	ClientID     string
	ClientSecret string

	cacheFor   time.Duration // a backend's hint to cache it for less than cache_ttl
	noClientID *Error        // why ClientID is empty (not set, an empty value), if it is
}

// CheckClientID returns an error naming where the client id should have come
// from (the environment variable, the file's key, the field) when the backend
// found none. A credential needs both halves; a secret reference ({ vault,
// id }) uses only the secret and does not call this.
func (s Secret) CheckClientID() error {
	if s.noClientID != nil {
		return s.noClientID
	}
	return nil
}

func (Secret) String() string   { return "vault.Secret{[redacted]}" }
func (Secret) GoString() string { return "vault.Secret{[redacted]}" }

// Error kinds, tested with errors.Is.
var (
	// ErrNotFound: the vault has no such credential, or denies access to it.
	ErrNotFound = errors.New("credential not found")
	// ErrUnavailable: the vault could not be reached or failed transiently.
	ErrUnavailable = errors.New("vault unavailable")
)

// Error is a classified vault failure. Msg is safe to show to clients: it
// names the vault and the credential ID, and carries a backend error code
// where there is one, but never a secret or an internal address.
type Error struct {
	Vault string
	ID    string
	Kind  error  // ErrNotFound or ErrUnavailable
	Code  string // backend error code, e.g. CyberArk's APPAP004E
	Msg   string
	Err   error // underlying cause, for logs
}

func (e *Error) Error() string {
	s := fmt.Sprintf("vault %q: credential %q: %s", e.Vault, e.ID, e.Msg)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	return s
}

func (e *Error) Is(target error) bool { return target == e.Kind }
func (e *Error) Unwrap() error        { return e.Err }
