package rediscache

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgress/authgress/tokencache"
)

// server is a real redis-server on a free loopback port.
type server struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	dir  string
}

func startServer(t *testing.T) *server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("AUTHGRESS_IT_REQUIRE_ALL") != "" {
			t.Fatal("redis-server is needed (apt-get install redis-server)")
		}
		t.Skip("skipped: redis-server is not installed (apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &server{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *server) start() {
	s.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", fmt.Sprint(s.port), "--save", "", "--appendonly", "no", "--dir", s.dir)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) kill() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *server) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

func (s *server) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

func newKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

type invalidation struct{ name, hash string }

// newStore is a store with a 1s timeout: generous, so that a loaded machine
// does not turn a test of something else into an outage.
func newStore(t *testing.T, srv *server, key []byte, got chan<- invalidation) *Store {
	return newStoreTimeout(t, srv, key, got, time.Second)
}

func newStoreTimeout(t *testing.T, srv *server, key []byte, got chan<- invalidation, timeout time.Duration) *Store {
	t.Helper()
	st, err := New(Options{URL: "redis://" + srv.addr() + "/0", Key: key, Prefix: "authgress:", Timeout: timeout,
		OnInvalidate: func(name, hash string) {
			if got != nil {
				got <- invalidation{name, hash}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func token(value string, lifetime time.Duration) *tokencache.Token {
	tok, err := tokencache.DecodeToken(tokencache.EncodeToken(&tokencache.Token{Value: value, Type: "Bearer", Scope: "api:read",
		FetchedAt: time.Now(), ExpiresAt: time.Now().Add(lifetime), RefreshAt: time.Now().Add(lifetime * 3 / 4), UsableTo: time.Now().Add(lifetime)}))
	if err != nil {
		panic(err)
	}
	return tok
}

// TestStoreEncryptsAndAuthenticates: the value in Redis holds neither the
// token nor its scope; it opens only under its own key name and cache key;
// a changed byte makes it unusable (a miss, not an error).
func TestStoreEncryptsAndAuthenticates(t *testing.T) {
	srv := startServer(t)
	key := newKey()
	st := newStore(t, srv, key, nil)
	ctx := context.Background()
	name := st.Name("credential\x00definition\x00api:read ")
	if !strings.HasPrefix(name, "authgress:tok:") || strings.Contains(name, "credential") || strings.Contains(name, "api:read") {
		t.Fatalf("key name %q", name)
	}
	tok := token("tok-value-canary-0123456789", time.Minute)
	if err := st.Store(ctx, name, tok); err != nil {
		t.Fatal(err)
	}
	raw, err := srv.client().Get(ctx, name).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"tok-value-canary", "api:read", "Bearer"} {
		if bytes.Contains(raw, []byte(clear)) {
			t.Fatalf("the stored value holds %q in clear", clear)
		}
	}
	if ttl := srv.client().PTTL(ctx, name).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("stored with TTL %v, want the token's usable time", ttl)
	}
	got, err := st.Load(ctx, name)
	if err != nil || got == nil || got.Value != tok.Value || !got.RefreshAt.Equal(tok.RefreshAt) || got.Authorization() != "Bearer "+tok.Value {
		t.Fatalf("load: %v %+v", err, got)
	}

	// The same value under another key name does not open (associated data).
	other := st.Name("another credential")
	srv.client().Set(ctx, other, raw, time.Minute)
	if got, err := st.Load(ctx, other); err != nil || got != nil {
		t.Fatalf("a value moved to another key name opened: %v %v", got, err)
	}
	// Another cache key: other key names, and the value does not open.
	st2 := newStore(t, srv, newKey(), nil)
	if st2.Name("credential\x00definition\x00api:read ") == name {
		t.Fatal("two cache keys give the same key names")
	}
	if got, err := st2.Load(ctx, name); err != nil || got != nil {
		t.Fatalf("a value opened under another cache key: %v %v", got, err)
	}
	// Tampering: every byte matters.
	for _, i := range []int{0, 1, 70, len(raw) - 1} {
		bad := bytes.Clone(raw)
		bad[i] ^= 1
		srv.client().Set(ctx, name, bad, time.Minute)
		if got, err := st.Load(ctx, name); err != nil || got != nil {
			t.Fatalf("byte %d changed: the value still opened (%v)", i, err)
		}
	}
	// A miss is (nil, nil).
	if got, err := st.Load(ctx, st.Name("nothing here")); got != nil || err != nil {
		t.Fatalf("miss: %v %v", got, err)
	}
}

// TestStoreInvalidateComparesTheHash: the shared copy goes only if it is
// the rejected token, and every replica hears of the rejection either way.
func TestStoreInvalidateComparesTheHash(t *testing.T) {
	srv := startServer(t)
	key := newKey()
	heard := make(chan invalidation, 4)
	a := newStore(t, srv, key, nil)
	newStore(t, srv, key, heard) // another replica
	ctx := context.Background()
	name := a.Name("k")
	time.Sleep(100 * time.Millisecond) // b's subscription
	if err := a.Store(ctx, name, token("newer-token-xyz", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := a.Invalidate(ctx, name, a.Hash("older-token-abc")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Load(ctx, name); got == nil || got.Value != "newer-token-xyz" {
		t.Fatal("invalidating an older token deleted the newer one")
	}
	select {
	case inv := <-heard:
		if inv.name != name || inv.hash != a.Hash("older-token-abc") {
			t.Fatalf("heard %+v", inv)
		}
	case <-time.After(time.Second):
		t.Fatal("replica b did not hear of the rejection within a second")
	}
	if err := a.Invalidate(ctx, name, a.Hash("newer-token-xyz")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Load(ctx, name); got != nil {
		t.Fatal("the rejected token is still shared")
	}
	<-heard
}

// TestStoreLock: one owner at a time; the lock expires; only its owner
// releases it.
func TestStoreLock(t *testing.T) {
	srv := startServer(t)
	key := newKey()
	a, b := newStore(t, srv, key, nil), newStore(t, srv, key, nil)
	ctx := context.Background()
	name := a.Name("k")
	unlockA, ok, err := a.Lock(ctx, name, 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := b.Lock(ctx, name, time.Second); ok || err != nil {
		t.Fatalf("second lock while held: %v %v", ok, err)
	}
	time.Sleep(400 * time.Millisecond) // a's lock expires
	unlockB, ok, err := b.Lock(ctx, name, time.Second)
	if !ok || err != nil {
		t.Fatalf("lock after expiry: %v %v", ok, err)
	}
	unlockA() // a's late unlock must not release b's lock
	if _, ok, _ := a.Lock(ctx, name, time.Second); ok {
		t.Fatal("a stale owner released someone else's lock")
	}
	unlockB()
	if _, ok, _ := a.Lock(ctx, name, time.Second); !ok {
		t.Fatal("the owner's unlock did not release the lock")
	}
}

// TestStoreChangedWakesWaiters: a store by any replica closes the channel
// waiters got from Changed.
func TestStoreChangedWakesWaiters(t *testing.T) {
	srv := startServer(t)
	key := newKey()
	a, b := newStore(t, srv, key, nil), newStore(t, srv, key, nil)
	time.Sleep(100 * time.Millisecond) // b's subscription
	name := a.Name("k")
	ch := b.Changed(name)
	start := time.Now()
	_ = a.Store(context.Background(), name, token("some-token-123", time.Minute))
	select {
	case <-ch:
		t.Logf("woken %v after the store", time.Since(start).Round(time.Microsecond))
	case <-time.After(time.Second):
		t.Fatal("no notification")
	}
}

// TestStoreDownAndBack: calls fail fast while Redis is gone (no call waits
// out its timeout again and again), the state says so, and the store is
// usable again within about a second of Redis returning.
func TestStoreDownAndBack(t *testing.T) {
	srv := startServer(t)
	st := newStore(t, srv, newKey(), nil)
	ctx := context.Background()
	name := st.Name("k")
	if _, err := st.Load(ctx, name); err != nil || !st.State().Up {
		t.Fatalf("up: %v %+v", err, st.State())
	}
	srv.kill()
	if _, err := st.Load(ctx, name); err == nil {
		t.Fatal("no error with Redis gone")
	}
	start := time.Now()
	for i := 0; i < 100; i++ {
		if _, err := st.Load(ctx, name); err == nil {
			t.Fatal("no error with Redis gone")
		}
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Fatalf("100 calls with Redis gone took %v: the store does not fail fast", took)
	}
	if s := st.State(); s.Up || s.LastError == "" {
		t.Fatalf("state with Redis gone: %+v", s)
	}
	srv.start()
	deadline := time.Now().Add(3 * time.Second)
	for !st.State().Up {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not come back within 3s of Redis: %+v", st.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := st.Store(ctx, name, token("after-restart-1", time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestStoreStalledIsBounded: a frozen Redis (SIGSTOP) costs one call its
// timeout; the calls after it fail at once.
func TestStoreStalledIsBounded(t *testing.T) {
	srv := startServer(t)
	st := newStoreTimeout(t, srv, newKey(), nil, 250*time.Millisecond)
	ctx := context.Background()
	name := st.Name("k")
	_, _ = st.Load(ctx, name)
	_ = srv.cmd.Process.Signal(syscall.SIGSTOP)
	defer srv.cmd.Process.Signal(syscall.SIGCONT)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, _ = st.Load(ctx, name)
			_, _, _ = st.Lock(ctx, name, time.Second)
			mu.Lock()
			worst = max(worst, time.Since(start))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if worst > 750*time.Millisecond {
		t.Fatalf("with Redis frozen a caller waited %v (timeout 250ms)", worst)
	}
	_ = srv.cmd.Process.Signal(syscall.SIGCONT)
}

func TestNewRefusesAShortKey(t *testing.T) {
	if _, err := New(Options{URL: "redis://127.0.0.1:1", Key: []byte("short"), Timeout: time.Second}); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
}
