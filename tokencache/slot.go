package tokencache

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Source fetches a new token (vault lookup + token request).
type Source func(ctx context.Context) (*Token, error)

// Slot holds the token of one cache key. Get is lock-free while a fresh
// token is cached; misses share one fetch (single flight); once a token is
// past its refresh point, one background refresh runs while requests keep
// using it; failures back off exponentially (1s … 30s, with jitter); a
// forced refresh (Invalidate) happens at most once per min refresh interval.
type Slot struct {
	Key     string
	Name    string // the credential's name, for logs and status
	Scopes  string // the scopes it asks for, space-separated
	User    string // the user whose token it holds ("": a client token)
	src     Source
	log     *slog.Logger
	timeout time.Duration
	now     func() time.Time

	cur     atomic.Pointer[Token]
	fetches atomic.Int64
	// last is the newest token the slot has held, kept when cur is
	// dropped: a delegated slot refreshes with its refresh token.
	last atomic.Pointer[Token]

	mu        sync.Mutex
	flight    *flight
	failures  int
	nextTry   time.Time
	lastErr   error
	lastFetch time.Time

	minRefresh time.Duration // at most one forced refresh per this interval
	lastForced time.Time     // when Invalidate last dropped the token

	// The shared level (nil: none), set before the slot is used.
	shared     Shared
	sharedName string
	stats      *slotStats // with shared only
	rejected   string     // hash of the last token an upstream rejected (with shared)
}

// DefaultMinRefreshInterval is a new slot's minimum interval between forced
// refreshes.
const DefaultMinRefreshInterval = 10 * time.Second

type flight struct {
	done chan struct{}
	tok  *Token
	err  error
}

// NewSlot returns a slot fetching with src; each fetch is bounded by timeout.
// Fetches are logged to log (nil: not logged) without any token value.
func NewSlot(key, name string, src Source, timeout time.Duration, log *slog.Logger) *Slot {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Slot{Key: key, Name: name, src: src, timeout: timeout, now: time.Now, log: log, minRefresh: DefaultMinRefreshInterval}
}

// SetMinRefreshInterval sets the minimum interval between forced refreshes
// (the credential's min_refresh_interval).
func (s *Slot) SetMinRefreshInterval(d time.Duration) {
	s.mu.Lock()
	s.minRefresh = d
	s.mu.Unlock()
}

// Get returns a token that is usable now, fetching one if needed. A caller
// whose ctx ends stops waiting; the fetch goes on for the others.
func (s *Slot) Get(ctx context.Context) (*Token, error) {
	now := s.now()
	if t := s.cur.Load(); t != nil && now.Before(t.UsableTo) {
		if s.stats != nil {
			s.stats.localHits.n.Add(1)
		}
		if !now.Before(t.RefreshAt) {
			s.refreshAhead(ctx, now)
		}
		return t, nil
	}
	if s.stats != nil {
		s.stats.localMisses.n.Add(1)
	}
	return s.await(ctx, false)
}

// await starts a fetch (or joins the running one) and waits for it. Unless
// force is set, a token that became usable meanwhile is returned instead.
func (s *Slot) await(ctx context.Context, force bool) (*Token, error) {
	f, err := s.start(ctx, s.now(), force)
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
func (s *Slot) start(ctx context.Context, now time.Time, force bool) (*flight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil {
		return s.flight, nil
	}
	if t := s.cur.Load(); !force && t != nil && now.Before(t.UsableTo) {
		f := &flight{done: make(chan struct{}), tok: t} // fetched while we waited for the lock
		close(f.done)
		return f, nil
	}
	if now.Before(s.nextTry) && s.lastErr != nil {
		return nil, &FetchError{Err: s.lastErr, RetryAfter: s.nextTry.Sub(now)}
	}
	return s.launch(ctx), nil
}

// launch starts a fetch; s.mu is held. With a shared level, the flight
// may end with a token another replica fetched instead.
func (s *Slot) launch(ctx context.Context) *flight {
	f := &flight{done: make(chan struct{})}
	s.flight = f
	src := s.src
	bctx := context.WithoutCancel(ctx)
	go func() {
		start := time.Now()
		sctx, span := tracer.Start(bctx, "token fetch", trace.WithAttributes(attribute.String("authgress.credential", s.Name)))
		var tok *Token
		var err error
		fetched := true
		if s.shared == nil {
			tok, err = s.fetchBounded(sctx, src)
		} else {
			tok, fetched, err = s.obtainShared(sctx, src)
		}
		s.finish(f, tok, err)
		took := time.Since(start)
		span.SetAttributes(attribute.String("authgress.result", Result(err)), attribute.Bool("authgress.shared", !fetched))
		if err != nil {
			span.SetStatus(codes.Error, Result(err))
		}
		span.End()
		if !fetched {
			s.log.Debug("token from the shared cache", "credential", s.Name, "scope", tok.Scope,
				"expires_in_s", int(tok.ExpiresAt.Sub(s.now()).Seconds()), "duration_ms", took.Milliseconds())
			return
		}
		recordFetch(s.Name, err, took)
		s.logFetch(tok, err, took)
	}()
	return f
}

// fetchBounded fetches with src, bounded by the slot's timeout.
func (s *Slot) fetchBounded(ctx context.Context, src Source) (*Token, error) {
	fctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.fetch(fctx, src)
}

func (s *Slot) fetch(ctx context.Context, src Source) (tok *Token, err error) {
	defer func() {
		if r := recover(); r != nil {
			tok, err = nil, &Error{Kind: Unavailable, Msg: "internal error while fetching a token"}
		}
	}()
	s.fetches.Add(1)
	tok, err = src(ctx)
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
		s.noteLast(tok)
		s.failures, s.nextTry, s.lastErr = 0, time.Time{}, nil
	} else if errors.Is(err, ErrLoginRequired) {
		// Nothing to retry until the user logs in (Set): no backoff, so
		// a login elsewhere (another replica) is seen at once.
		s.lastErr = err
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

func (s *Slot) logFetch(tok *Token, err error, took time.Duration) {
	if errors.Is(err, ErrLoginRequired) {
		if !errors.Is(err, errNoRefreshToken) {
			s.log.Info("user token dropped: the user must log in again", "credential", s.Name, "user", s.User, "error", err.Error())
		}
		return
	}
	if err != nil {
		s.log.Warn("token fetch failed", "credential", s.Name, "result", Result(err), "error", err.Error(),
			"retry_in_s", math.Round(s.retryAfter().Seconds()*10)/10, "duration_ms", took.Milliseconds())
		return
	}
	attrs := []any{"credential", s.Name}
	if s.User != "" {
		attrs = append(attrs, "user", s.User)
	}
	s.log.Info("token fetched", append(attrs, "scope", tok.Scope,
		"expires_in_s", int(tok.ExpiresAt.Sub(tok.FetchedAt).Seconds()), "duration_ms", took.Milliseconds())...)
}

// KeepFresh fetches a token now and keeps one fresh until ctx ends, so the
// credential holds a token even without traffic (prefetch = true).
func (s *Slot) KeepFresh(ctx context.Context) {
	for {
		wait := time.Second
		if tok, err := s.await(ctx, true); err == nil {
			wait = tok.RefreshAt.Sub(s.now())
		} else {
			var fe *FetchError
			if errors.As(err, &fe) {
				wait = fe.RetryAfter
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 100*time.Millisecond)):
		}
	}
}

// Ready reports whether the slot holds a usable token.
func (s *Slot) Ready() bool {
	t := s.cur.Load()
	return t != nil && s.now().Before(t.UsableTo)
}

func (s *Slot) retryAfter() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.nextTry.Sub(s.now()), time.Second)
}

