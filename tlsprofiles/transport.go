package tlsprofiles

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/authgress/authgress/conf"
)

// Transport settings shared by every upstream transport.
const (
	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	maxIdlePerHost      = 256
)

// DialFunc dials a TCP connection.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewTransport returns an upstream transport using the profile's TLS settings
// (nil: system roots, TLS 1.2+). dial replaces the default dialer when set.
// It never reads proxy settings from the environment and never decompresses:
// a proxy passes bodies through as they are.
func NewTransport(p *Profile, dial DialFunc) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       p.ClientConfig(),
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
}

// Set holds the loaded profiles and one transport per profile.
type Set struct {
	profiles   map[string]*Profile
	transports map[string]*http.Transport
	def        *http.Transport
}

// Build loads every configured profile.
func Build(cfg *conf.Config) (*Set, error) {
	s := &Set{profiles: map[string]*Profile{}, transports: map[string]*http.Transport{}, def: NewTransport(nil, nil)}
	for name, p := range cfg.Profiles {
		prof, err := Load(name, p)
		if err != nil {
			return nil, err
		}
		s.profiles[name] = prof
		s.transports[name] = NewTransport(prof, nil)
	}
	return s, nil
}

// Profile returns the named profile (nil for "").
func (s *Set) Profile(name string) (*Profile, error) {
	if name == "" {
		return nil, nil
	}
	p, ok := s.profiles[name]
	if !ok {
		return nil, fmt.Errorf("profile %q is not defined", name)
	}
	return p, nil
}

// Transport returns the transport of the named profile ("" for the default).
func (s *Set) Transport(name string) *http.Transport {
	if t, ok := s.transports[name]; ok {
		return t
	}
	return s.def
}

// CloseIdle closes idle connections of every transport.
func (s *Set) CloseIdle() {
	s.def.CloseIdleConnections()
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
}
