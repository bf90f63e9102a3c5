package tokencache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// memShared is a Shared in memory, with the semantics of the Redis store:
// locks expire, Invalidate compares hashes, every "replica" (cache) that
// subscribed is told about rejected tokens.
type memShared struct {
	mu      sync.Mutex
	vals    map[string]*Token
	locks   map[string]lockEntry
	waiters map[string]chan struct{}
	subs    []*Cache
	fail    atomic.Bool // every call fails at once (Redis down)
	stall   atomic.Bool // every call blocks until its timeout (Redis stalled)
	calls   atomic.Int64
}

type lockEntry struct {
	owner   int64
	expires time.Time
}

func newMemShared() *memShared {
	return &memShared{vals: map[string]*Token{}, locks: map[string]lockEntry{}, waiters: map[string]chan struct{}{}}
}

const memTimeout = 250 * time.Millisecond

var errMemDown = errors.New("down")

func (m *memShared) Name(key string) string { return "t:" + m.Hash(key)[:16] }
func (m *memShared) Hash(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}
func (m *memShared) Timeout() time.Duration { return memTimeout }
func (m *memShared) subscribe(c *Cache)     { m.mu.Lock(); m.subs = append(m.subs, c); m.mu.Unlock() }
func (m *memShared) wake(name string) {
	if ch, ok := m.waiters[name]; ok {
		close(ch)
		delete(m.waiters, name)
	}
}

// enter simulates the network: down fails at once, stalled waits out the timeout.
func (m *memShared) enter(ctx context.Context) error {
	m.calls.Add(1)
	if m.fail.Load() {
		return errMemDown
	}
	if m.stall.Load() {
		ctx, cancel := context.WithTimeout(ctx, memTimeout)
		defer cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (m *memShared) Load(ctx context.Context, name string) (*Token, error) {
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.vals[name]
	if t == nil || !time.Now().Before(KeepUntil(t)) {
		return nil, nil
	}
	cp := *t // what a replica decodes is its own copy
	return &cp, nil
}

func (m *memShared) Store(ctx context.Context, name string, t *Token) error {
	if err := m.enter(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[name] = t
	m.wake(name)
	return nil
}

var lockOwners atomic.Int64

func (m *memShared) Lock(ctx context.Context, name string, ttl time.Duration) (func(), bool, error) {
	if err := m.enter(ctx); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.locks[name]; ok && time.Now().Before(l.expires) {
		return nil, false, nil
	}
	owner := lockOwners.Add(1)
	m.locks[name] = lockEntry{owner: owner, expires: time.Now().Add(ttl)}
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.locks[name].owner == owner {
			delete(m.locks, name)
		}
	}, true, nil
}

func (m *memShared) Changed(name string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch, ok := m.waiters[name]
	if !ok {
		ch = make(chan struct{})
		m.waiters[name] = ch
	}
	return ch
}

func (m *memShared) Invalidate(ctx context.Context, name, hash string) error {
	if err := m.enter(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	if t := m.vals[name]; t != nil && m.Hash(t.Value) == hash {
		delete(m.vals, name)
	}
	m.wake(name)
	subs := append([]*Cache(nil), m.subs...)
	m.mu.Unlock()
	for _, c := range subs {
		c.Dropped(name, hash)
	}
	return nil
}

// replicas returns n slots for one key, each in its own cache (a replica),
// all sharing m and fetching from f.
func replicas(m *memShared, f *fakeSource, n int) []*Slot {
	var out []*Slot
	for i := 0; i < n; i++ {
		c := New(nil)
		c.SetShared(m)
		m.subscribe(c)
		out = append(out, c.Slot("key", "cred", "", f.fetch, time.Second))
	}
	return out
}

// TestSharedOneFetchForThreeReplicas: 300 concurrent misses spread over three
// replicas cause one token request; the two replicas that did not fetch
// took the token from the shared level.
func TestSharedOneFetchForThreeReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemShared()
		f := &fakeSource{lifetime: time.Minute, gate: make(chan struct{})}
		rs := replicas(m, f, 3)
		var wg sync.WaitGroup
		var ok atomic.Int64
		for i := 0; i < 300; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if tok, err := rs[i%3].Get(context.Background()); err == nil && tok.Value == "tok-1" {
					ok.Add(1)
				}
			}()
		}
		synctest.Wait() // everyone waits: on the fetch, or on the replica that fetches
		close(f.gate)
		wg.Wait()
		if f.calls.Load() != 1 || ok.Load() != 300 {
			t.Fatalf("token requests %d (want 1), requests with the token %d/300", f.calls.Load(), ok.Load())
		}
		var st CacheStats
		for _, s := range rs {
			st.add(s.stats)
		}
		if st.SharedMisses != 1 || st.SharedHits != 2 || st.SharedErrors != 0 || st.LocalMisses != 300 {
			t.Fatalf("stats %+v: want 1 shared miss, 2 shared hits, 300 local misses", st)
		}
	})
}

