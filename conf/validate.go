package conf

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults applied by validation when a key is absent.
const (
	DefaultListen            = "127.0.0.1:3128"
	DefaultShutdownTimeout   = 20 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultTunnelIdleTimeout = 5 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultVaultTimeout      = 10 * time.Second
	DefaultCacheTTL          = 5 * time.Minute
	DefaultTokenTTL          = 5 * time.Minute
	DefaultTokenTimeout      = 10 * time.Second
	DefaultMinRefresh        = 10 * time.Second
	DefaultUpstreamTimeout   = 30 * time.Second
	DefaultLeafCacheSize     = 10000
	DefaultLeafTTL           = 24 * time.Hour
)

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

type validator struct {
	cfg *Config
	md  toml.MetaData
	r   *reporter
}

func (v *validator) run() {
	v.server()
	v.log()
	v.egress()
	if v.cfg.Intercept != nil {
		v.intercept(v.cfg.Intercept)
	}
	for _, name := range sortedKeys(v.cfg.Profiles) {
		v.profile(name, v.cfg.Profiles[name])
	}
	for _, name := range sortedKeys(v.cfg.Vaults) {
		v.vault(name, v.cfg.Vaults[name])
	}
	for _, name := range sortedKeys(v.cfg.Credentials) {
		v.credential(name, v.cfg.Credentials[name])
	}
	for _, name := range sortedKeys(v.cfg.Clusters) {
		v.cluster(name, v.cfg.Clusters[name])
	}
	for _, name := range sortedKeys(v.cfg.Connections) {
		v.connection(name, v.cfg.Connections[name])
	}
	v.cache()
	if v.cfg.Broker != nil {
		v.broker(v.cfg.Broker)
	}
	v.overlaps()
	v.listeners()
	v.cycles()
}

func sortedKeys[T any](m map[string]T) []string { return slices.Sorted(maps.Keys(m)) }

func (v *validator) name(section, name string) {
	if !nameRe.MatchString(name) {
		v.r.errorf(section+"."+name, "invalid name %q: names may use only letters, digits and underscores", name)
	}
}

func (v *validator) defined(path string) bool {
	return v.md.IsDefined(strings.Split(path, ".")...)
}

// duration reports a refused duration value and applies a default.
func (v *validator) duration(path string, d *Duration, def time.Duration) {
	if d.bad != "" {
		v.r.errorf(path, "%s", d.bad)
		d.D, d.Set = def, false
		return
	}
	if !d.Set {
		d.D = def
	}
}

func (v *validator) secret(path string, s *Secret, required bool) {
	switch {
	case !s.Set:
		if required {
			v.r.errorf(path, "is required")
		}
	case s.bad != "":
		v.r.errorf(path, "%s", s.bad)
	case s.IsLiteral():
		if s.Literal == "" {
			v.r.errorf(path, "is empty")
		} else {
			v.r.warnf(path, "a literal secret is written in the config file: prefer { env = \"NAME\" }, { file = \"PATH\" } or { vault = \"NAME\", id = \"ID\" }")
		}
	case s.Vault != "":
		if vt, ok := v.cfg.Vaults[s.Vault]; !ok {
			v.r.errorf(path, "vault %q is not defined in [vaults]", s.Vault)
		} else if err := checkVaultID(vt, s.ID); err != nil {
			v.r.errorf(path, "%v", err)
		}
	case s.File != "":
		s.File = v.path(s.File)
		if err := Readable(s.File); err != nil {
			v.r.errorf(path, "secret %v", err)
		}
	}
}

// path resolves a config-relative file path.
func (v *validator) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.cfg.Dir, p)
}

func (v *validator) file(path string, p *string) {
	if *p == "" {
		return
	}
	*p = v.path(*p)
	if err := Readable(*p); err != nil {
		v.r.errorf(path, "%v", err)
	}
}

func (v *validator) hostPort(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.r.errorf(path, "%q is not a host:port address", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.r.errorf(path, "%q has an invalid port", addr)
	}
	_ = host
}

