// Package tlsprofiles turns protocol profiles into TLS client configs and
// upstream transports: trust anchors, SNI, minimum version, and a client
// identity (PEM cert + key, or a PKCS#12 keystore) that is reloaded when its
// files change. One transport is kept per profile, and a profile has at most
// one identity, so there is one connection pool per client identity:
// connections with different client certificates never share a TCP/TLS
// connection.
package tlsprofiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/authgress/authgress/conf"
)

// Resolver returns the value of a secret reference (keystore passwords).
type Resolver func(ctx context.Context, s conf.Secret) (string, error)

// Profile is a loaded protocol profile.
type Profile struct {
	Name        string
	DefaultPort int
	Identity    *Identity // nil: no client certificate
	watch       time.Duration
	tls         *tls.Config
}

// Load reads a profile's files and builds its TLS client config.
func Load(ctx context.Context, name string, p *conf.Profile, resolve Resolver) (*Profile, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if p.CA != "" {
		pem, err := os.ReadFile(p.CA)
		if err != nil {
			return nil, fmt.Errorf("profile %q: cannot read ca file %s", name, p.CA)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("profile %q: ca file %s holds no PEM certificate", name, p.CA)
		}
		cfg.RootCAs = pool
	}
	cfg.ServerName = p.ServerName
	cfg.InsecureSkipVerify = p.InsecureSkipVerify
	prof := &Profile{Name: name, DefaultPort: p.DefaultPort, watch: p.WatchInterval.D, tls: cfg}

	var err error
	switch {
	case p.Cert != "":
		prof.Identity, err = newIdentity([]string{p.Cert, p.Key}, func(now time.Time) (*tls.Certificate, error) {
			return loadPEMPair(p.Cert, p.Key, now)
		})
	case p.Keystore != "":
		password, perr := resolve(ctx, p.Password)
		if perr != nil {
			return nil, fmt.Errorf("profile %q: keystore password (%s): %w", name, p.Password, perr)
		}
		prof.Identity, err = newIdentity([]string{p.Keystore}, func(now time.Time) (*tls.Certificate, error) {
			return loadPKCS12(p.Keystore, password, now)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", name, err)
	}
	if prof.Identity != nil {
		cfg.GetClientCertificate = prof.Identity.getClientCertificate
	}
	return prof, nil
}

// ClientConfig returns a copy of the profile's TLS client config.
func (p *Profile) ClientConfig() *tls.Config {
	if p == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return p.tls.Clone()
}
