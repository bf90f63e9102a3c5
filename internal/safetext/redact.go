package safetext

import (
	"container/list"
	"slices"
	"sync"
	"sync/atomic"
)

// MinSecretLen is the length below which a value is not registered: a short
// value (a PIN, "test") would mangle ordinary text, and redacting it would
// hint at it anyway.
const MinSecretLen = 6

// MaxSecrets caps the values Register adds (tokens, codes, refresh tokens:
// they come with traffic). When it is full, the value registered least
// recently is forgotten. A configuration's secrets are pinned (Pin) and
// never forgotten, however many users' tokens follow them.
const MaxSecrets = 4096

var maxSecrets = MaxSecrets // tests lower it

// Redacted replaces a known secret in text.
const Redacted = "[redacted]"

// The registry: a set of values in least-recently-registered order, and an
// immutable index of them that Redact reads without a lock.
var reg = struct {
	mu     sync.Mutex
	order  *list.List               // of string; front = least recent
	elems  map[string]*list.Element // value -> its place in order
	pinned map[string]bool          // values never forgotten (Pin)
}{order: list.New(), elems: map[string]*list.Element{}, pinned: map[string]bool{}}

var index atomic.Pointer[secretIndex]

// secretIndex maps the first MinSecretLen bytes of each value to the values
// that start with them, longest first.
type secretIndex map[string][]string

// Register adds secret (a client secret, a resolved secret reference, a
// token) to the values that Redact removes from text. Values shorter than
// MinSecretLen are ignored. It is cheap for a value already registered.
func Register(secret string) {
	if len(secret) < MinSecretLen {
		return
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.pinned[secret] {
		return
	}
	if e, ok := reg.elems[secret]; ok {
		reg.order.MoveToBack(e)
		return
	}
	reg.elems[secret] = reg.order.PushBack(secret)
	for reg.order.Len() > maxSecrets {
		delete(reg.elems, reg.order.Remove(reg.order.Front()).(string))
	}
	reindex()
}

// Pin adds secret like Register, but it is never forgotten: for the
// values a configuration holds (resolved secret references, client
// secrets, broker keys), which must stay redacted however many tokens
// are registered after them. Their number is bounded by the configuration.
func Pin(secret string) {
	if len(secret) < MinSecretLen {
		return
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.pinned[secret] {
		return
	}
	reg.pinned[secret] = true
	if e, ok := reg.elems[secret]; ok {
		delete(reg.elems, secret)
		reg.order.Remove(e)
	}
	reindex()
}

// reindex rebuilds the index Redact reads; reg.mu is held.
func reindex() {
	idx := make(secretIndex, len(reg.elems)+len(reg.pinned))
	for v := range reg.elems {
		k := v[:MinSecretLen]
		idx[k] = append(idx[k], v)
	}
	for v := range reg.pinned {
		k := v[:MinSecretLen]
		idx[k] = append(idx[k], v)
	}
	for _, vs := range idx {
		slices.SortFunc(vs, func(a, b string) int { return len(b) - len(a) })
	}
	index.Store(&idx)
}

// Redact replaces every registered value in s with Redacted (at each place
// the longest one that matches). Text without one is returned as it is,
// without allocating.
func Redact(s string) string {
	p := index.Load()
	if p == nil || len(s) < MinSecretLen {
		return s
	}
	idx := *p
	var out []byte
	last := 0
	for i := 0; i+MinSecretLen <= len(s); {
		if n := match(idx, s[i:]); n > 0 {
			out = append(append(out, s[last:i]...), Redacted...)
			i += n
			last = i
			continue
		}
		i++
	}
	if out == nil {
		return s
	}
	return string(append(out, s[last:]...))
}

// match returns the length of the longest registered value s starts with, or 0.
func match(idx secretIndex, s string) int {
	for _, v := range idx[s[:MinSecretLen]] {
		if len(v) <= len(s) && s[:len(v)] == v {
			return len(v)
		}
	}
	return 0
}

// Clean prepares text a remote server sent for an error message or a log
// line: registered secrets redacted, then clipped to printable ASCII of at
// most max bytes (Clip), then redacted again in case dropping unprintable
// bytes joined a secret back together.
func Clean(s string, max int) string {
	return Redact(Clip(Redact(s), max))
}