func (v *validator) server() {
	s := &v.cfg.Server
	if s.Listen == "" {
		s.Listen = DefaultListen
	}
	v.hostPort("server.listen", s.Listen)
	if s.Admin != "" {
		v.hostPort("server.admin", s.Admin)
	}
	v.duration("server.shutdown_timeout", &s.ShutdownTimeout, DefaultShutdownTimeout)
	v.duration("server.read_header_timeout", &s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	v.duration("server.idle_timeout", &s.IdleTimeout, DefaultIdleTimeout)
	v.duration("server.tunnel_idle_timeout", &s.TunnelIdleTimeout, DefaultTunnelIdleTimeout)
	for _, d := range []struct {
		path string
		d    Duration
	}{{"server.read_header_timeout", s.ReadHeaderTimeout}, {"server.idle_timeout", s.IdleTimeout}, {"server.tunnel_idle_timeout", s.TunnelIdleTimeout}} {
		if d.d.Set && d.d.D <= 0 {
			v.r.errorf(d.path, "must be greater than zero (unbounded timeouts let slow clients pin the proxy)")
		}
	}
	switch {
	case s.MaxHeaderBytes == 0:
		s.MaxHeaderBytes = DefaultMaxHeaderBytes
	case s.MaxHeaderBytes < 4<<10 || s.MaxHeaderBytes > 1<<20:
		v.r.errorf("server.max_header_bytes", "must be between 4096 and 1048576")
	}
	if t := s.TLS; t != nil {
		if t.Cert == "" {
			v.r.errorf("server.tls.cert", "is required: the listener's PEM certificate (chain)")
		}
		if t.Key == "" {
			v.r.errorf("server.tls.key", "is required: the listener's PEM private key")
		}
		v.file("server.tls.cert", &t.Cert)
		v.file("server.tls.key", &t.Key)
		v.file("server.tls.client_ca", &t.ClientCA)
		v.duration("server.tls.watch_interval", &t.WatchInterval, 5*time.Second)
		if t.WatchInterval.D < 100*time.Millisecond {
			v.r.errorf("server.tls.watch_interval", "must be at least 100ms")
		}
	}
	if s.Auth != nil {
		v.users("server.auth", s.Auth)
	}
	if s.AdminAuth != nil {
		v.users("server.admin_auth", s.AdminAuth)
	}
	if host, _, err := net.SplitHostPort(s.Admin); err == nil && s.AdminAuth == nil && !IsLoopbackHost(host) {
		v.r.warnf("server.admin", "the admin listener %q is not on loopback and has no [server.admin_auth]: anyone who reaches it sees the dashboard and /status and can run connection tests", s.Admin)
	}
}

// users checks the Basic users of [server.auth] or [server.admin_auth].
func (v *validator) users(table string, a *ServerAuth) {
	if len(a.Users) == 0 {
		v.r.errorf(table+".users", "[%s] needs at least one user", table)
	}
	seen := map[string]bool{}
	for i := range a.Users {
		u := &a.Users[i]
		p := fmt.Sprintf("%s.users[%d]", table, i)
		switch {
		case u.Name == "":
			v.r.errorf(p+".name", "is required")
		case strings.Contains(u.Name, ":"):
			v.r.errorf(p+".name", "a user name cannot contain ':'")
		case seen[u.Name]:
			v.r.errorf(p+".name", "user %q is listed twice", u.Name)
		}
		seen[u.Name] = true
		v.secret(p+".password", &u.Password, true)
	}
}

func (v *validator) log() {
	l := &v.cfg.Log
	switch l.Level {
	case "":
		l.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		v.r.errorf("log.level", "must be one of debug, info, warn, error")
	}
	switch l.Format {
	case "":
		l.Format = "text"
	case "text", "json":
	default:
		v.r.errorf("log.format", "must be text or json")
	}
}

func (v *validator) egress() {
	e := &v.cfg.Egress
	switch e.Unmatched {
	case "":
		e.Unmatched = "deny"
	case "deny", "tunnel":
	default:
		v.r.errorf("egress.unmatched", "must be deny or tunnel, got %q", e.Unmatched)
	}
	if e.Unmatched == "deny" && e.AllowPrivate {
		v.r.warnf("egress.allow_private", "has no effect with unmatched = \"deny\"")
	}
}

// onlyKeys reports keys set on an entry that its type does not use.
func (v *validator) onlyKeys(prefix, kind string, allowed []string, all []string) {
	for _, k := range all {
		if !contains(allowed, k) && v.defined(prefix+"."+k) {
			v.r.errorf(prefix+"."+k, "is not used by %s", kind)
		}
	}
}

var vaultKeys = []string{"type", "url", "app_id", "safe", "folder", "policy_id", "address", "mount", "namespace", "token", "role_id", "secret_id", "client_id_field", "client_secret_field", "path", "profile", "timeout", "cache_ttl", "max_stale"}

func (v *validator) vault(name string, vt *Vault) {
	p := "vaults." + name
	v.name("vaults", name)
	v.duration(p+".timeout", &vt.Timeout, DefaultVaultTimeout)
	v.duration(p+".cache_ttl", &vt.CacheTTL, DefaultCacheTTL)
	v.duration(p+".max_stale", &vt.MaxStale, 0)
	common := []string{"type", "cache_ttl", "max_stale"}
	remote := append(common, "profile", "timeout")
	switch vt.Type {
	case "file":
		v.onlyKeys(p, `type = "file"`, append(common, "path"), vaultKeys)
		if vt.Path == "" {
			v.r.errorf(p+".path", "is required for a file vault")
		} else {
			v.file(p+".path", &vt.Path)
		}
	case "env":
		v.onlyKeys(p, `type = "env"`, common, vaultKeys)
	case "cyberark-ccp":
		v.onlyKeys(p, `type = "cyberark-ccp"`, append(remote, "url", "app_id", "safe", "folder", "policy_id"), vaultKeys)
		v.endpointURL(p+".url", vt.URL, "CCP")
		if vt.AppID == "" {
			v.r.errorf(p+".app_id", "is required: the AppID the CCP knows this application by")
		}
		if vt.Folder == "" {
			vt.Folder = "Root"
		}
		for _, kv := range [][2]string{{"app_id", vt.AppID}, {"safe", vt.Safe}, {"folder", vt.Folder}, {"policy_id", vt.PolicyID}} {
			if strings.ContainsAny(kv[1], CCPForbidden) {
				v.r.errorf(p+"."+kv[0], "contains a character CyberArk does not support in queries (+ & %% ;)")
			}
		}
	case "hashicorp-kv":
		v.onlyKeys(p, `type = "hashicorp-kv"`, append(remote, "address", "mount", "namespace", "token", "role_id", "secret_id", "client_id_field", "client_secret_field"), vaultKeys)
		v.endpointURL(p+".address", vt.Address, "Vault")
		if vt.Mount == "" {
			vt.Mount = "secret"
		}
		vt.Mount = strings.Trim(vt.Mount, "/")
		if vt.ClientIDField == "" {
			vt.ClientIDField = "client_id"
		}
		if vt.ClientSecretField == "" {
			vt.ClientSecretField = "client_secret"
		}
		switch {
		case vt.Token.Set && (vt.RoleID.Set || vt.SecretID.Set):
			v.r.errorf(p+".token", "use either token or role_id + secret_id (AppRole), not both")
		case vt.RoleID.Set != vt.SecretID.Set:
			v.r.errorf(p+".role_id", "AppRole needs both role_id and secret_id")
		case !vt.Token.Set && !vt.RoleID.Set:
			v.r.errorf(p+".token", "a hashicorp-kv vault needs token, or role_id + secret_id (AppRole)")
		}
		for _, s := range []struct {
			key string
			ref *Secret
		}{{"token", &vt.Token}, {"role_id", &vt.RoleID}, {"secret_id", &vt.SecretID}} {
			if s.ref.Set {
				v.secret(p+"."+s.key, s.ref, false)
			}
		}
	case "":
		v.r.errorf(p+".type", "is required (file, env, cyberark-ccp or hashicorp-kv)")
	default:
		v.r.errorf(p+".type", "unknown vault type %q (file, env, cyberark-ccp or hashicorp-kv)", vt.Type)
	}
	if vt.Profile != "" {
		if _, ok := v.cfg.Profiles[vt.Profile]; !ok {
			v.r.errorf(p+".profile", "profile %q is not defined in [profiles]", vt.Profile)
		}
	}
}

var reservedParams = []string{"grant_type", "scope", "client_id", "client_secret", "client_assertion", "client_assertion_type",
	"code", "code_verifier", "redirect_uri", "refresh_token", "state", "code_challenge", "code_challenge_method", "prompt", "response_type"}

func (v *validator) credential(name string, c *Credential) {
	p := "credentials." + name
	v.name("credentials", name)
	v.clientAuth(p, c)
	if c.NeedsSecret() {
		if c.Vault == "" {
			v.r.errorf(p+".vault", "is required: the vault that holds the client id and secret")
		} else if _, ok := v.cfg.Vaults[c.Vault]; !ok {
			v.r.errorf(p+".vault", "vault %q is not defined in [vaults]", c.Vault)
		}
		if c.ID == "" {
			v.r.errorf(p+".id", "is required: the credential's ID in the vault")
		}
	}
	if c.ID != "" {
		if vt, ok := v.cfg.Vaults[c.Vault]; ok {
			if err := checkVaultID(vt, c.ID); err != nil {
				v.r.errorf(p+".id", "%v", err)
			}
		}
	}
	v.endpointURL(p+".token_url", c.TokenURL, "token endpoint")
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			v.r.errorf(fmt.Sprintf("%s.scopes[%d]", p, i), "a scope must be non-empty and contain no spaces (list each scope separately)")
		}
	}
	for _, k := range sortedKeys(c.Params) {
		if contains(reservedParams, k) || k == "" {
			v.r.errorf(p+".params."+k, "parameter %q is set by authgress itself and cannot be overridden", k)
		}
	}
	if c.Profile != "" {
		if _, ok := v.cfg.Profiles[c.Profile]; !ok {
			v.r.errorf(p+".profile", "profile %q is not defined in [profiles]", c.Profile)
		}
	}
	v.duration(p+".default_ttl", &c.DefaultTTL, DefaultTokenTTL)
	v.duration(p+".timeout", &c.Timeout, DefaultTokenTimeout)
	if c.DefaultTTL.D <= 0 {
		v.r.errorf(p+".default_ttl", "must be greater than zero")
	}
	if c.Timeout.D <= 0 {
		v.r.errorf(p+".timeout", "must be greater than zero")
	}
	v.duration(p+".min_refresh_interval", &c.MinRefreshInterval, DefaultMinRefresh)
	if c.MinRefreshInterval.D <= 0 {
		v.r.errorf(p+".min_refresh_interval", "must be greater than zero")
	}
	v.grant(p, c)
}

