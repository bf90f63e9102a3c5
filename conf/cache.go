package conf

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Cache is [cache]: where tokens are cached. "memory" (the default) keeps
// them in each process; "redis" adds Redis as a second level shared by every
// replica, with values encrypted under Key.
type Cache struct {
	Type string `toml:"type"` // memory | redis

	// One of: URL (redis:// or rediss://), or Addrs (Sentinels) + MasterName.
	URL        string   `toml:"url"`
	Addrs      []string `toml:"addrs"`
	MasterName string   `toml:"master_name"`
	Password   Secret   `toml:"password"`
	Profile    string   `toml:"profile"` // TLS to Redis (rediss://, or Sentinel with TLS)
	// Key is 32 random bytes, base64: the AES-256-GCM key of every value.
	Key     Secret   `toml:"key"`
	Prefix  string   `toml:"prefix"`
	Timeout Duration `toml:"timeout"` // bound on every Redis call
}

// Defaults of [cache].
const (
	DefaultCachePrefix  = "authgress:"
	DefaultCacheTimeout = 250 * time.Millisecond
	// CacheKeySize is the length of the decoded [cache] key.
	CacheKeySize = 32
)

var cacheKeys = []string{"type", "url", "addrs", "master_name", "password", "profile", "key", "prefix", "timeout"}

// DecodeCacheKey decodes the [cache] key: 32 bytes, standard or URL-safe
// base64, padded or not. The error never holds the value.
func DecodeCacheKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != CacheKeySize {
				return nil, errCacheKey(len(b))
			}
			return b, nil
		}
	}
	return nil, errCacheKeyEncoding
}

var errCacheKeyEncoding = errors.New("the cache key is not base64: write 32 random bytes in base64 (head -c 32 /dev/urandom | base64)")

func errCacheKey(n int) error {
	return fmt.Errorf("the cache key decodes to %d bytes, want %d (head -c 32 /dev/urandom | base64)", n, CacheKeySize)
}

func (v *validator) cache() {
	c := &v.cfg.Cache
	switch c.Type {
	case "", "memory":
		c.Type = "memory"
		v.onlyKeys("cache", `type = "memory"`, []string{"type"}, cacheKeys)
		return
	case "redis":
	default:
		v.r.errorf("cache.type", "must be memory or redis, got %q", c.Type)
		return
	}
	switch {
	case c.URL != "" && (len(c.Addrs) > 0 || c.MasterName != ""):
		v.r.errorf("cache.url", "use either url (one Redis) or addrs + master_name (Sentinel), not both")
	case c.URL != "":
		v.cacheURL(c)
	case len(c.Addrs) > 0 || c.MasterName != "":
		if len(c.Addrs) == 0 {
			v.r.errorf("cache.addrs", "Sentinel needs addrs: the Sentinels' host:port addresses")
		}
		if c.MasterName == "" {
			v.r.errorf("cache.master_name", "Sentinel needs master_name: the name the Sentinels monitor")
		}
		for i, a := range c.Addrs {
			v.hostPort(fmt.Sprintf("cache.addrs[%d]", i), a)
		}
	default:
		v.r.errorf("cache.url", `is required with type = "redis": redis://host:6379/0, rediss://… for TLS, or addrs + master_name for Sentinel`)
	}
	if c.Password.Set {
		v.secret("cache.password", &c.Password, false)
	}
	v.secret("cache.key", &c.Key, true)
	if c.Key.IsLiteral() && c.Key.Literal != "" {
		if _, err := DecodeCacheKey(c.Key.Literal); err != nil {
			v.r.errorf("cache.key", "%v", err)
		}
	}
	if c.Profile != "" {
		if _, ok := v.cfg.Profiles[c.Profile]; !ok {
			v.r.errorf("cache.profile", "profile %q is not defined in [profiles]", c.Profile)
		} else if c.URL != "" && !strings.HasPrefix(c.URL, "rediss://") {
			v.r.errorf("cache.profile", "a profile is the TLS to Redis: it needs a rediss:// url")
		}
	}
	if !v.defined("cache.prefix") {
		c.Prefix = DefaultCachePrefix
	}
	if len(c.Prefix) > 64 || strings.ContainsAny(c.Prefix, " \t\r\n") {
		v.r.errorf("cache.prefix", "must be at most 64 characters without spaces")
	}
	v.duration("cache.timeout", &c.Timeout, DefaultCacheTimeout)
	if c.Timeout.D <= 0 || c.Timeout.D > 10*time.Second {
		v.r.errorf("cache.timeout", "must be greater than zero and at most 10s (it bounds every Redis call)")
	}
}

func (v *validator) cacheURL(c *Cache) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		v.r.errorf("cache.url", "%q is not a redis:// or rediss:// URL", redactURL(c.URL))
		return
	}
	if u.User != nil {
		v.r.errorf("cache.url", "must not carry credentials: set password = { env = \"REDIS_PASSWORD\" } (or another secret reference)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		v.r.errorf("cache.url", "takes no query parameters: timeouts come from timeout")
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			v.r.errorf("cache.url", "the path is the database number, like /0: got %q", u.Path)
		}
	}
	if u.Port() != "" {
		v.hostPort("cache.url", net.JoinHostPort(u.Hostname(), u.Port()))
	}
}

// redactURL drops the user information of a URL for messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = url.User("redacted")
		return u.String()
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return "…@" + s[i+1:]
	}
	return s
}