// Invalidate is called when an upstream answered 401 to a request that
// carried t. It reports whether the request may be sent again with another
// token:
//   - t is still the cached token: it is dropped, so the next Get fetches a
//     fresh one (true), unless a forced refresh happened less than the min
//     refresh interval ago: then t stays and Invalidate returns false (the
//     401 goes to the client; an upstream that rejects every token cannot
//     drive unbounded token requests);
//   - t was already dropped or replaced: nothing changes (a newer token
//     stays) and the retry gets the newer one, or joins its fetch (true).
func (s *Slot) Invalidate(t *Token) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.Load() != t {
		return true
	}
	now := s.now()
	if !s.lastForced.IsZero() && now.Sub(s.lastForced) < s.minRefresh {
		return false
	}
	s.lastForced = now
	s.cur.Store(nil)
	if s.shared != nil {
		// The shared copy goes too if it still holds t, and every replica
		// drops t; a flight started meanwhile does not take t from the
		// shared level.
		h := s.shared.Hash(t.Value)
		s.rejected = h
		go func() { _ = s.shared.Invalidate(context.Background(), s.sharedName, h) }()
	}
	return true
}

// noteLast records t as the newest token held, unless a newer one is.
func (s *Slot) noteLast(t *Token) {
	for {
		old := s.last.Load()
		if old != nil && old.FetchedAt.After(t.FetchedAt) {
			return
		}
		if s.last.CompareAndSwap(old, t) {
			return
		}
	}
}

// Set installs t, obtained outside the slot (a user's login), as the
// slot's token: failures are forgotten, and the shared level gets it too.
func (s *Slot) Set(ctx context.Context, t *Token) {
	s.mu.Lock()
	s.cur.Store(t)
	s.last.Store(t)
	s.failures, s.nextTry, s.lastErr = 0, time.Time{}, nil
	s.lastFetch = s.now()
	s.mu.Unlock()
	if s.shared != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shared.Timeout())
		defer cancel()
		_ = s.shared.Store(sctx, s.sharedName, t)
	}
}

// forget drops the slot's tokens after the refresh token rt was refused:
// unless a newer login replaced it meanwhile, the user must log in again,
// on every replica.
func (s *Slot) forget(rt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last.Load()
	if last == nil || last.Refresh != rt {
		return
	}
	s.last.Store(nil)
	s.cur.Store(nil)
	if s.shared != nil {
		// The shared copy is last (cur may be gone: expired, or this
		// replica only ever loaded last from the shared level).
		h := s.shared.Hash(last.Value)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.shared.Timeout())
			defer cancel()
			_ = s.shared.Invalidate(ctx, s.sharedName, h)
		}()
	}
}

// refreshToken is the refresh token of the newest token held ("": none).
func (s *Slot) refreshToken() string {
	if t := s.last.Load(); t != nil {
		return t.Refresh
	}
	return ""
}

// Fetches counts token fetches started by this slot.
func (s *Slot) Fetches() int64 { return s.fetches.Load() }

// State is a secret-free snapshot for status pages and logs.
type State struct {
	Key        string
	HasToken   bool
	ExpiresAt  time.Time
	Scope      string
	LastFetch  time.Time
	LastResult string // Result of the last fetch: ok, unavailable, rejected, …
	LastError  string // its message (classified, never a secret)
	Fetches    int64
}

// State returns the slot's current state.
func (s *Slot) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Key: s.Key, LastFetch: s.lastFetch, Fetches: s.fetches.Load()}
	if t := s.cur.Load(); t != nil && s.now().Before(t.UsableTo) {
		st.HasToken, st.ExpiresAt, st.Scope = true, t.ExpiresAt, t.Scope
	}
	if !s.lastFetch.IsZero() {
		st.LastResult = Result(s.lastErr)
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	return st
}