// endpointURL checks a token or vault URL: https, or http for loopback only.
func (v *validator) endpointURL(path, raw, what string) {
	if raw == "" {
		v.r.errorf(path, "is required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		v.r.errorf(path, "%q is not an absolute https:// URL", raw)
		return
	}
	if u.Scheme == "http" {
		if !IsLoopbackHost(u.Hostname()) {
			v.r.errorf(path, "the %s must use https:// (plain http:// is accepted only for loopback hosts)", what)
			return
		}
		v.r.warnf(path, "the %s uses plain http:// (accepted because the host is loopback)", what)
	}
	if u.User != nil {
		v.r.errorf(path, "must not carry credentials in the URL")
	}
}

// IsLoopbackHost reports whether host is localhost or a loopback IP literal.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) intercept(ic *Intercept) {
	if ic.CACert == "" {
		v.r.errorf("intercept.ca_cert", "is required: the PEM interception CA certificate (create one with `authgress ca init`)")
	}
	v.file("intercept.ca_cert", &ic.CACert)
	switch {
	case !ic.CAKey.Set:
		v.r.errorf("intercept.ca_key", "is required: the CA's private key, as a path or a secret reference")
	case ic.CAKey.IsLiteral(): // a path
		p := ic.CAKey.Literal
		v.file("intercept.ca_key", &p)
		ic.CAKey = Secret{File: p, Set: true}
	default:
		v.secret("intercept.ca_key", &ic.CAKey, true)
	}
	switch {
	case ic.CacheSize == 0:
		ic.CacheSize = DefaultLeafCacheSize
	case ic.CacheSize < 1 || ic.CacheSize > 1000000:
		v.r.errorf("intercept.cache_size", "must be between 1 and 1000000")
	}
	v.duration("intercept.leaf_ttl", &ic.LeafTTL, DefaultLeafTTL)
	if ic.LeafTTL.D < time.Hour {
		v.r.errorf("intercept.leaf_ttl", "must be at least 1h")
	}
}

