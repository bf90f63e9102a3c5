// Package rediscache is the shared token cache on Redis: the second level
// of tokencache, seen by every replica. Values are encrypted and
// authenticated with AES-256-GCM (random nonce, the Redis key name as
// associated data); key names are a keyed hash of the credential's cache
// key and hold no secret. A lock with expiry (SET NX PX) lets one replica
// fetch while the others wait; Lua compare-and-delete invalidates the
// shared copy only if it still holds a rejected token, and pub/sub tells
// every replica to drop that token. Every call is bounded by the
// configured timeout; after a failure the store reports itself down and
// answers at once with an error (each replica then acts alone) until a
// background ping succeeds again.
package rediscache

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgress/authgress/internal/safetext"
	"github.com/authgress/authgress/tokencache"
)

// Options configure a Store.
type Options struct {
	URL        string   // redis:// or rediss://; or:
	Addrs      []string // Sentinels, with MasterName
	MasterName string
	Password   string
	TLS        *tls.Config // nil: plain (rediss:// without a profile: system roots)
	Key        []byte      // 32 bytes
	Prefix     string
	Timeout    time.Duration
	Log        *slog.Logger
	// OnInvalidate is told that a replica saw the token of hash under
	// name rejected by an upstream.
	OnInvalidate func(name, hash string)
}

// Store implements tokencache.Shared on Redis.
type Store struct {
	rdb     redis.UniversalClient
	ps      *redis.PubSub
	aead    cipher.AEAD
	nameKey []byte
	hashKey []byte
	prefix  string
	channel string
	timeout time.Duration
	log     *slog.Logger
	onInval func(name, hash string)
	stop    context.CancelFunc
	done    chan struct{}
	wake    chan struct{} // the store went down: the health check pings now

	down atomic.Bool

	mu      sync.Mutex
	waiters map[string]chan struct{}
	since   time.Time
	lastErr string
	where   string // host:port or Sentinel master name, for status
	everUp  bool
	closed  bool
}

var _ tokencache.Shared = (*Store)(nil)

// errDown is returned while the store is marked down.
var errDown = errors.New("the shared cache is unavailable")

// Version of the value format: 1 byte, then the token hash (64 hex
// characters, compared by Invalidate's script), the GCM nonce and the
// sealed token.
const (
	formatV1 = '1'
	hashLen  = 64
)

// New connects to Redis (lazily: New does not wait for it) and starts the
// subscriber and the health check.
func New(o Options) (*Store, error) {
	if len(o.Key) != 32 {
		return nil, errors.New("the cache key must be 32 bytes")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	clientLog.Do(func() { redis.SetLogger(redisLog{o.Log}) })
	encKey, err := hkdf.Key(sha256.New, o.Key, nil, "authgress shared token cache v1: AES-256-GCM", 32)
	if err != nil {
		return nil, err
	}
	nameKey, _ := hkdf.Key(sha256.New, o.Key, nil, "authgress shared token cache v1: key names", 32)
	hashKey, _ := hkdf.Key(sha256.New, o.Key, nil, "authgress shared token cache v1: token hashes", 32)
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &Store{aead: aead, nameKey: nameKey, hashKey: hashKey, prefix: o.Prefix, channel: o.Prefix + "events",
		timeout: o.Timeout, log: o.Log, onInval: o.OnInvalidate, waiters: map[string]chan struct{}{}, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if s.rdb, s.where, err = client(o); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.since = time.Now()
	s.ps = s.rdb.Subscribe(ctx, s.channel)
	go s.subscriber()
	go s.health(ctx)
	return s, nil
}

func client(o Options) (redis.UniversalClient, string, error) {
	t := o.Timeout
	if o.URL != "" {
		opt, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, "", fmt.Errorf("cache.url: %s", strings.ReplaceAll(err.Error(), o.URL, "(the url)"))
		}
		if opt.TLSConfig != nil && o.TLS != nil {
			tc := o.TLS.Clone()
			if tc.ServerName == "" {
				tc.ServerName = opt.TLSConfig.ServerName
			}
			opt.TLSConfig = tc
		}
		opt.Password = o.Password
		tune(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, t)
		opt.MaxRetries, opt.DialerRetries, opt.ContextTimeoutEnabled, opt.Protocol = 1, 1, true, 2
		opt.PoolSize, opt.MinIdleConns, opt.DisableIdentity = 16, 1, true
		return redis.NewClient(opt), opt.Addr, nil
	}
	fo := &redis.FailoverOptions{MasterName: o.MasterName, SentinelAddrs: o.Addrs, Password: o.Password, TLSConfig: o.TLS}
	tune(&fo.DialTimeout, &fo.ReadTimeout, &fo.WriteTimeout, &fo.PoolTimeout, t)
	fo.MaxRetries, fo.DialerRetries, fo.ContextTimeoutEnabled, fo.Protocol = 1, 1, true, 2
	fo.PoolSize, fo.MinIdleConns, fo.DisableIdentity = 16, 1, true
	return redis.NewFailoverClient(fo), "sentinel master " + o.MasterName, nil
}

func tune(dial, read, write, pool *time.Duration, t time.Duration) {
	*dial, *read, *write, *pool = t, t, t, t
}

// Close stops the subscriber and the health check and closes the client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	_ = s.ps.Close()
	<-s.done
	return s.rdb.Close()
}

