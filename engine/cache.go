package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"reflect"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/rediscache"
)

// openSharedCache connects the token cache to Redis when [cache] type =
// "redis". The password and the encryption key are resolved now (a config
// whose key cannot be read fails here); Redis itself need not be up: the
// replica acts alone until it is. [cache] is read at start only.
func (e *Engine) openSharedCache(ctx context.Context, cfg *conf.Config, g *generation) error {
	c := cfg.Cache
	if c.Type != "redis" {
		return nil
	}
	rawKey, err := g.vaults.Resolve(ctx, c.Key)
	if err != nil {
		return fmt.Errorf("cache.key (%s): %w", c.Key, err)
	}
	key, err := conf.DecodeCacheKey(rawKey)
	if err != nil {
		return fmt.Errorf("cache.key (%s): %w", c.Key, err)
	}
	var password string
	if c.Password.Set {
		if password, err = g.vaults.Resolve(ctx, c.Password); err != nil {
			return fmt.Errorf("cache.password (%s): %w", c.Password, err)
		}
	}
	var tc *tls.Config
	if c.Profile != "" {
		p, err := g.profiles.Profile(c.Profile)
		if err != nil {
			return fmt.Errorf("cache.profile: %w", err)
		}
		tc = p.ClientConfig()
		if p.Identity != nil {
			// The client certificate of the profile as the running
			// configuration has it (rotated files are picked up).
			name := c.Profile
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if p, err := e.cur.Load().profiles.Profile(name); err == nil && p != nil && p.Identity != nil {
					return p.Identity.Certificate(), nil
				}
				return p.Identity.Certificate(), nil
			}
		}
	}
	store, err := rediscache.New(rediscache.Options{URL: c.URL, Addrs: c.Addrs, MasterName: c.MasterName, Password: password,
		TLS: tc, Key: key, Prefix: c.Prefix, Timeout: c.Timeout.D, Log: e.log, OnInvalidate: e.tokens.Dropped})
	if err != nil {
		return err
	}
	e.shared = store
	e.tokens.SetShared(store)
	return nil
}

// cacheStatus is /status's "cache": the token cache's type and, with
// Redis, whether it is reachable and how its requests went.
type cacheStatus struct {
	Type      string     `json:"type"` // memory | redis
	Redis     string     `json:"redis,omitempty"`
	State     string     `json:"state,omitempty"` // up | down
	Since     *time.Time `json:"since,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	// Requests by level and result (authgress_cache_requests_total).
	Local  *cacheCounts `json:"local,omitempty"`
	Shared *cacheCounts `json:"shared,omitempty"`
}

type cacheCounts struct {
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	Errors int64 `json:"errors,omitempty"`
}

func (e *Engine) cacheStatus() *cacheStatus {
	if e.shared == nil {
		return &cacheStatus{Type: "memory"}
	}
	st, counts := e.shared.State(), e.tokens.Stats()
	cs := &cacheStatus{Type: "redis", Redis: st.Where, State: "down", LastError: st.LastError,
		Local:  &cacheCounts{Hits: counts.LocalHits, Misses: counts.LocalMisses},
		Shared: &cacheCounts{Hits: counts.SharedHits, Misses: counts.SharedMisses, Errors: counts.SharedErrors}}
	if st.Up {
		cs.State = "up"
	}
	if !st.Since.IsZero() {
		cs.Since = &st.Since
	}
	return cs
}

// warnCacheRestartOnly: a reload keeps the running [cache].
func warnCacheRestartOnly(old, cur *conf.Config) string {
	if reflect.DeepEqual(old.Cache, cur.Cache) {
		return ""
	}
	return "reload: [cache] changed; the token cache keeps its old settings until restart"
}