func (v *validator) profile(name string, pr *Profile) {
	p := "profiles." + name
	v.name("profiles", name)
	switch {
	case pr.Keystore != "" && (pr.Cert != "" || pr.Key != ""):
		v.r.errorf(p+".keystore", "a profile takes either keystore (PKCS#12) or cert + key (PEM), not both")
	case pr.Cert != "" && pr.Key == "":
		v.r.errorf(p+".key", "cert needs key: the PEM private key of the client certificate")
	case pr.Key != "" && pr.Cert == "":
		v.r.errorf(p+".cert", "key needs cert: the PEM client certificate")
	case pr.Keystore != "" && !pr.Password.Set:
		v.r.errorf(p+".password", "a keystore needs a password (a secret reference like { env = \"P12_PASSWORD\" })")
	case pr.Password.Set && pr.Keystore == "":
		v.r.errorf(p+".password", "password is the keystore's password, but this profile has no keystore")
	}
	v.file(p+".cert", &pr.Cert)
	v.file(p+".key", &pr.Key)
	v.file(p+".keystore", &pr.Keystore)
	if pr.Password.Set {
		v.secret(p+".password", &pr.Password, false)
	}
	v.duration(p+".watch_interval", &pr.WatchInterval, 5*time.Second)
	if pr.WatchInterval.D < 100*time.Millisecond {
		v.r.errorf(p+".watch_interval", "must be at least 100ms")
	}
	v.file(p+".ca", &pr.CA)
	switch pr.MinVersion {
	case "":
		pr.MinVersion = "1.2"
	case "1.2", "1.3":
	default:
		v.r.errorf(p+".min_version", "must be \"1.2\" or \"1.3\" (older TLS versions are not supported)")
	}
	if pr.InsecureSkipVerify {
		v.r.warnf(p+".insecure_skip_verify", "upstream certificates are NOT verified with this profile: use it only in tests")
	}
	if pr.DefaultPort != 0 && (pr.DefaultPort < 1 || pr.DefaultPort > 65535) {
		v.r.errorf(p+".default_port", "must be a port number between 1 and 65535")
	}
}

