package tokencache

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Source fetches a new token (vault lookup + token request).
type Source func(ctx context.Context) (*Token, error)

// Slot holds the token of one cache key. Get is lock-free while a fresh
// token is cached; misses share one fetch (single flight); once a token is
// past its refresh point, one background refresh runs while requests keep
// using it; failures back off exponentially (1s … 30s, with jitter).
type Slot struct {
	Key     string
	src     Source
	timeout time.Duration
	now     func() time.Time

	cur     atomic.Pointer[Token]
	fetches atomic.Int64

	mu        sync.Mutex
	flight    *flight
	failures  int
	nextTry   time.Time
	lastErr   error
	lastFetch time.Time
}

type flight struct {
	done chan struct{}
	tok  *Token
	err  error
}

// NewSlot returns a slot fetching with src; each fetch is bounded by timeout.
func NewSlot(key string, src Source, timeout time.Duration) *Slot {
	return &Slot{Key: key, src: src, timeout: timeout, now: time.Now}
}

// Get returns a token that is usable now, fetching one if needed. A caller
// whose ctx ends stops waiting; the fetch goes on for the others.
func (s *Slot) Get(ctx context.Context) (*Token, error) {
	now := s.now()
	if t := s.cur.Load(); t != nil && now.Before(t.UsableTo) {
		if !now.Before(t.RefreshAt) {
			s.refreshAhead(ctx, now)
		}
		return t, nil
	}
	f, err := s.start(ctx, s.now())
	if err != nil {
		return nil, err
	}
	select {
	case <-f.done:
		if f.err != nil {
			return nil, &FetchError{Err: f.err, RetryAfter: s.retryAfter()}
		}
		return f.tok, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshAhead starts a background refresh unless one runs or the endpoint
// is in backoff; the caller keeps using the current token either way.
func (s *Slot) refreshAhead(ctx context.Context, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil || now.Before(s.nextTry) {
		return
	}
	s.launch(ctx)
}

// start joins the running fetch or launches one. While the endpoint is in
// backoff it fails at once with the last error instead of asking again.
func (s *Slot) start(ctx context.Context, now time.Time) (*flight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil {
		return s.flight, nil
	}
	if t := s.cur.Load(); t != nil && now.Before(t.UsableTo) {
		f := &flight{done: make(chan struct{}), tok: t} // fetched while we waited for the lock
		close(f.done)
		return f, nil
	}
	if now.Before(s.nextTry) && s.lastErr != nil {
		return nil, &FetchError{Err: s.lastErr, RetryAfter: s.nextTry.Sub(now)}
	}
	return s.launch(ctx), nil
}

// launch starts a fetch; s.mu is held.
func (s *Slot) launch(ctx context.Context) *flight {
	f := &flight{done: make(chan struct{})}
	s.flight = f
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	go func() {
		defer cancel()
		tok, err := s.fetch(fctx)
		s.finish(f, tok, err)
	}()
	return f
}

func (s *Slot) fetch(ctx context.Context) (tok *Token, err error) {
	defer func() {
		if r := recover(); r != nil {
			tok, err = nil, &Error{Kind: Unavailable, Msg: "internal error while fetching a token"}
		}
	}()
	s.fetches.Add(1)
	tok, err = s.src(ctx)
	if err == nil && tok == nil {
		err = errors.New("token source returned no token")
	}
	return tok, err
}

func (s *Slot) finish(f *flight, tok *Token, err error) {
	s.mu.Lock()
	now := s.now()
	s.lastFetch = now
	if err == nil {
		s.cur.Store(tok)
		s.failures, s.nextTry, s.lastErr = 0, time.Time{}, nil
	} else {
		s.failures++
		backoff := time.Second << min(s.failures-1, 5) // 1s, 2s, … 32s
		backoff = min(backoff, 30*time.Second)
		backoff = time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		s.nextTry, s.lastErr = now.Add(backoff), err
	}
	s.flight = nil
	f.tok, f.err = tok, err
	s.mu.Unlock()
	close(f.done)
}

func (s *Slot) retryAfter() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.nextTry.Sub(s.now()), time.Second)
}

// Invalidate drops t if it is still the cached token (a newer one stays):
// used when an upstream answered 401 to a request that carried t.
func (s *Slot) Invalidate(t *Token) {
	s.cur.CompareAndSwap(t, nil)
}

// Fetches counts token fetches started by this slot.
func (s *Slot) Fetches() int64 { return s.fetches.Load() }

// State is a secret-free snapshot for status pages and logs.
type State struct {
	Key       string
	HasToken  bool
	ExpiresAt time.Time
	Scope     string
	LastFetch time.Time
	LastError string
	Fetches   int64
}

// State returns the slot's current state.
func (s *Slot) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Key: s.Key, LastFetch: s.lastFetch, Fetches: s.fetches.Load()}
	if t := s.cur.Load(); t != nil && s.now().Before(t.UsableTo) {
		st.HasToken, st.ExpiresAt, st.Scope = true, t.ExpiresAt, t.Scope
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	return st
}
