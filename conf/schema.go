// Package conf holds the authgress TOML schema, strict decoding, validation with
// line numbers, and defaults. It knows nothing about the runtime types of the
// other packages: they are built from a validated *Config.
package conf

import "net/url"

// Config is one authgress configuration file, decoded and validated.
type Config struct {
	Server      Server                 `toml:"server"`
	Log         Log                    `toml:"log"`
	Egress      Egress                 `toml:"egress"`
	Intercept   *Intercept             `toml:"intercept"`
	Vaults      map[string]*Vault      `toml:"vaults"`
	Credentials map[string]*Credential `toml:"credentials"`
	Profiles    map[string]*Profile    `toml:"profiles"`
	Clusters    map[string]*Cluster    `toml:"clusters"`
	Connections map[string]*Connection `toml:"connections"`
	Cache       Cache                  `toml:"cache"`
	Broker      *Broker                `toml:"broker"`

	// Path is the file the config was read from; Dir is its directory, against
	// which relative file paths in the config are resolved.
	Path string `toml:"-"`
	Dir  string `toml:"-"`

	pos positions // where each key is written
}

// Server configures the proxy listener and its limits.
type Server struct {
	Listen            string      `toml:"listen"`
	Admin             string      `toml:"admin"`
	ShutdownTimeout   Duration    `toml:"shutdown_timeout"`
	ReadHeaderTimeout Duration    `toml:"read_header_timeout"`
	IdleTimeout       Duration    `toml:"idle_timeout"`
	TunnelIdleTimeout Duration    `toml:"tunnel_idle_timeout"`
	MaxHeaderBytes    int         `toml:"max_header_bytes"`
	TLS               *ServerTLS  `toml:"tls"`
	Auth              *ServerAuth `toml:"auth"`
	// AdminAuth is Basic authentication on the admin listener (every path
	// but /healthz, /readyz and /metrics).
	AdminAuth *ServerAuth `toml:"admin_auth"`
}

// ServerTLS puts TLS (and optionally client-certificate checks) on the proxy listener.
type ServerTLS struct {
	Cert     string `toml:"cert"`
	Key      string `toml:"key"`
	ClientCA string `toml:"client_ca"`
	// WatchInterval is how often cert and key are checked for changes.
	WatchInterval Duration `toml:"watch_interval"`
}

// ServerAuth is Basic proxy authentication (Proxy-Authorization).
type ServerAuth struct {
	Users []ProxyUser `toml:"users"`
}

// ProxyUser is one client allowed to use the proxy.
type ProxyUser struct {
	Name     string `toml:"name"`
	Password Secret `toml:"password"`
}

// Log configures the process log.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // text | json
	Access *bool  `toml:"access"` // one line per request (default true)
}

// Egress is the policy for requests no connection matches.
type Egress struct {
	Unmatched    string `toml:"unmatched"` // deny | tunnel
	AllowPrivate bool   `toml:"allow_private"`
}

// Intercept configures CONNECT interception for matched hosts.
type Intercept struct {
	CACert string `toml:"ca_cert"`
	// CAKey is a path, or a secret reference; validation turns a path into
	// a { file = PATH } reference.
	CAKey     Secret   `toml:"ca_key"`
	CacheSize int      `toml:"cache_size"`
	LeafTTL   Duration `toml:"leaf_ttl"`
}

// Vault is one secret store backend instance.
type Vault struct {
	Type string `toml:"type"` // cyberark-ccp | hashicorp-kv | file | env

	// cyberark-ccp
	URL      string `toml:"url"`
	AppID    string `toml:"app_id"`
	Safe     string `toml:"safe"`
	Folder   string `toml:"folder"`
	PolicyID string `toml:"policy_id"`

	// hashicorp-kv
	Address           string `toml:"address"`
	Mount             string `toml:"mount"`
	Namespace         string `toml:"namespace"`
	Token             Secret `toml:"token"`
	RoleID            Secret `toml:"role_id"`
	SecretID          Secret `toml:"secret_id"`
	ClientIDField     string `toml:"client_id_field"`
	ClientSecretField string `toml:"client_secret_field"`

	// file
	Path string `toml:"path"`

	// common
	Profile  string   `toml:"profile"`
	Timeout  Duration `toml:"timeout"`
	CacheTTL Duration `toml:"cache_ttl"`
	MaxStale Duration `toml:"max_stale"`
}

// Credential says how to obtain the token for a connection.
type Credential struct {
	Vault      string            `toml:"vault"`
	ID         string            `toml:"id"`
	TokenURL   string            `toml:"token_url"`
	Scopes     []string          `toml:"scopes"`
	Send       string            `toml:"send"` // basic | body
	Params     map[string]string `toml:"params"`
	Profile    string            `toml:"profile"`
	DefaultTTL Duration          `toml:"default_ttl"`
	Timeout    Duration          `toml:"timeout"`
	Prefetch   bool              `toml:"prefetch"`
	// MinRefreshInterval bounds forced refreshes (after an upstream 401) to
	// one per interval.
	MinRefreshInterval Duration `toml:"min_refresh_interval"`

	// Grant is client_credentials (default) or authorization_code (a
	// delegated user token, SPEC §14).
	Grant        string `toml:"grant"`
	AuthorizeURL string `toml:"authorize_url"`
	Prompt       string `toml:"prompt"` // consent (default) | none | login | select_account
	// ClientAuth is how the client authenticates at the token endpoint:
	// client_secret_basic (default; send = "basic"), client_secret_post
	// (send = "body"), private_key_jwt, tls_client_auth, none. Validation
	// fills it from Send when only Send is written.
	ClientAuth string `toml:"client_auth"`
	// ClientID is the client id when no vault holds it (methods without a
	// shared secret: private_key_jwt, tls_client_auth, none).
	ClientID string `toml:"client_id"`
	// private_key_jwt: the PEM private key, its key id and algorithm.
	SigningKey Secret `toml:"signing_key"`
	KeyID      string `toml:"key_id"`
	Alg        string `toml:"alg"` // RS256 | PS256 | ES256
	// RefreshTokenTTL is how long a user's refresh token is kept when the
	// server does not say (refresh_expires_in); 0 = until it is refused.
	RefreshTokenTTL Duration `toml:"refresh_token_ttl"`
}

