// Package tokencache obtains OAuth 2.0 client-credentials tokens and caches
// them: one fetch at a time per key, refresh ahead of expiry, backoff while
// the token endpoint fails. Tokens live in memory only and never print.
package tokencache

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Token is one access token. Its fmt forms are redacted.
type Token struct {
	Value     string
	Type      string // as the server sent it (Bearer, case-insensitive)
	Scope     string
	FetchedAt time.Time
	ExpiresAt time.Time // when the server says it expires (never later than a JWT exp claim)
	RefreshAt time.Time // when a background refresh starts
	UsableTo  time.Time // last instant it is injected (ExpiresAt less a safety margin)

	// Refresh is the refresh token that came with it (delegated tokens);
	// like Value it is never logged or shown.
	Refresh string
	// RefreshExpiresAt is when Refresh expires (zero: unknown).
	RefreshExpiresAt time.Time

	header string
}

func (Token) String() string   { return "tokencache.Token{[redacted]}" }
func (Token) GoString() string { return "tokencache.Token{[redacted]}" }

// Authorization is the header value to inject: "Bearer <token>".
func (t *Token) Authorization() string { return t.header }

// schedule sets the token's times from its lifetime, counted from the moment
// the request was sent (so network time shortens, never lengthens, it).
// Refresh starts between 75% and 80% of the lifetime; the token is injected
// until ExpiresAt less min(5s, 5% of the lifetime).
func (t *Token) schedule(sent time.Time, lifetime time.Duration, jitter float64) {
	t.FetchedAt = sent
	t.ExpiresAt = sent.Add(lifetime)
	if exp, ok := jwtExpiry(t.Value); ok && exp.Before(t.ExpiresAt) && exp.After(sent) {
		t.ExpiresAt = exp
		lifetime = exp.Sub(sent)
	}
	t.RefreshAt = sent.Add(time.Duration(float64(lifetime) * (0.80 - 0.05*jitter)))
	t.UsableTo = t.ExpiresAt.Add(-min(5*time.Second, lifetime/20))
	t.header = "Bearer " + t.Value
}

// jwtExpiry reads the exp claim of a JWT access token without verifying it.
// It is used only to shorten the lifetime: a resource server that validates
// the JWT rejects it at exp, whatever expires_in said (exp has one-second
// granularity, so it can be up to a second earlier than expires_in implies).
func jwtExpiry(tok string) (time.Time, bool) {
	first := strings.IndexByte(tok, '.')
	if first < 0 {
		return time.Time{}, false
	}
	rest := tok[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || second > 8192 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[:second], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}
