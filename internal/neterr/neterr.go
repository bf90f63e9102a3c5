// Package neterr names a dial, TLS or transport failure in a short phrase that
// is safe to show a client: no addresses, no raw Go error text.
package neterr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"
)

// Reason describes err, e.g. "connection refused" or "TLS handshake failed:
// certificate signed by an unknown authority".
func Reason(err error) string {
	if tls := TLSReason(err); tls != "" {
		return "TLS handshake failed: " + tls
	}
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &dnsErr):
		return "host name not found"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset by the server"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	if s := err.Error(); strings.Contains(s, "EOF") || strings.Contains(s, "server closed") {
		return "connection closed by the server"
	}
	return "network error"
}

// TLSReason describes a TLS failure, or returns "" if err is not one.
func TLSReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return "certificate signed by an unknown authority"
	case errors.As(err, &host):
		return "certificate does not match the host name"
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "certificate expired or not yet valid"
		}
		return "certificate is not valid for this use"
	case errors.As(err, &rec):
		return "the server does not speak TLS"
	case errors.As(err, &alert):
		return "the server rejected the handshake (" + alert.Error() + ")"
	case errors.As(err, &verify):
		return "certificate verification failed"
	}
	if s := err.Error(); strings.Contains(s, "tls: ") || strings.Contains(s, "remote error") {
		if strings.Contains(s, "certificate required") || strings.Contains(s, "bad certificate") {
			return "the server requires a client certificate"
		}
		return "handshake error"
	}
	return ""
}

// ConnectError is a failure to set up a connection to a server (dial or
// TLS handshake): nothing of the request was sent, so it is always safe to
// try another server.
type ConnectError struct {
	TLS bool // the TCP connection was made; the TLS handshake failed
	Err error
}

func (e *ConnectError) Error() string { return e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }
