package tokencache

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/authgress/authgress/vault"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

// now is the fake time; a nil clock is the real one.
func (c *clock) now() time.Time {
	if c == nil {
		return time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeSource issues tokens with a fixed lifetime; it can block and fail.
type fakeSource struct {
	clk      *clock
	lifetime time.Duration
	calls    atomic.Int64
	fail     atomic.Bool
	gate     chan struct{}
}

func (f *fakeSource) fetch(ctx context.Context) (*Token, error) {
	n := f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		return nil, &Error{Kind: Unavailable, Msg: "down"}
	}
	t := &Token{Value: fmt.Sprint("tok-", n), Type: "Bearer"}
	t.schedule(f.clk.now(), f.lifetime, 0)
	return t, nil
}

func newSlot(f *fakeSource) *Slot {
	s := NewSlot("k", "cred", f.fetch, time.Second, nil)
	s.now = f.clk.now
	return s
}

// TestSingleFlightThousandConcurrentMisses: the fetch does not finish until
// all 1000 callers are provably waiting (synctest.Wait returns only when every
// goroutine of the bubble is durably blocked: in the fetch, or on it), so the
// single flight is tested, not a cache hit after the fact.
func TestSingleFlightThousandConcurrentMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSource{lifetime: time.Minute, gate: make(chan struct{})}
		s := newSlot(f)
		var wg sync.WaitGroup
		var started, ok atomic.Int64
		for i := 0; i < 1000; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				started.Add(1)
				if tok, err := s.Get(context.Background()); err == nil && tok.Value == "tok-1" {
					ok.Add(1)
				}
			}()
		}
		synctest.Wait()
		if started.Load() != 1000 || f.calls.Load() != 1 || ok.Load() != 0 {
			t.Fatalf("while the fetch runs: %d callers started, %d fetches, %d done", started.Load(), f.calls.Load(), ok.Load())
		}
		close(f.gate)
		wg.Wait()
		if f.calls.Load() != 1 || ok.Load() != 1000 {
			t.Fatalf("fetches = %d, successes = %d", f.calls.Load(), ok.Load())
		}
	})
}

func TestCancelledCallerDoesNotCancelFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSource{lifetime: time.Minute, gate: make(chan struct{})}
		s := newSlot(f)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() { _, err := s.Get(ctx); errc <- err }()
		synctest.Wait() // the caller waits on the fetch, which waits on the gate
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller got %v", err)
		}
		close(f.gate)
		tok, err := s.Get(context.Background())
		if err != nil || tok.Value != "tok-1" || f.calls.Load() != 1 {
			t.Fatalf("second caller: %v %v, calls %d", tok, err, f.calls.Load())
		}
	})
}

func TestRefreshAheadNeverWaitsNeverExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &clock{t: time.Now()}
		f := &fakeSource{clk: clk, lifetime: 100 * time.Second}
		s := newSlot(f)
		first, err := s.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		clk.add(50 * time.Second) // before the refresh point
		if tok, _ := s.Get(context.Background()); tok != first || f.calls.Load() != 1 {
			t.Fatal("refreshed too early")
		}
		clk.add(31 * time.Second) // 81%: past the refresh point, still usable
		f.gate = make(chan struct{})
		tok, err := s.Get(context.Background())
		if err != nil || tok != first {
			t.Fatalf("request waited for the refresh or failed: %v", err)
		}
		close(f.gate)
		synctest.Wait() // the background refresh has finished
		if cur, _ := s.Get(context.Background()); cur == first || f.calls.Load() != 2 {
			t.Fatalf("no refreshed token; calls = %d", f.calls.Load())
		}
		// With the endpoint down, the current token serves until it is no
		// longer usable, then requests fail: never an expired token.
		f.fail.Store(true)
		clk.add(85 * time.Second)
		cur, err := s.Get(context.Background())
		if err != nil {
			t.Fatalf("valid token not served during outage: %v", err)
		}
		clk.add(15 * time.Second)
		if tok, err := s.Get(context.Background()); err == nil {
			t.Fatalf("expired token served: usable to %v, now %v (%v)", cur.UsableTo, clk.now(), tok.ExpiresAt)
		}
	})
}

