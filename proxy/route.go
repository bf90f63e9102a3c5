package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/authgress/authgress/broker"
	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/upstream"
	"github.com/authgress/authgress/vault"
	"go.opentelemetry.io/otel/metric"
)

// Route is a connection at run time.
type Route struct {
	Name       string
	Patterns   []conf.HostPattern
	Paths      []string
	Credential string
	Token      *tokencache.Slot // nil: no client token to inject
	// Delegated: the credential injects the token of the request's user
	// (authorization_code); BrokerBase is the public URL of the broker
	// where that user logs in ("": none).
	Delegated  *tokencache.Delegated
	BrokerBase string
	Transport  http.RoundTripper
	Timeout    time.Duration
	Insecure   bool // allow_insecure: keep http:// upstream (tests only)
	TLSPort    string
	// PropagateTrace: inject authgress's trace context into upstream requests.
	PropagateTrace bool
	// Upstream is the connection's url: where its requests go (scheme,
	// host, port, base path). nil: the request's own host, over https.
	Upstream *url.URL
	// Listen is the address of the connection's reverse listener ("": none).
	Listen string
	// Clients are the client identities the connection admits (nil: all).
	Clients []string
	// Via: the agent nodes requests go through (nil: straight to the
	// upstream); nodeRT is the transport to each cluster's nodes.
	Via    *upstream.Via
	nodeRT map[string]http.RoundTripper
	// Retry is the connection's retry policy (nil: none).
	Retry *upstream.Policy
	// Stats counts the connection's requests since the process started.
	Stats *ConnStats

	metricAttr []metric.RecordOption // {connection=Name}
}

// injects reports whether the route injects a token.
func (r *Route) injects() bool { return r.Token != nil || r.Delegated != nil }

// slotFor is the token slot a request of user draws from: the route's
// client token, or the user's token of a delegated credential (a
// login_required failure when the user has none).
func (r *Route) slotFor(user string) (*tokencache.Slot, *Failure) {
	if r.Delegated == nil {
		return r.Token, nil
	}
	if user == "" {
		return nil, r.loginRequired("", "this connection injects the token of the client's user, and the request carries no client identity (proxy user or client certificate)")
	}
	s := r.Delegated.UserSlot(user)
	if s == nil {
		return nil, r.loginRequired(user, fmt.Sprintf("user %q has not logged in for credential %q", user, r.Credential))
	}
	return s, nil
}

// tokenFailure classifies a token error of the route's credential; a
// user who must log in gets the login URL.
func (r *Route) tokenFailure(user string, err error) *Failure {
	f := tokenFailure(r.Name, r.Credential, err)
	if f.Code == CodeLoginRequired {
		lf := r.loginRequired(user, f.Message)
		lf.Cause = err
		return lf
	}
	return f
}

func (r *Route) loginRequired(user, msg string) *Failure {
	f := &Failure{Code: CodeLoginRequired, Connection: r.Name, Message: msg}
	if r.BrokerBase != "" && user != "" {
		f.LoginURL = broker.LoginURL(r.BrokerBase, r.Credential, user)
	}
	return f
}

// buildRoutes turns the connections into routes, creating one token slot
// per (credential, effective scopes, params).
func buildRoutes(ctx context.Context, cfg *conf.Config, vaults vault.Set, profiles *tlsprofiles.Set, tokens *tokencache.Cache, clusters *upstream.Set, stats *StatsSet, delegated map[string]*tokencache.Delegated) ([]*Route, error) {
	var routes []*Route
	names := make([]string, 0, len(cfg.Connections))
	for n := range cfg.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := cfg.Connections[name]
		r := &Route{Name: name, Patterns: c.Patterns, Paths: c.Paths, Credential: c.Credential,
			Transport: profiles.Upstream(c.Profile, c.Timeout.D), Timeout: c.Timeout.D, Insecure: c.AllowInsecure, TLSPort: "443",
			PropagateTrace: c.PropagateTrace, Upstream: c.Upstream, Listen: c.Listen, Clients: c.Clients, metricAttr: connectionAttr(name),
			Stats: stats.For(name)}
		prof, err := profiles.Profile(c.Profile)
		if err != nil {
			return nil, err
		}
		if prof != nil && prof.DefaultPort != 0 {
			r.TLSPort = fmt.Sprint(prof.DefaultPort)
		}
		r.Retry = upstream.NewPolicy(c.Retry)
		if c.Via != "" {
			if r.Via, err = clusters.Via(c.Via, c.Capabilities); err != nil {
				return nil, fmt.Errorf("connections.%s: %w", name, err)
			}
			r.nodeRT = map[string]http.RoundTripper{}
			for _, n := range r.Via.Nodes() {
				cl := clusters.Cluster(n.Cluster)
				r.nodeRT[n.Cluster] = profiles.Node(cl.Profile, c.Timeout.D, cl.ConnectTimeout())
			}
		}
		if d := delegated[c.Credential]; d != nil {
			r.Delegated, r.BrokerBase = d, brokerBase(cfg)
		} else if c.Credential != "" {
			scopes := cfg.Credentials[c.Credential].Scopes
			if c.Scopes != nil {
				scopes = c.Scopes
			}
			key, src, err := CredentialSource(ctx, cfg, c.Credential, scopes, vaults, profiles)
			if err != nil {
				return nil, err
			}
			r.Token = tokens.Slot(key, c.Credential, strings.Join(scopes, " "), src, cfg.Credentials[c.Credential].Timeout.D)
		}
		routes = append(routes, r)
	}
	return routes, nil
}