// The go-redis client logs to stderr by default: its messages (reconnects,
// dial failures) go to the process log at debug level instead.
var clientLog sync.Once

type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug("redis client", "message", safetext.Redact(fmt.Sprintf(format, v...)))
}

// Timeout bounds each call.
func (s *Store) Timeout() time.Duration { return s.timeout }

// Name is prefix + "tok:" + a keyed hash of the cache key.
func (s *Store) Name(key string) string {
	m := hmac.New(sha256.New, s.nameKey)
	m.Write([]byte(key))
	return s.prefix + "tok:" + hex.EncodeToString(m.Sum(nil)[:16])
}

func (s *Store) lockName(name string) string {
	return s.prefix + "lock:" + strings.TrimPrefix(name, s.prefix+"tok:")
}

// Hash is a keyed hash of a token value: without the cache key, a Redis
// dump cannot even confirm a guessed token.
func (s *Store) Hash(token string) string {
	m := hmac.New(sha256.New, s.hashKey)
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// call runs fn with the timeout, unless the store is down; a failure
// marks it down.
func (s *Store) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.down.Load() {
		return errDown
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := fn(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		s.markDown(err)
		return err
	}
	return nil
}

// Load reads and opens the token stored under name.
func (s *Store) Load(ctx context.Context, name string) (*tokencache.Token, error) {
	var raw []byte
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		raw, err = s.rdb.Get(ctx, name).Bytes()
		return err
	})
	if err != nil || raw == nil {
		return nil, err
	}
	plain, err := s.open(name, raw)
	if err != nil {
		// Written with another key, or tampered with: not ours to use.
		s.log.Warn("shared cache: a stored token could not be decrypted and is ignored (another cache key, or tampering)", "key", name)
		return nil, nil
	}
	return tokencache.DecodeToken(plain)
}

func (s *Store) seal(name string, t *tokencache.Token) []byte {
	hash := s.Hash(t.Value)
	out := make([]byte, 0, 1+hashLen+s.aead.NonceSize()+len(t.Value)+256)
	out = append(out, formatV1)
	out = append(out, hash...)
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, tokencache.EncodeToken(t), s.aad(name, hash))
}

func (s *Store) open(name string, raw []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(raw) < 1+hashLen+ns+s.aead.Overhead() || raw[0] != formatV1 {
		return nil, errors.New("malformed")
	}
	hash, nonce, sealed := raw[1:1+hashLen], raw[1+hashLen:1+hashLen+ns], raw[1+hashLen+ns:]
	return s.aead.Open(nil, nonce, sealed, s.aad(name, string(hash)))
}

// aad binds a value to its key name and to the token hash stored in clear
// beside it (so neither can be swapped).
func (s *Store) aad(name, hash string) []byte {
	return []byte(name + "\x00" + hash)
}

// Store seals t under name until it stops being usable (a user's token:
// until its refresh token expires), and tells waiting replicas (pub/sub) in
// the same round trip.
func (s *Store) Store(ctx context.Context, name string, t *tokencache.Token) error {
	ttl := time.Until(tokencache.KeepUntil(t))
	if ttl < time.Millisecond {
		return nil
	}
	val := s.seal(name, t)
	return s.call(ctx, func(ctx context.Context) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, name, val, ttl)
			p.Publish(ctx, s.channel, "put "+name)
			return nil
		})
		return err
	})
}

var unlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Lock takes the fetch lock of name: SET NX PX with a random value that
// only its owner deletes.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (func(), bool, error) {
	lock := s.lockName(name)
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	owner := hex.EncodeToString(b)
	var ok bool
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		ok, err = s.rdb.SetNX(ctx, lock, owner, ttl).Result()
		return err
	})
	if err != nil || !ok {
		return nil, false, err
	}
	return func() {
		_ = s.call(context.WithoutCancel(ctx), func(ctx context.Context) error {
			return unlockScript.Run(ctx, s.rdb, []string{lock}, owner).Err()
		})
	}, true, nil
}

// invalidateScript deletes KEYS[1] only if the token hash stored in clear
// at the start of its value is ARGV[1], and always publishes the rejection.
var invalidateScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local n = 0
if v and string.sub(v, 2, 65) == ARGV[1] then n = redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n`)

// Invalidate deletes the stored token of name if it is the one of hash
// (compare-and-delete), and broadcasts that the token was rejected.
func (s *Store) Invalidate(ctx context.Context, name, hash string) error {
	return s.call(ctx, func(ctx context.Context) error {
		return invalidateScript.Run(ctx, s.rdb, []string{name}, hash, s.channel, "inv "+name+" "+hash).Err()
	})
}

// Changed returns a channel closed at the next notification for name.
func (s *Store) Changed(name string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[name]
	if !ok {
		ch = make(chan struct{})
		s.waiters[name] = ch
	}
	return ch
}

func (s *Store) notify(name string) {
	s.mu.Lock()
	ch, ok := s.waiters[name]
	delete(s.waiters, name)
	s.mu.Unlock()
	if ok {
		close(ch)
	}
}

// subscriber handles the events every replica publishes: "put NAME" and
// "inv NAME HASH". go-redis reconnects and subscribes again after an
// outage; the health check pings the subscription every second.
func (s *Store) subscriber() {
	defer close(s.done)
	for msg := range s.ps.Channel(redis.WithChannelHealthCheckInterval(time.Second)) {
		f := strings.Fields(msg.Payload)
		switch {
		case len(f) == 2 && f[0] == "put":
			s.notify(f[1])
		case len(f) == 3 && f[0] == "inv" && len(f[2]) == hashLen:
			s.notify(f[1])
			if s.onInval != nil {
				s.onInval(f[1], f[2])
			}
		}
	}
}

// health pings Redis: every 500 ms while the store is down (it is up
// again as soon as one answers), every 5 s while it is up.
func (s *Store) health(ctx context.Context) {
	for {
		every := 5 * time.Second
		if s.down.Load() {
			every = 500 * time.Millisecond
		}
		pctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := s.rdb.Ping(pctx).Err()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.markDown(err)
		} else {
			s.markUp()
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-s.wake: // gone down since the last ping: check again soon
			t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

func (s *Store) markDown(err error) {
	msg := describe(err)
	s.mu.Lock()
	s.lastErr = msg
	was := !s.down.Load()
	if was {
		s.down.Store(true)
		s.since = time.Now()
	}
	s.mu.Unlock()
	if was {
		select {
		case s.wake <- struct{}{}:
		default:
		}
		s.log.Warn("shared token cache unavailable: each replica uses its own cache and fetches its own tokens until it returns",
			"redis", s.where, "error", msg)
	}
}

func (s *Store) markUp() {
	s.mu.Lock()
	was, first := s.down.Load(), !s.everUp
	s.everUp = true
	if was {
		s.down.Store(false)
		s.since = time.Now()
	}
	s.mu.Unlock()
	switch {
	case first:
		s.log.Info("shared token cache connected", "redis", s.where)
	case was:
		s.log.Info("shared token cache available again: replicas share tokens again", "redis", s.where)
	}
}

// describe classifies an error without addresses or values.
func describe(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "timed out"
	case errors.Is(err, errDown):
		return "unavailable"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "invalid password"):
		return "authentication failed (check cache.password)"
	case strings.Contains(msg, "certificate"):
		return "TLS certificate not accepted (check cache.profile)"
	}
	return safetext.Clean(msg, 160) // redacted before it is cut: a cut secret would no longer match
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// State is the store's state for /status.
type State struct {
	Where     string
	Up        bool
	Since     time.Time
	LastError string
}

// State returns the store's state.
func (s *Store) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Where: s.where, Up: !s.down.Load(), Since: s.since, LastError: s.lastErr}
}
