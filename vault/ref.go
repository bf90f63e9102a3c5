package vault

import (
	"context"
	"sync"
	"time"

	"github.com/authgress/authgress/conf"
)

// Resolver returns the value of a secret reference.
type Resolver func(ctx context.Context, s conf.Secret) (string, error)

// refValue is a secret-valued setting of a backend (a Vault token, AppRole
// IDs): resolved when first needed and again after ttl, so that a rotated
// value is picked up without a restart.
type refValue struct {
	ref     conf.Secret
	resolve Resolver
	ttl     time.Duration

	mu  sync.Mutex
	val string
	at  time.Time
}

func (r *refValue) get(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.val != "" && time.Since(r.at) < r.ttl {
		return r.val, nil
	}
	v, err := r.resolve(ctx, r.ref)
	if err != nil {
		if r.val != "" {
			return r.val, nil // keep the last good value while its source fails
		}
		return "", err
	}
	r.val, r.at = v, time.Now()
	return v, nil
}

// forget makes the next get resolve again.
func (r *refValue) forget() {
	r.mu.Lock()
	r.at = time.Time{}
	r.mu.Unlock()
}