func (v *validator) connection(name string, c *Connection) {
	p := "connections." + name
	v.name("connections", name)
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.r.errorf(p+".url", "%q is not an absolute https:// URL", c.URL)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			v.r.errorf(p+".url", "a base URL has no user info, query or fragment: the request's own query is kept")
		default:
			if u.Scheme == "http" && !c.AllowInsecure {
				v.r.errorf(p+".url", "must be https:// (set allow_insecure = true only for tests)")
			}
			u.Path = strings.TrimSuffix(u.Path, "/")
			u.RawPath = strings.TrimSuffix(u.RawPath, "/")
			c.Upstream = u
			if len(c.Hosts) == 0 && c.Listen == "" {
				c.Hosts = []string{u.Host} // a reverse listener's connection matches forward requests only with explicit hosts
			}
		}
	}
	if c.Listen != "" {
		v.hostPort(p+".listen", c.Listen)
		if c.URL == "" {
			v.r.errorf(p+".listen", "a reverse listener needs url: the base URL its requests are sent to")
		}
	}
	v.via(p, c)
	if len(c.Hosts) == 0 && c.Listen == "" {
		v.r.errorf(p+".hosts", "a connection needs hosts (or a url to take its host from)")
	}
	seenClient := map[string]bool{}
	for i, cl := range c.Clients {
		switch {
		case strings.TrimSpace(cl) == "":
			v.r.errorf(fmt.Sprintf("%s.clients[%d]", p, i), "is empty")
		case seenClient[cl]:
			v.r.errorf(fmt.Sprintf("%s.clients[%d]", p, i), "%q is listed twice", cl)
		}
		seenClient[cl] = true
	}
	if c.Listen != "" && c.Clients != nil {
		v.r.errorf(p+".clients", "a reverse listener has no client identity (no proxy authentication, no client certificates): protect it by its listen address instead")
	}
	if c.Clients != nil && len(c.Clients) == 0 {
		v.r.errorf(p+".clients", "is empty: no client could use this connection (remove it to admit every client)")
	}
	for i, h := range c.Hosts {
		pat, err := ParseHostPattern(h)
		if err != nil {
			v.r.errorf(fmt.Sprintf("%s.hosts[%d]", p, i), "%v", err)
			continue
		}
		c.Patterns = append(c.Patterns, pat)
	}
	for i, path := range c.Paths {
		if !strings.HasPrefix(path, "/") {
			v.r.errorf(fmt.Sprintf("%s.paths[%d]", p, i), "a path prefix must start with \"/\", got %q", path)
		}
	}
	if c.Credential != "" {
		if cred, ok := v.cfg.Credentials[c.Credential]; !ok {
			v.r.errorf(p+".credential", "credential %q is not defined in [credentials]", c.Credential)
		} else if cred.Grant == GrantAuthorizationCode {
			v.delegatedConnection(p, c)
		}
	} else if c.Scopes != nil {
		v.r.errorf(p+".scopes", "scopes override the credential's scopes, but this connection has no credential")
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			v.r.errorf(fmt.Sprintf("%s.scopes[%d]", p, i), "a scope must be non-empty and contain no spaces")
		}
	}
	if c.Profile != "" {
		if _, ok := v.cfg.Profiles[c.Profile]; !ok {
			v.r.errorf(p+".profile", "profile %q is not defined in [profiles]", c.Profile)
		}
	}
	v.duration(p+".timeout", &c.Timeout, DefaultUpstreamTimeout)
	if c.Timeout.D <= 0 {
		v.r.errorf(p+".timeout", "must be greater than zero")
	}
	if c.Retry != nil {
		v.retry(p+".retry", c.Retry)
	}
	if c.AllowInsecure {
		v.r.warnf(p+".allow_insecure", "requests on this connection may go upstream over plain http: use only in tests and benchmarks")
	}
}