// CredentialSource returns the token cache key and the token source of a
// credential asking for scopes. The key covers everything the token depends
// on (the credential's, its vault's and its profile's definitions, scopes and
// params), so a reload that changes none of them keeps the cached token.
// A private_key_jwt signing key is resolved (through the vaults) and parsed
// here, so a bad key fails the build, naming credentials.<name>.signing_key.
// Delegated credentials are not built here: their users' tokens come from
// DelegatedCredential.
func CredentialSource(ctx context.Context, cfg *conf.Config, name string, scopes []string, vaults vault.Set, profiles *tlsprofiles.Set) (string, tokencache.Source, error) {
	cred, ok := cfg.Credentials[name]
	if !ok {
		return "", nil, fmt.Errorf("credential %q is not defined", name)
	}
	key, secrets, req, err := credentialRequest(ctx, cfg, name, scopes, vaults)
	if err != nil {
		return "", nil, err
	}
	client := tokencache.NewClient(profiles.Transport(cred.Profile))
	return key, tokencache.ClientCredentials(client, secrets, cred.ID, req), nil
}

// CredentialKey is the token cache key of credential name asking for
// scopes: the key CredentialSource gives, without building a source.
func CredentialKey(cfg *conf.Config, name string, scopes []string) string {
	return credentialKey(cfg, name, scopes, sortedParams(cfg.Credentials[name].Params))
}

func credentialKey(cfg *conf.Config, name string, scopes []string, params [][2]string) string {
	cred := cfg.Credentials[name]
	def := fmt.Sprintf("%+v|%+v|%+v", *cred, cfg.Vaults[cred.Vault], cfg.Profiles[cred.Profile])
	sum := sha256.Sum256([]byte(def))
	return tokencache.Key(name, hex.EncodeToString(sum[:]), scopes, params)
}

// credentialRequest is what every token request of a credential shares:
// its cache key for scopes (covering the credential's, its vault's and its
// profile's definitions and the params), its vault (nil without one: not
// a nil *vault.Cached), and the request's fixed part, with the
// private_key_jwt signer resolved and parsed.
func credentialRequest(ctx context.Context, cfg *conf.Config, name string, scopes []string, vaults vault.Set) (string, tokencache.Secrets, tokencache.Request, error) {
	cred := cfg.Credentials[name]
	var secrets tokencache.Secrets
	if cred.Vault != "" {
		c, ok := vaults[cred.Vault]
		if !ok {
			return "", nil, tokencache.Request{}, fmt.Errorf("credential %q: vault %q is not defined", name, cred.Vault)
		}
		secrets = c
	}
	params := sortedParams(cred.Params)
	key := credentialKey(cfg, name, scopes, params)
	req := tokencache.Request{TokenURL: cred.TokenURL, Scopes: scopes, Params: params, Send: cred.Send, DefaultTTL: cred.DefaultTTL.D,
		ClientAuth: cred.ClientAuth, ClientID: cred.ClientID}
	if cred.ClientAuth == conf.AuthPrivateKeyJWT {
		signer, err := credentialSigner(ctx, vaults, cred)
		if err != nil {
			return "", nil, tokencache.Request{}, fmt.Errorf("credentials.%s.signing_key: %w", name, err)
		}
		req.Signer = signer
	}
	return key, secrets, req, nil
}

// credentialSigner resolves and parses a credential's private_key_jwt key.
func credentialSigner(ctx context.Context, vaults vault.Set, cred *conf.Credential) (*tokencache.Signer, error) {
	pemKey, err := vaults.Resolve(ctx, cred.SigningKey)
	if err != nil {
		return nil, err
	}
	return tokencache.NewSigner([]byte(pemKey), cred.KeyID, cred.Alg)
}

func sortedParams(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
