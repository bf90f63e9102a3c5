package proxy

import (
	"crypto/x509"
	"net/http"
	"strings"
)

// Client is who sent a request: a proxy user (Proxy-Authorization) or the
// subject of a verified client certificate (the agent listener's client_ca).
// The zero Client is anonymous.
type Client struct {
	User    string
	Subject string // RFC 2253 form, e.g. "CN=billing,O=Acme"
	CN      string
}

// String is the client identity as logged: the user, else the subject.
func (c *Client) String() string {
	if c == nil {
		return ""
	}
	if c.User != "" {
		return c.User
	}
	return c.Subject
}

// delegatedUser is the identity whose user token a delegated credential
// injects (SPEC §14): the proxy user, else the certificate's CN.
func (c *Client) delegatedUser() string {
	if c == nil {
		return ""
	}
	if c.User != "" {
		return c.User
	}
	return c.CN
}

// admittedBy reports whether one of names is this client: a proxy user
// name, the full subject, or "CN=<common name>".
func (c *Client) admittedBy(names []string) bool {
	if c == nil {
		return false
	}
	for _, n := range names {
		switch {
		case c.User != "" && n == c.User:
			return true
		case c.Subject != "" && n == c.Subject:
			return true
		case c.CN != "" && len(n) > 3 && strings.EqualFold(n[:3], "CN=") && n[3:] == c.CN:
			return true
		}
	}
	return false
}

// certClient is the identity of a request's verified client certificate.
func certClient(r *http.Request) Client {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return Client{}
	}
	return subjectClient(r.TLS.VerifiedChains[0][0])
}

func subjectClient(c *x509.Certificate) Client {
	return Client{Subject: c.Subject.String(), CN: c.Subject.CommonName}
}
