package conf

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// DefaultLoginTimeout is how long a login started at the broker waits for
// its callback.
const DefaultLoginTimeout = 10 * time.Minute

var (
	grants      = []string{GrantClientCredentials, GrantAuthorizationCode}
	clientAuths = []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthTLSClient, AuthNone}
	prompts     = []string{"consent", "none", "login", "select_account"}
	signingAlgs = []string{"RS256", "PS256", "ES256"}
)

type keySet struct {
	key string
	set bool
}

// clientAuth settles client_auth: send is its older spelling (basic =
// client_secret_basic, body = client_secret_post); both may be written only
// if they agree. Send is kept in step for the secret methods.
func (v *validator) clientAuth(p string, c *Credential) {
	fromSend := ""
	switch c.Send {
	case "":
	case "basic":
		fromSend = AuthSecretBasic
	case "body":
		fromSend = AuthSecretPost
	default:
		v.r.errorf(p+".send", "must be basic or body, got %q (or use client_auth)", c.Send)
	}
	switch {
	case c.ClientAuth == "" && fromSend != "":
		c.ClientAuth = fromSend
	case c.ClientAuth == "":
		c.ClientAuth = AuthSecretBasic
	case !contains(clientAuths, c.ClientAuth):
		v.r.errorf(p+".client_auth", "must be one of %s, got %q", strings.Join(clientAuths, ", "), c.ClientAuth)
	case fromSend != "" && fromSend != c.ClientAuth:
		v.r.errorf(p+".send", "send = %q says %s but client_auth says %s: write only client_auth", c.Send, fromSend, c.ClientAuth)
	}
	switch c.ClientAuth {
	case AuthSecretBasic:
		c.Send = "basic"
	case AuthSecretPost:
		c.Send = "body"
	}
	if c.NeedsSecret() && c.ClientID != "" {
		v.r.errorf(p+".client_id", "with client_auth = %q the vault entry gives both the client id and the secret: remove client_id", c.ClientAuth)
	}
	if !c.NeedsSecret() {
		// The client id is not a secret, and vault entries hold id and
		// secret pairs: a method without a shared secret names its client id.
		if c.ClientID == "" {
			v.r.errorf(p+".client_id", "is required with client_auth = %q (no client secret is sent, so no vault entry is read)", c.ClientAuth)
		}
		for _, k := range []keySet{{"vault", c.Vault != ""}, {"id", c.ID != ""}} {
			if k.set {
				v.r.errorf(p+"."+k.key, "is not used with client_auth = %q, which sends no client secret: set client_id instead", c.ClientAuth)
			}
		}
	}
	if c.ClientAuth == AuthPrivateKeyJWT {
		v.secret(p+".signing_key", &c.SigningKey, true)
		switch {
		case c.Alg == "":
			c.Alg = "RS256"
		case !contains(signingAlgs, c.Alg):
			v.r.errorf(p+".alg", "must be RS256, PS256 or ES256, got %q", c.Alg)
		}
	} else {
		for _, k := range []keySet{{"signing_key", c.SigningKey.Set}, {"key_id", c.KeyID != ""}, {"alg", c.Alg != ""}} {
			if k.set {
				v.r.errorf(p+"."+k.key, "is used only with client_auth = \"private_key_jwt\"")
			}
		}
	}
	if c.ClientAuth == AuthTLSClient {
		pr, ok := v.cfg.Profiles[c.Profile]
		switch {
		case c.Profile == "":
			v.r.errorf(p+".profile", "client_auth = \"tls_client_auth\" authenticates with the client certificate of a profile: set profile")
		case ok && pr.Cert == "" && pr.Keystore == "":
			v.r.errorf(p+".profile", "profile %q has no client certificate (cert and key, or keystore), which tls_client_auth sends", c.Profile)
		}
	}
}