// TestSharedRefreshAheadOncePerLifetime: three replicas under steady load for
// six token lifetimes refresh once per lifetime between them, not each.
func TestSharedRefreshAheadOncePerLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemShared()
		f := &fakeSource{lifetime: 10 * time.Second}
		rs := replicas(m, f, 3)
		var failed, stale atomic.Int64
		for tick := 0; tick < 600; tick++ { // 60 s, a request on each replica every 100 ms
			for _, s := range rs {
				tok, err := s.Get(context.Background())
				if err != nil {
					failed.Add(1)
				} else if !time.Now().Before(tok.UsableTo) {
					stale.Add(1)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		// one fetch at start, then one per refresh interval (75-80% of 10 s): 7 or 8 in 60 s
		if n := f.calls.Load(); n > 9 || failed.Load() != 0 || stale.Load() != 0 {
			t.Fatalf("%d token requests in 6 lifetimes with 3 replicas (want one per ~7.8 s: at most 9); failed %d, expired tokens %d", n, failed.Load(), stale.Load())
		}
		t.Logf("3 replicas, 60 s of 10 s tokens: %d token requests", f.calls.Load())
	})
}

// TestSharedRejectedTokenDroppedEverywhere: a 401 on replica A drops the
// token on A, in the shared level and on B and C; the next request on each
// carries one new token, fetched once.
func TestSharedRejectedTokenDroppedEverywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemShared()
		f := &fakeSource{lifetime: time.Minute}
		rs := replicas(m, f, 3)
		var first *Token
		for _, s := range rs {
			tok, err := s.Get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			first = tok
		}
		if f.calls.Load() != 1 {
			t.Fatalf("%d token requests for three replicas", f.calls.Load())
		}
		a := rs[0]
		old, _ := a.Get(context.Background())
		if !a.Invalidate(old) {
			t.Fatal("the first invalidation was refused")
		}
		synctest.Wait() // the invalidation reaches the shared level and the replicas
		for i, s := range rs {
			tok, err := s.Get(context.Background())
			if err != nil || tok.Value == first.Value {
				t.Fatalf("replica %d after the 401: %v, still the rejected token: %v", i, err, tok != nil && tok.Value == first.Value)
			}
		}
		if f.calls.Load() != 2 {
			t.Fatalf("%d token requests, want 2 (the first and one after the 401)", f.calls.Load())
		}
		// The throttle holds per replica: A refuses a second forced refresh
		// within the interval; B has not forced one and may.
		tok, _ := a.Get(context.Background())
		if a.Invalidate(tok) {
			t.Fatal("replica A forced two refreshes within min_refresh_interval")
		}
	})
}

