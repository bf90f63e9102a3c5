package tokencache

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/authgress/authgress/internal/safetext"
)

// Shared is a second cache level that every replica sees (Redis). The
// first level stays each slot's in-process token; the second is read on a
// local miss or refresh, and a lock in it makes one replica fetch while the
// others wait for its token. Each call is bounded by the store's timeout;
// an error means "act alone": the replica fetches by itself, and no request
// fails because of the shared level.
type Shared interface {
	// Name is the store's name for a cache key. It holds no secret.
	Name(key string) string
	// Hash is the digest of a token value that Invalidate compares.
	Hash(token string) string
	// Timeout bounds each call.
	Timeout() time.Duration
	// Load returns the token stored under name; (nil, nil) if there is none.
	Load(ctx context.Context, name string) (*Token, error)
	// Store stores t under name until it is no longer usable.
	Store(ctx context.Context, name string, t *Token) error
	// Lock takes the fetch lock of name for ttl. ok is false when another
	// replica holds it; unlock releases it only if it is still ours.
	Lock(ctx context.Context, name string, ttl time.Duration) (unlock func(), ok bool, err error)
	// Changed returns a channel that is closed the next time any replica
	// stores or invalidates name (best effort: waiters also poll).
	Changed(name string) <-chan struct{}
	// Invalidate deletes the token stored under name if its hash is hash,
	// and tells every replica (OnInvalidate) that that token was rejected.
	Invalidate(ctx context.Context, name, hash string) error
}

// pollInterval is how often a replica waiting for another's fetch looks
// at the shared level when no notification arrives.
const pollInterval = 50 * time.Millisecond

// sharedToken is a token as the shared level stores it (encrypted by the
// store).
type sharedToken struct {
	Value     string `json:"v"`
	Type      string `json:"t"`
	Scope     string `json:"s,omitempty"`
	FetchedAt int64  `json:"f"`
	ExpiresAt int64  `json:"e"`
	RefreshAt int64  `json:"r"`
	UsableTo  int64  `json:"u"`
	// Refresh is a delegated token's refresh token (encrypted by the store
	// like the rest).
	Refresh          string `json:"rt,omitempty"`
	RefreshExpiresAt int64  `json:"re,omitempty"`
}

// EncodeToken is the plaintext of a token for a shared store: the value
// and its schedule. The store encrypts it.
func EncodeToken(t *Token) []byte {
	b, _ := json.Marshal(sharedToken{Value: t.Value, Type: t.Type, Scope: t.Scope, FetchedAt: t.FetchedAt.UnixNano(),
		ExpiresAt: t.ExpiresAt.UnixNano(), RefreshAt: t.RefreshAt.UnixNano(), UsableTo: t.UsableTo.UnixNano(),
		Refresh: t.Refresh, RefreshExpiresAt: unixNano(t.RefreshExpiresAt)})
	return b
}

