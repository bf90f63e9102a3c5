package vault

import (
	"context"
	"errors"
	"time"
)

// withRetries calls lookup until it succeeds or fails permanently; transient
// failures (ErrUnavailable) are retried up to retries times, waiting
// backoff, 2×backoff, … in between, while ctx allows.
func withRetries(ctx context.Context, retries int, backoff time.Duration, lookup func() (Secret, error)) (Secret, error) {
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return Secret{}, last
			case <-time.After(backoff << (attempt - 1)):
			}
		}
		s, err := lookup()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return s, err
		}
		last = err
	}
	return Secret{}, last
}
