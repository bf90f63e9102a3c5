package conf

import (
	"strings"
	"testing"
	"time"
)

func TestCacheDefaultsToMemory(t *testing.T) {
	cfg, probs := Load(writeConfig(t, validConfig))
	if probs.HasErrors() || cfg.Cache.Type != "memory" {
		t.Fatalf("type %q, problems %v", cfg.Cache.Type, probs)
	}
}

func TestCacheRedis(t *testing.T) {
	cfg, probs := Load(writeConfig(t, validConfig+`
[cache]
type = "redis"
url = "redis://127.0.0.1:6379/2"
password = { env = "REDIS_PASSWORD" }
key = { env = "CACHE_KEY" }
`))
	if probs.HasErrors() {
		t.Fatalf("problems: %v", probs)
	}
	c := cfg.Cache
	if c.Prefix != DefaultCachePrefix || c.Timeout.D != DefaultCacheTimeout || c.Key.Env != "CACHE_KEY" {
		t.Fatalf("defaults: %+v", c)
	}
	cfg, probs = Load(writeConfig(t, validConfig+`
[cache]
type = "redis"
addrs = ["10.0.0.1:26379", "10.0.0.2:26379"]
master_name = "tokens"
key = { env = "CACHE_KEY" }
prefix = ""
timeout = "100ms"
`))
	if probs.HasErrors() || cfg.Cache.Prefix != "" || cfg.Cache.Timeout.D != 100*time.Millisecond {
		t.Fatalf("sentinel: %+v %v", cfg.Cache, probs)
	}
}

// TestCacheMistakes: every mistake in [cache] is reported with its line and
// key path, and no message shows a secret.
func TestCacheMistakes(t *testing.T) {
	text := validConfig + `
[cache]
type = "redis"
url = "redis://user:hunter2-secret@127.0.0.1:6379/x?dial_timeout=1"
addrs = ["a:1"]
key = "c2hvcnQ="
profile = "nope"
prefix = "a b"
timeout = 250
tiemout = "1s"
`
	_, probs := Load(writeConfig(t, text))
	out := probs.Error()
	if strings.Contains(out, "hunter2-secret") {
		t.Fatalf("a problem shows the URL's password:\n%s", out)
	}
	lineOf := func(prefix string) int {
		return strings.Count(text[:strings.Index(text, "\n"+prefix)+1], "\n") + 1
	}
	want := map[string]int{ // key path -> line
		"cache.url":     lineOf("url = "),
		"cache.key":     lineOf("key = "),
		"cache.profile": lineOf("profile = "),
		"cache.prefix":  lineOf("prefix = "),
		"cache.timeout": lineOf("timeout = 250"),
		"cache.tiemout": lineOf("tiemout = "),
	}
	for path, line := range want {
		found := false
		for _, p := range probs {
			if p.Path == path && !p.Warning {
				found = true
				if p.Pos.Line != line {
					t.Errorf("%s reported at line %d, want %d: %s", path, p.Pos.Line, line, p)
				}
			}
		}
		if !found {
			t.Errorf("no error for %s in:\n%s", path, out)
		}
	}

	for _, tc := range []struct{ text, path, msg string }{
		{"type = \"memory\"\nurl = \"redis://x\"\n", "cache.url", "is not used by type = \"memory\""},
		{"type = \"redis\"\nkey = { env = \"K\" }\n", "cache.url", "is required"},
		{"type = \"redis\"\nurl = \"redis://x:6379\"\n", "cache.key", "is required"},
		{"type = \"redis\"\nurl = \"http://x:6379\"\nkey = { env = \"K\" }\n", "cache.url", "not a redis://"},
		{"type = \"redis\"\nurl = \"redis://:pw-in-url@x:6379\"\nkey = { env = \"K\" }\n", "cache.url", "must not carry credentials"},
		{"type = \"redis\"\nurl = \"redis://x:6379/0?dial_timeout=1\"\nkey = { env = \"K\" }\n", "cache.url", "no query parameters"},
		{"type = \"redis\"\nurl = \"redis://x:6379/db\"\nkey = { env = \"K\" }\n", "cache.url", "database number"},
		{"type = \"redis\"\nurl = \"redis://x:6379\"\nkey = { env = \"K\" }\nprofile = \"p\"\n", "cache.profile", "rediss://"},
		{"type = \"redis\"\naddrs = [\"a:1\"]\nkey = { env = \"K\" }\n", "cache.master_name", "Sentinel needs master_name"},
		{"type = \"redis\"\nurl = \"redis://x:6379\"\nkey = \"bm90LTMyLWJ5dGVz\"\n", "cache.key", "decodes to 12 bytes"},
		{"type = \"etcd\"\n", "cache.type", "must be memory or redis"},
		{"type = \"redis\"\nurl = \"redis://x:6379\"\nkey = { env = \"K\" }\ntimeout = \"0s\"\n", "cache.timeout", "greater than zero"},
	} {
		cfg := validConfig + "\n[profiles.p]\n\n[cache]\n" + tc.text
		_, probs := Load(writeConfig(t, cfg))
		found := false
		for _, p := range probs {
			if p.Path == tc.path && !p.Warning && strings.Contains(p.Msg, tc.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: want an error at %s containing %q, got:\n%v", tc.text, tc.path, tc.msg, probs)
		}
	}
}

func TestCacheWrongShape(t *testing.T) {
	_, probs := Load(writeConfig(t, validConfig+"\n[[cache]]\ntype = \"redis\"\n"))
	if !probs.HasErrors() || !strings.Contains(probs.Error(), "cache") {
		t.Fatalf("[[cache]] accepted: %v", probs)
	}
}

func TestDecodeCacheKey(t *testing.T) {
	for _, s := range []string{
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",   // std, padded
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",    // std, raw
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", // a file with a newline
	} {
		b, err := DecodeCacheKey(s)
		if err != nil || len(b) != 32 || b[31] != 31 {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := DecodeCacheKey("not base64!"); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("bad key: %v", err)
	}
}