// TestSharedDownActsAlone: with the shared level down, every replica fetches
// its own token and no request fails; sharing resumes when it returns.
func TestSharedDownActsAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemShared()
		m.fail.Store(true)
		f := &fakeSource{lifetime: time.Minute}
		rs := replicas(m, f, 3)
		for _, s := range rs {
			if _, err := s.Get(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if f.calls.Load() != 3 {
			t.Fatalf("%d token requests with the shared level down, want 3 (one per replica)", f.calls.Load())
		}
		var st CacheStats
		for _, s := range rs {
			st.add(s.stats)
		}
		if st.SharedErrors != 3 {
			t.Fatalf("stats %+v, want 3 shared errors", st)
		}
		// back: the next refresh goes through the shared level again
		m.fail.Store(false)
		time.Sleep(50 * time.Second) // past every refresh point
		for _, s := range rs {
			if _, err := s.Get(context.Background()); err != nil { // starts the refresh
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if n := f.calls.Load(); n != 4 {
			t.Fatalf("%d token requests after the shared level returned, want 4 (one refresh for all three)", n)
		}
	})
}

// TestSharedStalledIsBounded: a stalled shared level costs a miss at most its
// timeout per call before the replica fetches alone.
func TestSharedStalledIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemShared()
		m.stall.Store(true)
		f := &fakeSource{lifetime: time.Minute}
		s := replicas(m, f, 1)[0]
		start := time.Now()
		if _, err := s.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > memTimeout+10*time.Millisecond {
			t.Fatalf("a miss took %v with the shared level stalled, want at most its timeout (%v)", took, memTimeout)
		}
		time.Sleep(time.Second) // the background store gives up too
	})
}

// TestSharedHolderGivesUp: a replica waiting on another's lock takes over
// when that lock expires without a token (the holder died), and waits no
// longer than the lock's own bound (fetch timeout + 2 shared timeouts) plus
// one shared timeout however long the lock says.
func TestSharedHolderGivesUp(t *testing.T) {
	for _, tc := range []struct {
		lock     time.Duration
		min, max time.Duration
	}{
		{500 * time.Millisecond, 500 * time.Millisecond, 500*time.Millisecond + pollInterval},
		{time.Hour, time.Second + 3*memTimeout, time.Second + 3*memTimeout + pollInterval},
	} {
		synctest.Test(t, func(t *testing.T) {
			m := newMemShared()
			f := &fakeSource{lifetime: time.Minute}
			s := replicas(m, f, 1)[0]
			if _, ok, _ := m.Lock(context.Background(), s.sharedName, tc.lock); !ok { // a replica that never finishes
				t.Fatal("no lock")
			}
			start := time.Now()
			tok, err := s.Get(context.Background())
			if err != nil || tok == nil || f.calls.Load() != 1 {
				t.Fatalf("%v, %d token requests", err, f.calls.Load())
			}
			if took := time.Since(start); took < tc.min || took > tc.max {
				t.Fatalf("lock of %v: took %v, want %v to %v", tc.lock, took, tc.min, tc.max)
			}
		})
	}
}

func TestEncodeDecodeToken(t *testing.T) {
	in := &Token{Value: "abc.def", Type: "Bearer", Scope: "a b"}
	in.schedule(time.Now(), time.Minute, 0.5)
	out, err := DecodeToken(EncodeToken(in))
	if err != nil || out.Value != in.Value || out.Authorization() != "Bearer abc.def" || !out.RefreshAt.Equal(in.RefreshAt) || !out.UsableTo.Equal(in.UsableTo) {
		t.Fatalf("%v %+v", err, out)
	}
	for _, bad := range []string{"", "{}", `{"v":"a b"}`, "not json"} {
		if _, err := DecodeToken([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestSlotHitWithSharedDoesNotAllocate(t *testing.T) {
	m := newMemShared()
	f := &fakeSource{lifetime: time.Hour}
	s := replicas(m, f, 1)[0]
	ctx := context.Background()
	_, _ = s.Get(ctx)
	if a := testing.AllocsPerRun(1000, func() { _, _ = s.Get(ctx) }); a != 0 {
		t.Fatalf("cache hit with a shared level allocates %v times", a)
	}
}

// BenchmarkSlotHitShared is BenchmarkSlotHit on a slot with a shared level:
// the hit path also counts the local hit.
func BenchmarkSlotHitShared(b *testing.B) {
	m := newMemShared()
	f := &fakeSource{lifetime: time.Hour}
	s := replicas(m, f, 1)[0]
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
