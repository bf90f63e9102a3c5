package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DeniedError is returned when the egress policy refuses a destination.
type DeniedError struct {
	Host   string
	Reason string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("destination %s is not allowed: %s", e.Host, e.Reason)
}

var deniedPrefixes = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local address (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved address"},
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback address"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64 address"},
	{netip.MustParsePrefix("2001::/32"), "Teredo address"},
	{netip.MustParsePrefix("2002::/16"), "6to4 address"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local address"},
	{netip.MustParsePrefix("fe80::/10"), "link-local address"},
	{netip.MustParsePrefix("ff00::/8"), "multicast address"},
}

// deniedReason says why ip may not be reached by unmatched traffic, or "".
func deniedReason(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, d := range deniedPrefixes {
		if d.prefix.Contains(ip) {
			return d.reason
		}
	}
	return ""
}

// Guard dials unmatched (tunnelled) traffic. Unless private addresses are
// allowed, it resolves the name once, drops every address in a denied range
// and dials only a checked address, so there is no DNS-rebinding window.
type Guard struct {
	AllowPrivate bool
	Resolver     *net.Resolver
	Dialer       *net.Dialer
}

// NewGuard returns a guard with the default resolver and a 10s dial timeout.
func NewGuard(allowPrivate bool) *Guard {
	return &Guard{AllowPrivate: allowPrivate, Resolver: net.DefaultResolver, Dialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
}

// Resolve returns the addresses host may be reached at, or a *DeniedError.
func (g *Guard) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		found, err := g.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		addrs = found
	}
	if g.AllowPrivate {
		return addrs, nil
	}
	allowed := addrs[:0:0]
	reason := ""
	for _, a := range addrs {
		if r := deniedReason(a); r != "" {
			reason = r
			continue
		}
		allowed = append(allowed, a)
	}
	if len(allowed) == 0 {
		if reason == "" {
			reason = "no address"
		}
		return nil, &DeniedError{Host: host, Reason: reason}
	}
	return allowed, nil
}

// DialContext resolves, checks and dials addr ("host:port").
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := g.Resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	return g.dialAddrs(ctx, network, addrs, port)
}

func (g *Guard) dialAddrs(ctx context.Context, network string, addrs []netip.Addr, port string) (net.Conn, error) {
	var errs []error
	for _, a := range addrs {
		c, err := g.Dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