// Delegated reports whether the credential holds user tokens
// (authorization_code) rather than one client token.
func (c *Credential) Delegated() bool { return c.Grant == GrantAuthorizationCode }

// NeedsSecret reports whether the client authentication method sends a
// shared client secret (so the vault must hold one).
func (c *Credential) NeedsSecret() bool {
	return c.ClientAuth == AuthSecretBasic || c.ClientAuth == AuthSecretPost
}

// Grants and client authentication methods.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"

	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthTLSClient     = "tls_client_auth"
	AuthNone          = "none"
)

// Broker is the token broker API (SPEC §14): its own listener.
type Broker struct {
	Listen    string `toml:"listen"`
	PublicURL string `toml:"public_url"`
	// Clients are the apps allowed to call the broker, each with its key
	// and the credentials it may use.
	Clients          []BrokerClient `toml:"clients"`
	AllowedRedirects []string       `toml:"allowed_redirects"`
	// LoginTimeout is how long a started login waits for its callback.
	LoginTimeout Duration `toml:"login_timeout"`

	// Public is the parsed PublicURL (filled by validation).
	Public *url.URL `toml:"-"`
}

// BrokerClient is one app that calls the broker.
type BrokerClient struct {
	Name        string   `toml:"name"`
	Key         Secret   `toml:"key"`
	Credentials []string `toml:"credentials"`
}

// Profile is a protocol profile: trust anchors, SNI, TLS version, client identity.
type Profile struct {
	Cert               string `toml:"cert"`
	Key                string `toml:"key"`
	Keystore           string `toml:"keystore"`
	Password           Secret `toml:"password"`
	CA                 string `toml:"ca"`
	ServerName         string `toml:"server_name"`
	MinVersion         string `toml:"min_version"`
	InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
	DefaultPort        int    `toml:"default_port"`
	// WatchInterval is how often the identity files are checked for changes.
	WatchInterval Duration `toml:"watch_interval"`
}

// Cluster is a set of agent nodes.
type Cluster struct {
	Mode    string `toml:"mode"` // balance | failover
	Profile string `toml:"profile"`
	Nodes   []Node `toml:"nodes"`
	// Health: an active check every HealthInterval (TCP + TLS with the
	// profile, plus a request to HealthURL if set) bounded by
	// HealthTimeout; EjectAfter consecutive connection failures take a node
	// out until it passes a check.
	HealthInterval Duration `toml:"health_interval"`
	HealthTimeout  Duration `toml:"health_timeout"`
	EjectAfter     int      `toml:"eject_after"`
	HealthURL      string   `toml:"health_url"`
}

// Node is one agent in a cluster.
type Node struct {
	Name         string   `toml:"name"`
	URL          string   `toml:"url"`
	Capabilities []string `toml:"capabilities"`
	Weight       int      `toml:"weight"` // balance only; default 1

	// Parsed is the URL (filled by validation).
	Parsed *url.URL `toml:"-"`
}

// Connection is a named route: what it matches and what to do with it.
type Connection struct {
	Hosts         []string `toml:"hosts"`
	Paths         []string `toml:"paths"`
	URL           string   `toml:"url"`
	Listen        string   `toml:"listen"`
	Credential    string   `toml:"credential"`
	Scopes        []string `toml:"scopes"`
	Profile       string   `toml:"profile"`
	Via           string   `toml:"via"`
	Capabilities  []string `toml:"capabilities"`
	Timeout       Duration `toml:"timeout"`
	Retry         *Retry   `toml:"retry"`
	AllowInsecure bool     `toml:"allow_insecure"`
	// PropagateTrace sends authgress's trace context (traceparent) upstream.
	PropagateTrace bool `toml:"propagate_trace"`

	// Clients restricts the connection to these client identities: proxy
	// user names, client-certificate subjects, or "CN=name".
	Clients []string `toml:"clients"`

	// Patterns are the parsed Hosts (filled by validation).
	Patterns []HostPattern `toml:"-"`
	// Upstream is the parsed URL (filled by validation; nil without url).
	Upstream *url.URL `toml:"-"`
}

// Retry is a connection's retry policy.
type Retry struct {
	Count       int      `toml:"count"`
	Strategy    string   `toml:"strategy"` // exponential | fixed | retry_after
	Interval    Duration `toml:"interval"`
	MaxInterval Duration `toml:"max_interval"`
	MaxElapsed  Duration `toml:"max_elapsed"`
	OnStatus    []int    `toml:"on_status"`
	OnError     []string `toml:"on_error"` // connect | timeout | reset
	Methods     []string `toml:"methods"`
}
