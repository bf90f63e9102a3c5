package proxy

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// Route is a connection at run time.
type Route struct {
	Name       string
	Patterns   []conf.HostPattern
	Paths      []string
	Credential string
	Token      *tokencache.Slot // nil: no credential to inject
	Transport  http.RoundTripper
	Timeout    time.Duration
	Insecure   bool // allow_insecure: keep http:// upstream (tests only)
	TLSPort    string
}

// buildRoutes turns the connections into routes, creating one token slot
// per (credential, effective scopes, params).
func buildRoutes(cfg *conf.Config, vaults vault.Set, profiles *tlsprofiles.Set, tokens *tokencache.Cache) ([]*Route, error) {
	clients := map[string]*tokencache.Client{}
	var routes []*Route
	names := make([]string, 0, len(cfg.Connections))
	for n := range cfg.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := cfg.Connections[name]
		r := &Route{Name: name, Patterns: c.Patterns, Paths: c.Paths, Credential: c.Credential,
			Transport: profiles.Transport(c.Profile), Timeout: c.Timeout.D, Insecure: c.AllowInsecure, TLSPort: "443"}
		prof, err := profiles.Profile(c.Profile)
		if err != nil {
			return nil, err
		}
		if prof != nil && prof.DefaultPort != 0 {
			r.TLSPort = fmt.Sprint(prof.DefaultPort)
		}
		if c.Credential != "" {
			cred := cfg.Credentials[c.Credential]
			client, ok := clients[c.Credential]
			if !ok {
				client = tokencache.NewClient(profiles.Transport(cred.Profile))
				clients[c.Credential] = client
			}
			scopes := cred.Scopes
			if c.Scopes != nil {
				scopes = c.Scopes
			}
			params := sortedParams(cred.Params)
			def := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s", cred.Vault, cred.ID, cred.TokenURL, cred.Send, cred.Profile, cred.DefaultTTL.D, cred.Timeout.D)
			key := tokencache.Key(c.Credential, def, scopes, params)
			req := tokencache.Request{TokenURL: cred.TokenURL, Scopes: scopes, Params: params, Send: cred.Send, DefaultTTL: cred.DefaultTTL.D}
			src := tokencache.ClientCredentials(client, vaults[cred.Vault], cred.ID, req)
			r.Token = tokens.Slot(key, c.Credential, src, cred.Timeout.D)
		}
		routes = append(routes, r)
	}
	return routes, nil
}

func sortedParams(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
