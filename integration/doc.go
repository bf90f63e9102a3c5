// Package integration holds the end-to-end tests: the built authgress binary
// against a real OAuth 2.0 server (panva's oidc-provider, installed from npm
// into a cache directory on first use) and real TLS upstreams, all on
// 127.0.0.1. Run with: go test -race ./integration
package integration