func TestBackoffAndRetryAfter(t *testing.T) {
	clk := &clock{t: time.Now()}
	f := &fakeSource{clk: clk, lifetime: time.Minute}
	f.fail.Store(true)
	s := newSlot(f)
	_, err := s.Get(context.Background())
	var fe *FetchError
	if !errors.As(err, &fe) || fe.RetryAfter < time.Second {
		t.Fatalf("first failure: %v", err)
	}
	for i := 0; i < 5; i++ {
		if _, err := s.Get(context.Background()); !errors.As(err, &fe) {
			t.Fatalf("in backoff: %v", err)
		}
	}
	if f.calls.Load() != 1 {
		t.Fatalf("backoff not honoured: %d calls", f.calls.Load())
	}
	clk.add(2 * time.Second)
	f.fail.Store(false)
	if _, err := s.Get(context.Background()); err != nil || f.calls.Load() != 2 {
		t.Fatalf("recovery: %v calls %d", err, f.calls.Load())
	}
}

func TestInvalidateOnlyTheUsedToken(t *testing.T) {
	clk := &clock{t: time.Now()}
	f := &fakeSource{clk: clk, lifetime: time.Minute}
	s := newSlot(f)
	old, _ := s.Get(context.Background())
	s.Invalidate(old)
	fresh, _ := s.Get(context.Background())
	if fresh == old || f.calls.Load() != 2 {
		t.Fatal("invalidate did not force a new token")
	}
	s.Invalidate(old) // a late 401 for the old token must not drop the new one
	if cur, _ := s.Get(context.Background()); cur != fresh || f.calls.Load() != 2 {
		t.Fatal("stale invalidate dropped the newer token")
	}
}

// TestForcedRefreshAtMostOncePerInterval: an upstream that answers 401 to
// every token cannot drive unbounded token requests. Invalidate drops the
// token (a refresh follows) at most once per min refresh interval; meanwhile
// it keeps the token and says no.
func TestForcedRefreshAtMostOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSource{lifetime: time.Hour}
		s := newSlot(f)
		ctx := context.Background()
		tok1, _ := s.Get(ctx)
		if !s.Invalidate(tok1) {
			t.Fatal("the first forced refresh was refused")
		}
		tok2, _ := s.Get(ctx)
		if tok2 == tok1 || f.calls.Load() != 2 {
			t.Fatalf("no fresh token after Invalidate: calls %d", f.calls.Load())
		}
		for i := 0; i < 100; i++ {
			if s.Invalidate(tok2) {
				t.Fatalf("forced refresh %d allowed within the interval", i+2)
			}
			if cur, _ := s.Get(ctx); cur != tok2 {
				t.Fatal("a throttled Invalidate dropped the token")
			}
		}
		// A late 401 for the older token: the newer one is kept, and a retry
		// with it is fine (no fetch).
		if !s.Invalidate(tok1) || f.calls.Load() != 2 {
			t.Fatalf("stale Invalidate: calls %d", f.calls.Load())
		}
		time.Sleep(DefaultMinRefreshInterval - time.Millisecond)
		if s.Invalidate(tok2) {
			t.Fatal("forced refresh allowed before the interval ended")
		}
		time.Sleep(time.Millisecond)
		if !s.Invalidate(tok2) {
			t.Fatal("forced refresh refused after the interval")
		}
		if tok3, _ := s.Get(ctx); tok3 == tok2 || f.calls.Load() != 3 {
			t.Fatalf("calls %d", f.calls.Load())
		}

		s.SetMinRefreshInterval(time.Second) // the credential's min_refresh_interval
		time.Sleep(time.Second)
		tok4, _ := s.Get(ctx)
		if !s.Invalidate(tok4) {
			t.Fatal("min refresh interval not applied")
		}
	})
}

type rotatingSecrets struct {
	secret      string
	invalidated int
}