// DefaultRetryMethods are the methods retried when a policy names none:
// the idempotent ones.
var DefaultRetryMethods = []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}

func (v *validator) cluster(name string, cl *Cluster) {
	p := "clusters." + name
	v.name("clusters", name)
	switch cl.Mode {
	case "":
		cl.Mode = "failover"
	case "balance", "failover":
	default:
		v.r.errorf(p+".mode", "must be balance or failover")
	}
	if cl.Profile != "" {
		if _, ok := v.cfg.Profiles[cl.Profile]; !ok {
			v.r.errorf(p+".profile", "profile %q is not defined in [profiles]", cl.Profile)
		}
	}
	if len(cl.Nodes) == 0 {
		v.r.errorf(p+".nodes", "a cluster needs at least one node")
	}
	seen := map[string]bool{}
	for i := range cl.Nodes {
		n := &cl.Nodes[i]
		np := fmt.Sprintf("%s.nodes[%d]", p, i)
		switch {
		case n.Name == "":
			v.r.errorf(np+".name", "is required")
		case !nameRe.MatchString(n.Name):
			v.r.errorf(np+".name", "%q: node names use only letters, digits and _", n.Name)
		case seen[n.Name]:
			v.r.errorf(np+".name", "node %q is listed twice", n.Name)
		}
		seen[n.Name] = true
		u, err := url.Parse(n.URL)
		switch {
		case n.URL == "":
			v.r.errorf(np+".url", "is required: the node's proxy address, like https://10.0.0.11:3128")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
			v.r.errorf(np+".url", "%q is not a proxy address like https://host:port", n.URL)
		default:
			if u.Port() == "" {
				v.r.errorf(np+".url", "%q needs a port", n.URL)
			}
			if u.Scheme == "http" {
				v.r.warnf(np+".url", "requests to this node, with the credentials authgress injected, travel unencrypted: use https:// unless the node is on this host")
			}
			n.Parsed = u
		}
		switch {
		case n.Weight == 0:
			n.Weight = 1
		case n.Weight < 0 || n.Weight > 1000:
			v.r.errorf(np+".weight", "must be between 1 and 1000")
		case cl.Mode != "balance":
			v.r.errorf(np+".weight", "is only used with mode = \"balance\"")
		}
	}
	v.duration(p+".health_interval", &cl.HealthInterval, 5*time.Second)
	v.duration(p+".health_timeout", &cl.HealthTimeout, 2*time.Second)
	if cl.HealthInterval.D < 100*time.Millisecond {
		v.r.errorf(p+".health_interval", "must be at least 100ms")
	}
	if cl.HealthTimeout.D <= 0 || cl.HealthTimeout.D > cl.HealthInterval.D {
		v.r.errorf(p+".health_timeout", "must be greater than zero and at most health_interval")
	}
	switch {
	case cl.EjectAfter == 0:
		cl.EjectAfter = 3
	case cl.EjectAfter < 1 || cl.EjectAfter > 100:
		v.r.errorf(p+".eject_after", "must be between 1 and 100")
	}
	if h := cl.HealthURL; h != "" {
		u, err := url.Parse(h)
		if err != nil || !(strings.HasPrefix(h, "/") || (u.Scheme == "http" || u.Scheme == "https") && u.Host != "") {
			v.r.errorf(p+".health_url", "must be a path on the node (\"/healthz\" for an authgress agent) or an absolute http(s) URL to fetch through it")
		}
	}
}

