package tlsprofiles

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Identity is a profile's client certificate. Its files are polled: a changed
// pair is validated and swapped in without restart; a bad pair keeps the
// current one. The certificate is handed to TLS handshakes through
// GetClientCertificate, so new connections use the new pair at once.
type Identity struct {
	files []string
	load  func(now time.Time) (*tls.Certificate, error)
	cur   atomic.Pointer[tls.Certificate]

	mu       sync.Mutex
	stamp    string
	rotated  time.Time
	rejected string
}

func newIdentity(files []string, load func(time.Time) (*tls.Certificate, error)) (*Identity, error) {
	id := &Identity{files: files, load: load}
	id.stamp = stampOf(files)
	c, err := load(time.Now())
	if err != nil {
		return nil, err
	}
	id.cur.Store(c)
	return id, nil
}

func (id *Identity) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return id.cur.Load(), nil
}

// Certificate returns the current certificate.
func (id *Identity) Certificate() *tls.Certificate { return id.cur.Load() }

// stampOf fingerprints files by modification time and size.
func stampOf(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d:%d;", st.ModTime().UnixNano(), st.Size())
		} else {
			b.WriteString("missing;")
		}
	}
	return b.String()
}

// check reloads the identity if its files changed. rotated reports a swap;
// err says why changed files were refused (they are not retried until they
// change again).
func (id *Identity) check(now time.Time) (rotated bool, err error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	st := stampOf(id.files)
	if st == id.stamp {
		return false, nil
	}
	id.stamp = st
	c, err := id.load(now)
	if err != nil {
		id.rejected = err.Error()
		return false, err
	}
	id.cur.Store(c)
	id.rotated, id.rejected = now, ""
	return true, nil
}

// IdentityState is a status snapshot of a client certificate.
type IdentityState struct {
	Subject  string
	Issuer   string
	Serial   string
	NotAfter time.Time
	Rotated  time.Time // last rotation (zero: loaded at start)
	Rejected string    // why the last changed files were refused, if they were
}

// State returns the identity's current certificate details.
func (id *Identity) State() IdentityState {
	id.mu.Lock()
	defer id.mu.Unlock()
	leaf := id.cur.Load().Leaf
	return IdentityState{Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), Serial: leaf.SerialNumber.String(),
		NotAfter: leaf.NotAfter, Rotated: id.rotated, Rejected: id.rejected}
}

// watch polls the identity's files every interval until ctx ends, swapping
// in a changed pair (then calling rotated) or logging why it was refused.
func (id *Identity) watch(ctx context.Context, interval time.Duration, log *slog.Logger, what string, rotated func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ok, err := id.check(now)
			switch {
			case err != nil:
				log.Warn(what+" change rejected; keeping the current one", "error", err.Error())
			case ok:
				if rotated != nil {
					rotated()
				}
				st := id.State()
				log.Info(what+" rotated", "subject", st.Subject, "not_after", st.NotAfter.UTC().Format(time.RFC3339))
			}
		}
	}
}
