package main

import (
	"context"
	"log/slog"
	"net/url"

	"github.com/authgress/authgress/conf"
)

// logEffectiveConfig writes, at debug level, what the loaded configuration
// amounts to: the listeners and egress policy, each vault, credential,
// profile and connection. It never logs a secret: secret-valued keys and
// credential params are named, not shown, and URLs lose their query.
//
// Without it [log] level = "debug" printed nothing that "info" did not:
// the proxy, token cache and vaults log at info or above, and the only debug
// sources (goproxy warnings, net/http server errors) are silent when all goes
// well.
func logEffectiveConfig(log *slog.Logger, cfg *conf.Config) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	access := cfg.Log.Access == nil || *cfg.Log.Access
	users := 0
	if cfg.Server.Auth != nil {
		users = len(cfg.Server.Auth.Users)
	}
	log.Debug("config server", "path", cfg.Path, "listen", cfg.Server.Listen, "admin", cfg.Server.Admin,
		"proxy_auth_users", users, "tls", cfg.Server.TLS != nil, "egress_unmatched", cfg.Egress.Unmatched,
		"egress_allow_private", cfg.Egress.AllowPrivate, "access_log", access,
		"shutdown_timeout", cfg.Server.ShutdownTimeout.D.String())
	if ic := cfg.Intercept; ic != nil {
		log.Debug("config intercept", "ca_cert", ic.CACert, "cache_size", ic.CacheSize, "leaf_ttl", ic.LeafTTL.D.String())
	}
	for _, name := range sortedNames(cfg.Vaults) {
		v := cfg.Vaults[name]
		log.Debug("config vault", "vault", name, "type", v.Type, "url", redactURL(v.URL), "address", redactURL(v.Address),
			"path", v.Path, "profile", v.Profile, "cache_ttl", v.CacheTTL.D.String())
	}
	for _, name := range sortedNames(cfg.Profiles) {
		p := cfg.Profiles[name]
		log.Debug("config profile", "profile", name, "ca", p.CA, "cert", p.Cert, "keystore", p.Keystore,
			"server_name", p.ServerName, "min_version", p.MinVersion)
	}
	for _, name := range sortedNames(cfg.Credentials) {
		c := cfg.Credentials[name]
		params := sortedNames(c.Params) // names only: values may be secrets
		log.Debug("config credential", "credential", name, "vault", c.Vault, "id", c.ID, "token_url", redactURL(c.TokenURL),
			"scopes", c.Scopes, "send", c.Send, "params", params, "profile", c.Profile, "prefetch", c.Prefetch)
	}
	for _, name := range sortedNames(cfg.Connections) {
		c := cfg.Connections[name]
		log.Debug("config connection", "connection", name, "hosts", c.Hosts, "paths", c.Paths, "credential", c.Credential,
			"scopes", c.Scopes, "profile", c.Profile, "allow_insecure", c.AllowInsecure)
	}
}

// redactURL drops the query, fragment and user info of u.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || u == "" {
		return ""
	}
	p.RawQuery, p.Fragment, p.User = "", "", nil
	return p.String()
}
