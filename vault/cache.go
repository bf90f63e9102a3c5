package vault

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/authgress/authgress/internal/safetext"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Cached puts a cache in front of a backend: a fetched secret is reused for
// ttl; after ttl, a failed lookup may fall back to the old value for up to
// maxStale. Concurrent lookups of one ID share a single backend call.
type Cached struct {
	Name     string
	Type     string
	Log      *slog.Logger
	backend  Backend
	ttl      time.Duration
	maxStale time.Duration
	timeout  time.Duration
	now      func() time.Time

	mu       sync.Mutex
	entries  map[string]*cacheEntry
	inflight map[string]*lookup
	last     LookupState
}

// LookupState is the outcome of the last backend lookup, for status pages.
type LookupState struct {
	At     time.Time
	Result string // ok, not_found, unavailable
	Error  string // a safe message, never a secret
}

type cacheEntry struct {
	secret  Secret
	fetched time.Time
	ttl     time.Duration
}

type lookup struct {
	done   chan struct{}
	secret Secret
	err    error
}

// NewCached wraps backend.
func NewCached(name string, backend Backend, ttl, maxStale, timeout time.Duration) *Cached {
	return &Cached{Name: name, backend: backend, ttl: ttl, maxStale: maxStale, timeout: timeout, now: time.Now, Log: slog.New(slog.DiscardHandler),
		entries: map[string]*cacheEntry{}, inflight: map[string]*lookup{}}
}

// Get returns the secret for id, from the cache when it is fresh.
func (c *Cached) Get(ctx context.Context, id string) (Secret, error) {
	c.mu.Lock()
	if e, ok := c.entries[id]; ok && c.now().Sub(e.fetched) < e.ttl {
		c.mu.Unlock()
		return e.secret, nil
	}
	l, ok := c.inflight[id]
	if !ok {
		l = &lookup{done: make(chan struct{})}
		c.inflight[id] = l
		go c.fetch(ctx, id, l)
	}
	c.mu.Unlock()
	select {
	case <-l.done:
		return l.secret, l.err
	case <-ctx.Done():
		return Secret{}, &Error{Vault: c.Name, ID: id, Kind: ErrUnavailable, Msg: "the vault lookup was cancelled", Err: ctx.Err()}
	}
}

// fetch runs one backend lookup, detached from the first caller's
// cancellation so that the others waiting on it are not failed by it.
func (c *Cached) fetch(ctx context.Context, id string, l *lookup) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	ctx, span := tracer.Start(ctx, "vault lookup", trace.WithAttributes(attribute.String("authgress.vault", c.Name)))
	start := time.Now()
	secret, err := c.backend.Lookup(ctx, id)
	took := time.Since(start)
	span.SetAttributes(attribute.String("authgress.result", Result(err)))
	if err != nil {
		span.SetStatus(codes.Error, Result(err))
	}
	span.End()
	recordLookup(c.Name, err)
	if err != nil {
		c.Log.Warn("vault lookup failed", "vault", c.Name, "id", id, "result", Result(err), "error", err.Error(), "duration_ms", took.Milliseconds())
	} else {
		c.Log.Info("vault lookup", "vault", c.Name, "id", id, "result", "ok", "duration_ms", took.Milliseconds())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, id)
	now := c.now()
	c.last = LookupState{At: now, Result: Result(err)}
	if err != nil {
		c.last.Error = err.Error()
	}
	if err == nil {
		safetext.Pin(secret.ClientSecret) // redacted from any text a server sends back, however many tokens follow
		ttl := c.ttl
		if secret.cacheFor > 0 && secret.cacheFor < ttl {
			ttl = secret.cacheFor
		}
		c.entries[id] = &cacheEntry{secret: secret, fetched: now, ttl: ttl}
	} else if e, ok := c.entries[id]; ok && c.maxStale > 0 && now.Sub(e.fetched) < e.ttl+c.maxStale {
		secret, err = e.secret, nil // serve stale within max_stale
	}
	l.secret, l.err = secret, err
	close(l.done)
}

// State returns the last lookup's outcome and the number of cached entries.
func (c *Cached) State() (LookupState, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, len(c.entries)
}

// Invalidate drops the cached secret for id (e.g. after invalid_client, so a
// rotated secret is read again).
func (c *Cached) Invalidate(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
