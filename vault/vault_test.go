package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
)

func TestFileBackendReloads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[\"Safe:graph\"]\nclient_id = \"id1\"\nclient_secret = \"s1\"\n")
	f := NewFile("local", p)
	s, err := f.Lookup(context.Background(), "Safe:graph")
	if err != nil || s.ClientID != "id1" || s.ClientSecret != "s1" {
		t.Fatalf("lookup = %+v, %v", s, err)
	}
	write("[\"Safe:graph\"]\nclient_id = \"id1\"\nclient_secret = \"s2-rotated\"\n")
	s, err = f.Lookup(context.Background(), "Safe:graph")
	if err != nil || s.ClientSecret != "s2-rotated" {
		t.Fatalf("after rotation = %v", err)
	}
	if _, err := f.Lookup(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	write("not = toml = at all s3cret")
	_, err = f.Lookup(context.Background(), "Safe:graph")
	if !errors.Is(err, ErrUnavailable) || containsStr(err.Error(), "s3cret") {
		t.Fatalf("broken file: %v", err)
	}
}

func containsStr(s, sub string) bool { return stringIndex(s, sub) >= 0 }
func stringIndex(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestEnvBackend(t *testing.T) {
	env := map[string]string{"GRAPH_CLIENT_ID": "gid", "GRAPH_CLIENT_SECRET": "gsec"}
	e := &Env{name: "e", lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	s, err := e.Lookup(context.Background(), "graph")
	if err != nil || s.ClientID != "gid" || s.ClientSecret != "gsec" {
		t.Fatalf("got %+v %v", s, err)
	}
	if _, err := e.Lookup(context.Background(), "other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

type countingBackend struct {
	calls atomic.Int64
	fail  atomic.Bool
	delay time.Duration
}

func (b *countingBackend) Lookup(ctx context.Context, id string) (Secret, error) {
	b.calls.Add(1)
	time.Sleep(b.delay)
	if b.fail.Load() {
		return Secret{}, &Error{Vault: "v", ID: id, Kind: ErrUnavailable, Msg: "down"}
	}
	return Secret{ClientID: "id", ClientSecret: fmt.Sprint("secret-", b.calls.Load())}, nil
}

func TestCacheSharesLookupsAndExpires(t *testing.T) {
	b := &countingBackend{delay: 20 * time.Millisecond}
	c := NewCached("v", b, time.Minute, 0, time.Second)
	now := time.Now()
	c.now = func() time.Time { return now }
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = c.Get(context.Background(), "x") }()
	}
	wg.Wait()
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("50 concurrent lookups made %d backend calls", n)
	}
	now = now.Add(2 * time.Minute)
	if s, _ := c.Get(context.Background(), "x"); s.ClientSecret != "secret-2" || b.calls.Load() != 2 {
		t.Fatalf("expired entry not refetched: %d", b.calls.Load())
	}
	c.Invalidate("x")
	if _, _ = c.Get(context.Background(), "x"); b.calls.Load() != 3 {
		t.Fatalf("invalidate did not force a lookup")
	}
}

func TestCacheMaxStale(t *testing.T) {
	b := &countingBackend{}
	c := NewCached("v", b, time.Minute, 10*time.Minute, time.Second)
	now := time.Now()
	c.now = func() time.Time { return now }
	if _, err := c.Get(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	b.fail.Store(true)
	now = now.Add(5 * time.Minute)
	if _, err := c.Get(context.Background(), "x"); err != nil {
		t.Fatalf("within max_stale: %v", err)
	}
	now = now.Add(10 * time.Minute)
	if _, err := c.Get(context.Background(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("past max_stale: %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	_ = os.WriteFile(f, []byte("file-pass\n"), 0o600)
	t.Setenv("AG_TEST_PASS", "env-pass")
	set := Set{"v": NewCached("v", &countingBackend{}, time.Minute, 0, time.Second)}
	cases := []struct {
		ref  conf.Secret
		want string
	}{
		{conf.Secret{Env: "AG_TEST_PASS", Set: true}, "env-pass"},
		{conf.Secret{File: f, Set: true}, "file-pass"},
		{conf.Secret{Vault: "v", ID: "x", Set: true}, "secret-1"},
	}
	for _, tc := range cases {
		got, err := set.Resolve(context.Background(), tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%v) = %q, %v", tc.ref, got, err)
		}
	}
	if _, err := set.Resolve(context.Background(), conf.Secret{Env: "AG_TEST_UNSET", Set: true}); err == nil {
		t.Error("unset env accepted")
	}
}

func TestSecretIsRedacted(t *testing.T) {
	s := Secret{ClientID: "id", ClientSecret: "canary-vault-secret"}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if stringIndex(out, "canary") >= 0 {
			t.Fatalf("secret printed: %s", out)
		}
	}
}
