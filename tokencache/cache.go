package tokencache

import (
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Cache holds one slot per key. Keys come from the configuration (credential,
// effective scopes, params), so their number is bounded by it; Retain drops
// the slots a new configuration no longer uses.
type Cache struct {
	log    *slog.Logger
	mu     sync.Mutex
	slots  map[string]*Slot
	shared Shared
	gone   CacheStats // counts of slots that Retain dropped
	// delegated is the newest delegated credential of each key.
	delegated map[string]*Delegated
}

// New returns an empty cache whose slots log fetches to log (nil: no log).
func New(log *slog.Logger) *Cache {
	c := &Cache{log: log, slots: map[string]*Slot{}}
	c.registerExpiryGauge()
	c.registerRequestCounter()
	return c
}

// SetShared makes sh the second level of every slot. Call it before any
// slot is used. The store tells the cache, through Dropped, which tokens
// other replicas saw rejected.
func (c *Cache) SetShared(sh Shared) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shared = sh
	for key, s := range c.slots {
		s.shared, s.sharedName, s.stats = sh, sh.Name(key), &slotStats{}
	}
}

// Dropped is called by the shared level when a replica saw the token of
// hash under name rejected by an upstream: a slot holding it drops it.
func (c *Cache) Dropped(name, hash string) {
	for _, s := range c.Slots() {
		if s.sharedName == name && s.dropRejected(hash) {
			s.log.Info("token dropped: another replica saw it rejected", "credential", s.Name)
		}
	}
}

// Slot returns the slot for key, creating it if it does not exist; name is
// the credential's name and scopes what it asks for. An existing slot keeps
// its token and fetches with src from now on (a reload rebuilt the vaults
// and transports src uses).
func (c *Cache) Slot(key, name, scopes string, src Source, timeout time.Duration) *Slot {
	return c.slot(key, name, scopes, "", src, timeout)
}

// slot is Slot for user's token ("": a client token); a new slot is
// complete before other goroutines can see it.
func (c *Cache) slot(key, name, scopes, user string, src Source, timeout time.Duration) *Slot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.slots[key]; ok {
		s.mu.Lock()
		s.src = src
		s.mu.Unlock()
		return s
	}
	s := NewSlot(key, name, src, timeout, c.log)
	s.Scopes, s.User = scopes, user
	if c.shared != nil {
		s.shared, s.sharedName, s.stats = c.shared, c.shared.Name(key), &slotStats{}
	}
	c.slots[key] = s
	return s
}

// Lookup returns the slot of key, or nil if there is none.
func (c *Cache) Lookup(key string) *Slot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[key]
}

// Retain keeps only the slots whose keys are listed, and the user slots of
// the delegated credentials whose keys are.
func (c *Cache) Retain(keys map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.delegated {
		if !keys[k] {
			delete(c.delegated, k)
		}
	}
	for k, s := range c.slots {
		base := k
		if i := strings.Index(k, userSep); i >= 0 {
			base = k[:i]
		}
		if !keys[base] {
			c.gone.add(s.stats)
			delete(c.slots, k)
		}
	}
}

// CacheStats counts cache requests (with a shared level only): at the
// first level, Get calls served by the slot's token or not; at the shared
// level, flights that ended with a stored token (hit), fetched while
// holding the lock (miss), or fetched alone because the shared level
// failed (error).
type CacheStats struct {
	LocalHits, LocalMisses                 int64
	SharedHits, SharedMisses, SharedErrors int64
}

func (cs *CacheStats) add(st *slotStats) {
	if st == nil {
		return
	}
	cs.LocalHits += st.localHits.n.Load()
	cs.LocalMisses += st.localMisses.n.Load()
	cs.SharedHits += st.shared[sharedHit].n.Load()
	cs.SharedMisses += st.shared[sharedMiss].n.Load()
	cs.SharedErrors += st.shared[sharedError].n.Load()
}

// Stats sums the cache requests of every slot, including dropped ones.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.gone
	for _, s := range c.slots {
		st.add(s.stats)
	}
	return st
}

// HasShared reports whether the cache has a shared level.
func (c *Cache) HasShared() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shared != nil
}

// Slots returns every slot, sorted by key.
func (c *Cache) Slots() []*Slot {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Slot, 0, len(c.slots))
	for _, s := range c.slots {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Key builds a cache key: the credential's identity (its name and a digest of
// its definition, so an edited credential gets a new token), the effective
// scopes sorted and de-duplicated, and the params.
func Key(credential, definition string, scopes []string, params [][2]string) string {
	sc := append([]string(nil), scopes...)
	sort.Strings(sc)
	var b strings.Builder
	b.WriteString(credential)
	b.WriteString("\x00")
	b.WriteString(definition)
	b.WriteString("\x00")
	for i, s := range sc {
		if i > 0 && s == sc[i-1] {
			continue
		}
		b.WriteString(s)
		b.WriteString(" ")
	}
	for _, p := range params {
		b.WriteString("\x00")
		b.WriteString(p[0])
		b.WriteString("=")
		b.WriteString(p[1])
	}
	return b.String()
}
