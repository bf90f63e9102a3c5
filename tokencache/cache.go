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
	log   *slog.Logger
	mu    sync.Mutex
	slots map[string]*Slot
}

// New returns an empty cache whose slots log fetches to log (nil: no log).
func New(log *slog.Logger) *Cache {
	c := &Cache{log: log, slots: map[string]*Slot{}}
	c.registerExpiryGauge()
	return c
}

// Slot returns the slot for key, creating it if it does not exist; name is
// the credential's name and scopes what it asks for. An existing slot keeps
// its token and fetches with src from now on (a reload rebuilt the vaults
// and transports src uses).
func (c *Cache) Slot(key, name, scopes string, src Source, timeout time.Duration) *Slot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.slots[key]; ok {
		s.mu.Lock()
		s.src = src
		s.mu.Unlock()
		return s
	}
	s := NewSlot(key, name, src, timeout, c.log)
	s.Scopes = scopes
	c.slots[key] = s
	return s
}

// Retain keeps only the slots whose keys are listed.
func (c *Cache) Retain(keys map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.slots {
		if !keys[k] {
			delete(c.slots, k)
		}
	}
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