// DecodeToken is the inverse of EncodeToken. The token value is registered
// for redaction, as if this replica had fetched it.
func DecodeToken(b []byte) (*Token, error) {
	var st sharedToken
	if err := json.Unmarshal(b, &st); err != nil || st.Value == "" || !headerSafe(st.Value) {
		return nil, errors.New("malformed shared token")
	}
	t := &Token{Value: st.Value, Type: st.Type, Scope: st.Scope, FetchedAt: time.Unix(0, st.FetchedAt),
		ExpiresAt: time.Unix(0, st.ExpiresAt), RefreshAt: time.Unix(0, st.RefreshAt), UsableTo: time.Unix(0, st.UsableTo)}
	if st.Refresh != "" {
		t.Refresh = st.Refresh
		safetext.Register(t.Refresh)
		if st.RefreshExpiresAt != 0 {
			t.RefreshExpiresAt = time.Unix(0, st.RefreshExpiresAt)
		}
	}
	t.header = "Bearer " + t.Value
	safetext.Register(t.Value)
	return t, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// KeepUntil is how long a shared store keeps t: until it is no longer
// usable, or — for a delegated token with a refresh token — until the
// refresh token expires (when unknown, DelegatedKeep after the fetch).
func KeepUntil(t *Token) time.Time {
	if t.Refresh == "" {
		return t.UsableTo
	}
	if !t.RefreshExpiresAt.IsZero() {
		return t.RefreshExpiresAt
	}
	return t.FetchedAt.Add(DelegatedKeep)
}

// DelegatedKeep is how long a user's refresh token is kept when its
// expiry is unknown (refresh_token_ttl overrides it per credential).
const DelegatedKeep = 90 * 24 * time.Hour

// Outcome of a flight at the shared level, for authgress_cache_requests_total.
const (
	sharedHit = iota
	sharedMiss
	sharedError
)

// obtainShared ends a flight through the shared level: a token another
// replica stored, or one this replica fetches while it holds the lock (the
// others wait for it). fetched reports whether a token request was made.
// Whenever the shared level fails or takes too long, the replica fetches
// by itself.
func (s *Slot) obtainShared(ctx context.Context, src Source) (tok *Token, fetched bool, err error) {
	sh, name := s.shared, s.sharedName
	cur := s.cur.Load()
	curUsable := cur != nil && s.now().Before(cur.UsableTo)
	// take says whether a stored token can end this flight: usable, not
	// rejected by an upstream, and — when this replica still has a usable
	// token and so is refreshing — not due for refresh itself.
	take := func(t *Token) bool {
		now := s.now()
		if t == nil || !now.Before(t.UsableTo) {
			return false
		}
		if r := s.rejectedHash(); r != "" && sh.Hash(t.Value) == r {
			return false
		}
		return !curUsable || now.Before(t.RefreshAt)
	}
	t, lerr := sh.Load(ctx, name)
	if lerr != nil {
		s.stats.count(sharedError)
		return s.fetchAlone(ctx, src)
	}
	if t != nil && t.Refresh != "" {
		s.noteLast(t) // a delegated token stored by another replica: its refresh token serves here too
	}
	if take(t) {
		s.stats.count(sharedHit)
		return t, false, nil
	}
	lockTTL := s.timeout + 2*sh.Timeout()
	deadline := time.Now().Add(lockTTL + sh.Timeout())
	for {
		changed := sh.Changed(name)
		unlock, ok, lerr := sh.Lock(ctx, name, lockTTL)
		if lerr != nil {
			s.stats.count(sharedError)
			return s.fetchAlone(ctx, src)
		}
		if ok {
			// Another replica may have stored a token between the first
			// look and the lock.
			t, err := sh.Load(ctx, name)
			if err == nil && t != nil && t.Refresh != "" {
				s.noteLast(t)
			}
			if err == nil && take(t) {
				unlock()
				s.stats.count(sharedHit)
				return t, false, nil
			}
			s.stats.count(sharedMiss)
			tok, err := s.fetchBounded(ctx, src)
			if err == nil {
				_ = sh.Store(ctx, name, tok) // a failure is the store's to report
			}
			unlock()
			return tok, true, err
		}
		// Another replica is fetching: wait for its token.
		wait := time.NewTimer(pollInterval)
		select {
		case <-changed:
		case <-wait.C:
		}
		wait.Stop()
		t, lerr := sh.Load(ctx, name)
		switch {
		case lerr != nil:
			s.stats.count(sharedError)
			return s.fetchAlone(ctx, src)
		case take(t):
			s.stats.count(sharedHit)
			return t, false, nil
		case time.Now().After(deadline):
			s.stats.count(sharedMiss)
			return s.fetchAlone(ctx, src)
		}
		// The lock holder gave up or its lock expired: try to take over.
	}
}

// fetchAlone fetches without the shared level's coordination, and offers
// the token to the shared level in the background.
func (s *Slot) fetchAlone(ctx context.Context, src Source) (*Token, bool, error) {
	tok, err := s.fetchBounded(ctx, src)
	if err == nil {
		go func() { _ = s.shared.Store(context.WithoutCancel(ctx), s.sharedName, tok) }()
	}
	return tok, true, err
}

func (s *Slot) rejectedHash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// dropRejected is told by the shared level that some replica saw the token
// of hash rejected by an upstream: if this slot holds it, it is dropped, so
// the next request gets another one (from the shared level, or fetched).
// This is not a forced refresh of this replica: its throttle is untouched.
func (s *Slot) dropRejected(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = hash
	t := s.cur.Load()
	if t == nil || s.shared.Hash(t.Value) != hash {
		return false
	}
	s.cur.Store(nil)
	return true
}

// slotStats counts cache requests of a slot with a shared level. The local
// hit counter sits on its own cache line: the hit path writes it from
// every core, and it must not slow down reads of the token pointer.
type slotStats struct {
	_           [64]byte
	localHits   countPad
	localMisses countPad
	shared      [3]countPad // by outcome
}

type countPad struct {
	n atomic.Int64
	_ [56]byte
}

func (st *slotStats) count(outcome int) { st.shared[outcome].n.Add(1) }
