package safetext

import (
	"container/list"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// reset empties the registry (tests share it).
func reset(t *testing.T, max int) {
	t.Helper()
	reg.mu.Lock()
	reg.order, reg.elems, reg.pinned = list.New(), map[string]*list.Element{}, map[string]bool{}
	reg.mu.Unlock()
	index.Store(nil)
	maxSecrets = max
	t.Cleanup(func() { maxSecrets = MaxSecrets })
}

func TestRedact(t *testing.T) {
	reset(t, MaxSecrets)
	if got := Redact("nothing registered: s3cret-value"); got != "nothing registered: s3cret-value" {
		t.Fatal(got)
	}
	Register("s3cret-value")
	Register("s3cret-value-longer") // the longest match wins
	Register("12345")               // too short: ignored
	Register("tok-abcdef")
	for in, want := range map[string]string{
		"client secret s3cret-value is wrong":           "client secret [redacted] is wrong",
		"s3cret-value-longer":                           "[redacted]",
		"s3cret-values3cret-value,tok-abcdef tok-abcde": "[redacted][redacted],[redacted] tok-abcde",
		"pin 12345 s3cret-valu":                         "pin 12345 s3cret-valu",
		"":                                              "",
		"s3cret":                                        "s3cret",
		"at the end: tok-abcdef":                        "at the end: [redacted]",
		"unicode ünïcödé s3cret-value ünïcödé":            "unicode ünïcödé [redacted] ünïcödé",
		strings.Repeat("x", 300) + "s3cret-value" + "yyy": strings.Repeat("x", 300) + "[redacted]yyy",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanRedactsBeforeAndAfterClipping(t *testing.T) {
	reset(t, MaxSecrets)
	Register("s3cret-value")
	// Clipping must not leave a prefix of a secret at the cut...
	long := strings.Repeat("a", 195) + "s3cret-value"
	if got := Clean(long, 200); strings.Contains(got, "s3cr") {
		t.Fatalf("clipped text shows a prefix of the secret: %q", got)
	}
	// ...and dropping unprintable bytes must not join a secret together.
	if got := Clean("bad s3cret\x00-value", 200); got != "bad [redacted]" {
		t.Fatalf("got %q", got)
	}
}

func TestRegistryIsBoundedLeastRecentFirst(t *testing.T) {
	reset(t, 3)
	Register("secret-a")
	Register("secret-b")
	Register("secret-c")
	Register("secret-a") // used again: now the most recent
	Register("secret-d") // evicts secret-b
	if got := Redact("secret-a secret-b secret-c secret-d"); got != "[redacted] secret-b [redacted] [redacted]" {
		t.Fatalf("got %q", got)
	}
	reg.mu.Lock()
	n := len(reg.elems)
	reg.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d values held, cap 3", n)
	}
}

// TestPinnedValuesAreNeverForgotten: a configuration's secrets stay
// redacted however many tokens are registered after them.
func TestPinnedValuesAreNeverForgotten(t *testing.T) {
	reset(t, 3)
	Register("client-secret-x")
	Pin("client-secret-x") // moves it out of the evictable set
	Pin("broker-key-y")
	for i := 0; i < 10; i++ {
		Register(fmt.Sprintf("token-%06d", i))
	}
	if got := Redact("client-secret-x broker-key-y token-000000 token-000009"); got != "[redacted] [redacted] token-000000 [redacted]" {
		t.Fatalf("got %q", got)
	}
	Register("broker-key-y") // a pinned value registered again stays pinned
	for i := 10; i < 20; i++ {
		Register(fmt.Sprintf("token-%06d", i))
	}
	if got := Redact("broker-key-y"); got != "[redacted]" {
		t.Fatalf("got %q", got)
	}
}

func TestRedactWithoutMatchDoesNotAllocate(t *testing.T) {
	reset(t, MaxSecrets)
	for i := 0; i < 1000; i++ {
		Register(fmt.Sprintf("secret-%04d", i))
	}
	text := "invalid_client: the client could not be authenticated (secret-xyz, HTTP 401)"
	if a := testing.AllocsPerRun(100, func() { _ = Redact(text) }); a != 0 {
		t.Fatalf("Redact allocates %v times when nothing matches", a)
	}
	if got := Redact("x secret-0999 y"); got != "x [redacted] y" {
		t.Fatalf("got %q", got)
	}
}

func TestRegisterAndRedactConcurrently(t *testing.T) {
	reset(t, 64)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				Register(fmt.Sprintf("token-%d-%d", g, i))
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_ = Redact(fmt.Sprintf("echo token-%d-%d", g, i))
			}
		}()
	}
	wg.Wait()
	Register("final-token")
	if got := Redact("final-token"); got != Redacted {
		t.Fatalf("the most recent value is not redacted: %q", got)
	}
}

func BenchmarkRedactNoMatch(b *testing.B) {
	for i := 0; i < MaxSecrets; i++ {
		Register(fmt.Sprintf("bench-secret-%06d", i))
	}
	text := strings.Repeat("the token endpoint refused the request: invalid_client ", 4)
	b.ReportAllocs()
	for b.Loop() {
		_ = Redact(text)
	}
}
