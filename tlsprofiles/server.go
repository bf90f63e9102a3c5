package tlsprofiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/authgress/authgress/conf"
)

// Server is a listener's TLS side ([server.tls]): its certificate, watched
// and rotated like a profile's client identity (a bad new pair keeps the
// current one), and — with client_ca — the pool that client certificates
// must chain to.
type Server struct {
	Identity *Identity
	config   *tls.Config
	watch    time.Duration
}

// NewServer loads a listener's certificate, key and client CA.
func NewServer(c *conf.ServerTLS) (*Server, error) {
	id, err := newIdentity([]string{c.Cert, c.Key}, func(now time.Time) (*tls.Certificate, error) {
		return loadPEMPair(c.Cert, c.Key, now)
	})
	if err != nil {
		return nil, fmt.Errorf("server.tls: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.Certificate(), nil },
	}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("server.tls.client_ca: cannot read %s", c.ClientCA)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server.tls.client_ca: %s holds no PEM certificate", c.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return &Server{Identity: id, config: cfg, watch: c.WatchInterval.Or(5 * time.Second)}, nil
}

// Config is the listener's TLS config. Its certificate is looked up at
// every handshake, so a rotation applies to the next connection.
func (s *Server) Config() *tls.Config { return s.config }

// Watch polls the certificate and key until ctx ends.
func (s *Server) Watch(ctx context.Context, log *slog.Logger) {
	go s.Identity.watch(ctx, s.watch, log, "server certificate", nil)
}