// grant checks what depends on the grant: authorization_code needs the
// authorization endpoint and a way to log in (the broker).
func (v *validator) grant(p string, c *Credential) {
	switch c.Grant {
	case "":
		c.Grant = GrantClientCredentials
	case GrantClientCredentials, GrantAuthorizationCode:
	default:
		v.r.errorf(p+".grant", "must be %s, got %q", strings.Join(grants, " or "), c.Grant)
		return
	}
	v.duration(p+".refresh_token_ttl", &c.RefreshTokenTTL, 0)
	if c.RefreshTokenTTL.D < 0 {
		v.r.errorf(p+".refresh_token_ttl", "must not be negative")
	}
	if c.Grant == GrantClientCredentials {
		for _, k := range []keySet{{"authorize_url", c.AuthorizeURL != ""}, {"prompt", c.Prompt != ""}, {"refresh_token_ttl", c.RefreshTokenTTL.Set}} {
			if k.set {
				v.r.errorf(p+"."+k.key, "is used only with grant = \"authorization_code\"")
			}
		}
		if c.ClientAuth == AuthNone {
			v.r.errorf(p+".client_auth", "\"none\" (a public client) can only log users in with PKCE: it needs grant = \"authorization_code\"")
		}
		return
	}
	v.endpointURL(p+".authorize_url", c.AuthorizeURL, "authorization endpoint")
	switch {
	case c.Prompt == "":
		c.Prompt = "consent"
	case !contains(prompts, c.Prompt):
		v.r.errorf(p+".prompt", "must be one of %s, got %q", strings.Join(prompts, ", "), c.Prompt)
	}
	if c.Prefetch {
		v.r.errorf(p+".prefetch", "a delegated credential has no token until a user logs in: it cannot be prefetched")
	}
	if v.cfg.Broker == nil {
		v.r.errorf(p+".grant", "users log in through the token broker: authorization_code needs [broker]")
	}
}

// delegatedConnection checks a connection that injects users' tokens.
func (v *validator) delegatedConnection(p string, c *Connection) {
	if c.Scopes != nil {
		v.r.errorf(p+".scopes", "a user consents to the scopes of credential %q when logging in: set scopes on the credential", c.Credential)
	}
	if c.Listen != "" {
		v.r.errorf(p+".credential", "credential %q injects the token of the request's client identity, which a reverse listener does not have", c.Credential)
	}
	s := v.cfg.Server
	if s.Auth == nil && (s.TLS == nil || s.TLS.ClientCA == "") {
		v.r.errorf(p+".credential", "credential %q injects the token of the request's client identity: configure [server.auth] (proxy users) or [server.tls] client_ca (client certificates)", c.Credential)
	}
}

func (v *validator) broker(b *Broker) {
	if b.Listen == "" {
		v.r.errorf("broker.listen", "is required: the broker's own address (never the proxy's)")
	} else {
		v.hostPort("broker.listen", b.Listen)
	}
	if b.PublicURL == "" {
		if host, _, err := net.SplitHostPort(b.Listen); err == nil && IsLoopbackHost(host) {
			b.PublicURL = "http://" + b.Listen
		} else if b.Listen != "" {
			v.r.errorf("broker.public_url", "is required: the URL browsers reach the broker at (the redirect URI is <public_url>/oauth-callback)")
		}
	}
	if b.PublicURL != "" {
		u, err := url.Parse(b.PublicURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.r.errorf("broker.public_url", "%q is not an absolute http(s):// URL", b.PublicURL)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			v.r.errorf("broker.public_url", "a base URL has no user info, query or fragment")
		default:
			if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
				v.r.warnf("broker.public_url", "plain http:// outside loopback: authorization codes reach the broker unencrypted")
			}
			u.Path = strings.TrimSuffix(u.Path, "/")
			b.Public = u
		}
	}
	if len(b.Clients) == 0 {
		v.r.errorf("broker.clients", "[broker] needs at least one client: { name, key, credentials }")
	}
	seen := map[string]bool{}
	for i := range b.Clients {
		cl := &b.Clients[i]
		p := fmt.Sprintf("broker.clients[%d]", i)
		switch {
		case cl.Name == "":
			v.r.errorf(p+".name", "is required")
		case seen[cl.Name]:
			v.r.errorf(p+".name", "client %q is listed twice", cl.Name)
		}
		seen[cl.Name] = true
		v.secret(p+".key", &cl.Key, true)
		if len(cl.Credentials) == 0 {
			v.r.errorf(p+".credentials", "is empty: list the credentials this client may use")
		}
		for j, name := range cl.Credentials {
			if _, ok := v.cfg.Credentials[name]; !ok {
				v.r.errorf(fmt.Sprintf("%s.credentials[%d]", p, j), "credential %q is not defined in [credentials]", name)
			}
		}
	}
	for i, r := range b.AllowedRedirects {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || !strings.HasPrefix(u.Path, "/") {
			v.r.errorf(fmt.Sprintf("broker.allowed_redirects[%d]", i), "%q must be an absolute http(s) URL with a path (at least \"/\"), so that it names one host exactly", r)
		} else if u.User != nil || u.Fragment != "" {
			v.r.errorf(fmt.Sprintf("broker.allowed_redirects[%d]", i), "has user info or a fragment")
		}
	}
	v.duration("broker.login_timeout", &b.LoginTimeout, DefaultLoginTimeout)
	if b.LoginTimeout.D <= 0 {
		v.r.errorf("broker.login_timeout", "must be greater than zero")
	}
}