func (r *rotatingSecrets) Get(context.Context, string) (vault.Secret, error) {
	return vault.Secret{ClientID: "c", ClientSecret: r.secret}, nil
}
func (r *rotatingSecrets) Invalidate(string) { r.invalidated++; r.secret = "new-secret" }

func TestInvalidClientRereadsSecretOnce(t *testing.T) {
	var s seen
	calls := 0
	srv := server(t, 200, "", "", nil)
	srv.Config.Handler = httpHandler(func(auth string) (int, string) {
		calls++
		s.auth = auth
		if auth == basicAuth("c", "new-secret") {
			return 200, `{"access_token":"ok","token_type":"Bearer","expires_in":60}`
		}
		return 401, `{"error":"invalid_client"}`
	})
	sec := &rotatingSecrets{secret: "old-secret"}
	src := ClientCredentials(NewClient(srv.Client().Transport), sec, "id", Request{TokenURL: srv.URL, DefaultTTL: time.Minute})
	tok, err := src(context.Background())
	if err != nil || tok.Value != "ok" || calls != 2 || sec.invalidated != 1 {
		t.Fatalf("tok %v err %v calls %d invalidated %d", tok, err, calls, sec.invalidated)
	}
	// Same secret after re-read: no second request.
	calls = 0
	sec.secret = "still-wrong"
	sec2 := &fixedSecrets{secret: "still-wrong"}
	src = ClientCredentials(NewClient(srv.Client().Transport), sec2, "id", Request{TokenURL: srv.URL, DefaultTTL: time.Minute})
	if _, err := src(context.Background()); err == nil || calls != 1 {
		t.Fatalf("err %v calls %d", err, calls)
	}
}

type fixedSecrets struct{ secret string }

func (f *fixedSecrets) Get(context.Context, string) (vault.Secret, error) {
	return vault.Secret{ClientID: "c", ClientSecret: f.secret}, nil
}
func (f *fixedSecrets) Invalidate(string) {}

func TestKeepFreshHoldsATokenWithoutTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSource{lifetime: 200 * time.Millisecond} // the bubble's fake time
		s := NewSlot("k", "cred", f.fetch, time.Second, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go s.KeepFresh(ctx)
		synctest.Wait()
		if !s.Ready() {
			t.Fatal("no token after the first fetch")
		}
		time.Sleep(700 * time.Millisecond)
		if n := f.calls.Load(); n < 4 || !s.Ready() {
			t.Fatalf("%d fetches in 700ms with 200ms tokens and no requests; ready %v", n, s.Ready())
		}
	})
}

func BenchmarkSlotHit(b *testing.B) {
	f := &fakeSource{lifetime: time.Hour}
	s := NewSlot("k", "cred", f.fetch, time.Second, nil)
	ctx := context.Background()
	if _, err := s.Get(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSlotHitDoesNotAllocate(t *testing.T) {
	f := &fakeSource{lifetime: time.Hour}
	s := NewSlot("k", "cred", f.fetch, time.Second, nil)
	ctx := context.Background()
	_, _ = s.Get(ctx)
	if a := testing.AllocsPerRun(1000, func() { _, _ = s.Get(ctx) }); a != 0 {
		t.Fatalf("cache hit allocates %v times", a)
	}
}

// TestFetchFailureLogRoundsRetryIn: the log said retry_in_s=1.7005530979999999.
func TestFetchFailureLogRoundsRetryIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf strings.Builder
		clk := &clock{t: time.Now()}
		f := &fakeSource{clk: clk, lifetime: time.Minute}
		f.fail.Store(true)
		s := NewSlot("k", "cred", f.fetch, time.Second, slog.New(slog.NewTextHandler(&buf, nil)))
		s.now = clk.now
		_, _ = s.Get(context.Background())
		synctest.Wait() // the fetch goroutine has logged
		m := regexp.MustCompile(`retry_in_s=([0-9.]+)`).FindStringSubmatch(buf.String())
		if m == nil || len(m[1]) > 4 {
			t.Fatalf("retry_in_s is not a short number of seconds: %q", buf.String())
		}
	})
}
