package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
)

func TestCacheStatusMemoryByDefault(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	h := newHarness(t, baseConfig, up, i)
	if cs := h.eng.Status().Cache; cs == nil || cs.Type != "memory" || cs.State != "" {
		t.Fatalf("/status cache: %+v", cs)
	}
}

// TestCacheKeyRefusedWithoutShowingIt: a key that is not 32 bytes of base64
// stops the start with a message naming the key's source, never its value.
func TestCacheKeyRefusedWithoutShowingIt(t *testing.T) {
	for _, key := range []string{"c2hvcnQta2V5LXZhbHVl", "not base64 at all!!"} {
		t.Setenv("AUTHGRESS_TEST_CACHE_KEY", key)
		cfg := loadText(t, baseConfig+"\n[cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1/0\"\nkey = { env = \"AUTHGRESS_TEST_CACHE_KEY\" }\n")
		_, err := New(context.Background(), cfg, Options{})
		if err == nil || !strings.Contains(err.Error(), "cache.key (env:AUTHGRESS_TEST_CACHE_KEY)") || strings.Contains(err.Error(), key) {
			t.Fatalf("key %q: %v", key, err)
		}
	}
}

// TestCacheRedisUnreachable: with Redis not there, requests are served
// (the replica fetches its own token), /status says the shared cache is
// down and why, and the log says so once.
func TestCacheRedisUnreachable(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	t.Setenv("AUTHGRESS_TEST_CACHE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	h := newHarness(t, baseConfig+"\n[cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1/0\"\nkey = { env = \"AUTHGRESS_TEST_CACHE_KEY\" }\ntimeout = \"100ms\"\n", up, i)
	for n := 0; n < 3; n++ {
		if resp, body := h.get("http://" + up.hostPort() + "/"); resp.StatusCode != 200 {
			t.Fatalf("request %d with Redis unreachable: %d %s", n, resp.StatusCode, body)
		}
	}
	if i.fetches.Load() != 1 {
		t.Fatalf("%d token requests, want 1", i.fetches.Load())
	}
	cs := h.eng.Status().Cache
	if cs.Type != "redis" || cs.State != "down" || cs.LastError != "connection refused" || cs.Shared.Errors != 1 || cs.Local.Hits != 2 {
		t.Fatalf("/status cache: %+v shared %+v local %+v", cs, cs.Shared, cs.Local)
	}
	time.Sleep(700 * time.Millisecond) // a few health pings
	if n := strings.Count(h.logText(), "shared token cache unavailable"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once:\n%s", n, h.logText())
	}
	if strings.Contains(h.logText(), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8") {
		t.Fatal("the log holds the cache key")
	}
}

func loadText(t *testing.T, text string) *conf.Config {
	t.Helper()
	return loadConfig(t, text, "{{CA}}", newUpstream(t).caFile, "{{UP}}", "127.0.0.1:9", "{{IDP}}", "http://127.0.0.1:1/token")
}
