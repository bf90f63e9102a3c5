// Package tlsprofiles turns protocol profiles into TLS client configs and
// upstream transports: trust anchors, SNI, minimum version (client identities
// come in a later version). One transport is kept per profile, so connections
// with different profiles never share a pooled TCP/TLS connection.
package tlsprofiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/authgress/authgress/conf"
)

// Profile is a loaded protocol profile.
type Profile struct {
	Name        string
	DefaultPort int
	tls         *tls.Config
}

// Load reads a profile's files and builds its TLS client config.
func Load(name string, p *conf.Profile) (*Profile, error) {
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
	return &Profile{Name: name, DefaultPort: p.DefaultPort, tls: cfg}, nil
}

// ClientConfig returns a copy of the profile's TLS client config.
func (p *Profile) ClientConfig() *tls.Config {
	if p == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return p.tls.Clone()
}