// via checks a connection's via: a cluster, "cluster/node", or "auto"
// with capabilities.
func (v *validator) via(p string, c *Connection) {
	if len(c.Capabilities) > 0 && c.Via != "auto" {
		v.r.errorf(p+".capabilities", "is only used with via = \"auto\"")
	}
	switch {
	case c.Via == "":
	case c.Via == "auto":
		if len(c.Capabilities) == 0 {
			v.r.errorf(p+".capabilities", "via = \"auto\" picks nodes that have every capability listed here: list at least one")
			return
		}
		for _, cl := range v.cfg.Clusters {
			for _, n := range cl.Nodes {
				if hasAll(n.Capabilities, c.Capabilities) {
					return
				}
			}
		}
		v.r.errorf(p+".capabilities", "no node of any cluster has all of %v", c.Capabilities)
	default:
		cluster, node, pinned := strings.Cut(c.Via, "/")
		cl, ok := v.cfg.Clusters[cluster]
		if !ok {
			v.r.errorf(p+".via", "cluster %q is not defined in [clusters]", cluster)
			return
		}
		if pinned && !slices.ContainsFunc(cl.Nodes, func(n Node) bool { return n.Name == node }) {
			v.r.errorf(p+".via", "cluster %q has no node %q", cluster, node)
		}
	}
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func (v *validator) retry(p string, r *Retry) {
	if r.Count < 0 || r.Count > 10 {
		v.r.errorf(p+".count", "must be between 0 and 10")
	}
	switch r.Strategy {
	case "":
		r.Strategy = "exponential"
	case "exponential", "fixed", "retry_after":
	default:
		v.r.errorf(p+".strategy", "must be exponential, fixed or retry_after")
	}
	v.duration(p+".interval", &r.Interval, time.Second)
	// No default cap on one wait: the worked example (count 3,
	// exponential, interval 10s) waits 10s, 20s and 40s; max_elapsed
	// bounds the whole.
	v.duration(p+".max_interval", &r.MaxInterval, 0)
	if r.MaxInterval.Set && r.MaxInterval.D <= 0 {
		v.r.errorf(p+".max_interval", "must be greater than zero (leave it out for no cap but max_elapsed)")
	}
	v.duration(p+".max_elapsed", &r.MaxElapsed, 2*time.Minute)
	if r.Interval.D <= 0 {
		v.r.errorf(p+".interval", "must be greater than zero")
	}
	if r.OnStatus == nil {
		r.OnStatus = []int{502, 503, 504}
	}
	for i, st := range r.OnStatus {
		if st < 100 || st > 599 {
			v.r.errorf(fmt.Sprintf("%s.on_status[%d]", p, i), "%d is not an HTTP status", st)
		}
	}
	if r.OnError == nil {
		r.OnError = []string{"connect", "timeout", "reset"}
	}
	for i, e := range r.OnError {
		if e != "connect" && e != "timeout" && e != "reset" {
			v.r.errorf(fmt.Sprintf("%s.on_error[%d]", p, i), "%q: must be connect, timeout or reset", e)
		}
	}
	if r.Methods == nil {
		r.Methods = DefaultRetryMethods
	}
	for i, m := range r.Methods {
		if m != strings.ToUpper(m) || m == "" {
			v.r.errorf(fmt.Sprintf("%s.methods[%d]", p, i), "%q: methods are upper-case, like \"GET\"", m)
		}
	}
}

// overlaps reports two connections that would match the same requests:
// the same host pattern and path, and client sets that are not disjoint
// (no clients = every client; a connection with clients is more specific,
// so it may share a host and path with one without).
func (v *validator) overlaps() {
	type slot struct{ host, path string }
	type owned struct {
		name    string
		clients []string
	}
	owners := map[slot][]owned{}
	// In file order, so the later of two overlapping connections is reported.
	names := sortedKeys(v.cfg.Connections)
	sort.SliceStable(names, func(i, j int) bool {
		pi, _ := v.r.pos.lookup("connections." + names[i])
		pj, _ := v.r.pos.lookup("connections." + names[j])
		return pi.Line < pj.Line
	})
	for _, name := range names {
		c := v.cfg.Connections[name]
		paths := c.Paths
		if len(paths) == 0 {
			paths = []string{""}
		}
		for i, pat := range c.Patterns {
			for _, path := range paths {
				k := slot{pat.String(), strings.TrimSuffix(path, "/")}
				clash := ""
				for _, o := range owners[k] {
					if o.name != name && clientsOverlap(o.clients, c.Clients) {
						clash = o.name
						break
					}
				}
				if clash != "" {
					what := fmt.Sprintf("host %q", pat.String())
					if path != "" {
						what += fmt.Sprintf(" with path %q", path)
					}
					v.r.errorf(fmt.Sprintf("connections.%s.hosts[%d]", name, i), "%s is also matched by connections.%s: two connections must not match the same requests (unless their clients are disjoint)", what, clash)
					continue
				}
				owners[k] = append(owners[k], owned{name, c.Clients})
			}
		}
	}
}

// clientsOverlap: two connections without clients overlap, as do two whose
// client lists share a name; one with and one without do not (the one with
// clients is more specific).
func clientsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == 0 && len(b) == 0
	}
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// listeners reports two listeners on one address: the proxy, the admin
// listener and every reverse listener each need their own port (a wildcard
// host clashes with every host on the same port).
func (v *validator) listeners() {
	type bound struct{ path, host, port string }
	var seen []bound
	add := func(path, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			return
		}
		for _, b := range seen {
			if b.port == port && (b.host == host || wildcardHost(b.host) || wildcardHost(host)) {
				v.r.errorf(path, "%s is also the address of %s: every listener needs its own", addr, b.path)
				return
			}
		}
		seen = append(seen, bound{path, host, port})
	}
	add("server.listen", v.cfg.Server.Listen)
	if v.cfg.Server.Admin != "" {
		add("server.admin", v.cfg.Server.Admin)
	}
	for _, name := range sortedKeys(v.cfg.Connections) {
		if l := v.cfg.Connections[name].Listen; l != "" {
			add("connections."+name+".listen", l)
		}
	}
	if b := v.cfg.Broker; b != nil && b.Listen != "" {
		add("broker.listen", b.Listen)
	}
}

func wildcardHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
