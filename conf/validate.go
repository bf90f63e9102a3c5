package conf

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
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
		v.r.errorf("intercept", "CONNECT interception is not available in this version of authgress: remove [intercept] and have clients call http:// URLs through the proxy (it upgrades them to https)")
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
		v.name("clusters", name)
		v.r.errorf("clusters."+name, "clusters and agent nodes are not available in this version of authgress")
	}
	for _, name := range sortedKeys(v.cfg.Connections) {
		v.connection(name, v.cfg.Connections[name])
	}
	v.overlaps()
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
	if _, err := os.Stat(*p); err != nil {
		v.r.errorf(path, "cannot read file %q", *p)
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
		if s.Admin == s.Listen && !strings.HasSuffix(s.Admin, ":0") {
			v.r.errorf("server.admin", "the admin listener must not share the proxy port")
		}
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
	if s.TLS != nil {
		v.r.errorf("server.tls", "TLS on the proxy listener (agent mode) is not available in this version of authgress")
	}
	if s.Auth != nil {
		if len(s.Auth.Users) == 0 {
			v.r.errorf("server.auth.users", "[server.auth] needs at least one user")
		}
		seen := map[string]bool{}
		for i := range s.Auth.Users {
			u := &s.Auth.Users[i]
			p := fmt.Sprintf("server.auth.users[%d]", i)
			switch {
			case u.Name == "":
				v.r.errorf(p+".name", "is required")
			case strings.Contains(u.Name, ":"):
				v.r.errorf(p+".name", "a proxy user name cannot contain ':'")
			case seen[u.Name]:
				v.r.errorf(p+".name", "user %q is listed twice", u.Name)
			}
			seen[u.Name] = true
			v.secret(p+".password", &u.Password, true)
		}
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

var reservedParams = []string{"grant_type", "scope", "client_id", "client_secret"}

func (v *validator) credential(name string, c *Credential) {
	p := "credentials." + name
	v.name("credentials", name)
	if c.Vault == "" {
		v.r.errorf(p+".vault", "is required: the vault that holds the client id and secret")
	} else if _, ok := v.cfg.Vaults[c.Vault]; !ok {
		v.r.errorf(p+".vault", "vault %q is not defined in [vaults]", c.Vault)
	}
	if c.ID == "" {
		v.r.errorf(p+".id", "is required: the credential's ID in the vault")
	} else if vt, ok := v.cfg.Vaults[c.Vault]; ok {
		if err := checkVaultID(vt, c.ID); err != nil {
			v.r.errorf(p+".id", "%v", err)
		}
	}
	v.endpointURL(p+".token_url", c.TokenURL, "token endpoint")
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			v.r.errorf(fmt.Sprintf("%s.scopes[%d]", p, i), "a scope must be non-empty and contain no spaces (list each scope separately)")
		}
	}
	switch c.Send {
	case "":
		c.Send = "basic"
	case "basic", "body":
	default:
		v.r.errorf(p+".send", "must be basic or body, got %q", c.Send)
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
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			v.r.errorf(p+".url", "%q is not an absolute https:// URL", c.URL)
		} else {
			if u.Scheme == "http" && !c.AllowInsecure {
				v.r.errorf(p+".url", "must be https:// (set allow_insecure = true only for tests)")
			}
			if len(c.Hosts) == 0 {
				c.Hosts = []string{u.Host}
			}
		}
	}
	if c.Listen != "" {
		v.r.errorf(p+".listen", "reverse-proxy listeners are not available in this version of authgress: send requests through the forward proxy")
	}
	if c.Via != "" {
		v.r.errorf(p+".via", "forwarding via agent clusters is not available in this version of authgress")
	}
	if len(c.Capabilities) > 0 && c.Via != "auto" {
		v.r.errorf(p+".capabilities", "is only used with via = \"auto\"")
	}
	if len(c.Hosts) == 0 {
		v.r.errorf(p+".hosts", "a connection needs hosts (or a url to take its host from)")
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
		if _, ok := v.cfg.Credentials[c.Credential]; !ok {
			v.r.errorf(p+".credential", "credential %q is not defined in [credentials]", c.Credential)
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
		v.duration(p+".retry.interval", &c.Retry.Interval, time.Second)
		v.r.errorf(p+".retry", "upstream retry policies are not available in this version of authgress")
	}
	if c.AllowInsecure {
		v.r.warnf(p+".allow_insecure", "requests on this connection may go upstream over plain http: use only in tests and benchmarks")
	}
}

// overlaps reports two connections that would match the same requests.
func (v *validator) overlaps() {
	type slot struct{ host, path string }
	owner := map[slot]string{}
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
				if other, ok := owner[k]; ok && other != name {
					what := fmt.Sprintf("host %q", pat.String())
					if path != "" {
						what += fmt.Sprintf(" with path %q", path)
					}
					v.r.errorf(fmt.Sprintf("connections.%s.hosts[%d]", name, i), "%s is also matched by connections.%s: two connections must not match the same requests", what, other)
					continue
				}
				owner[k] = name
			}
		}
	}
}
