package conf

import (
	"strings"
	"testing"
)

const delegatedConfig = `
[server]
listen = "127.0.0.1:3128"

[server.auth]
users = [ { name = "alice", password = { env = "ALICE_PW" } } ]

[vaults.local]
type = "file"
path = "secrets.toml"

[credentials.graph]
vault = "local"
id = "graph"
token_url = "https://login.example.com/token"
scopes = ["api.read"]

[credentials.graph_user]
grant = "authorization_code"
vault = "local"
id = "graph"
authorize_url = "https://login.example.com/authorize"
token_url = "https://login.example.com/token"
scopes = ["User.Read", "offline_access"]

[broker]
listen = "127.0.0.1:9470"
clients = [ { name = "flows", key = { env = "BROKER_KEY" }, credentials = ["graph", "graph_user"] } ]
allowed_redirects = ["https://app.example.com/"]

[connections.me]
hosts = ["graph.example.com"]
credential = "graph_user"
`

func TestDelegatedConfig(t *testing.T) {
	cfg, probs := Load(writeConfig(t, delegatedConfig))
	if probs.HasErrors() {
		t.Fatalf("problems: %v", probs)
	}
	c := cfg.Credentials["graph_user"]
	if !c.Delegated() || c.Prompt != "consent" || c.ClientAuth != AuthSecretBasic || c.Send != "basic" {
		t.Fatalf("defaults: %+v", c)
	}
	if cc := cfg.Credentials["graph"]; cc.Grant != GrantClientCredentials || cc.Delegated() {
		t.Fatalf("client credentials by default: %+v", cc)
	}
	b := cfg.Broker
	if b.PublicURL != "http://127.0.0.1:9470" || b.Public == nil || b.LoginTimeout.D != DefaultLoginTimeout {
		t.Fatalf("broker defaults: %+v", b)
	}
}

// TestClientAuthMethods: send is client_auth's older spelling; the
// methods without a shared secret take client_id instead of a vault entry.
func TestClientAuthMethods(t *testing.T) {
	for _, tc := range []struct {
		name, cred string
		want       string // ClientAuth after validation, "" = refused
		errPath    string
	}{
		{"send body", `vault = "local"` + "\nid = \"graph\"\nsend = \"body\"", AuthSecretPost, ""},
		{"send and client_auth agree", `vault = "local"` + "\nid = \"graph\"\nsend = \"basic\"\nclient_auth = \"client_secret_basic\"", AuthSecretBasic, ""},
		{"send and client_auth disagree", `vault = "local"` + "\nid = \"graph\"\nsend = \"basic\"\nclient_auth = \"client_secret_post\"", "", "credentials.c.send"},
		{"unknown method", `vault = "local"` + "\nid = \"graph\"\nclient_auth = \"client_secret_jwt\"", "", "credentials.c.client_auth"},
		{"private_key_jwt", "client_auth = \"private_key_jwt\"\nclient_id = \"app\"\nsigning_key = { env = \"KEY\" }\nkey_id = \"k1\"", AuthPrivateKeyJWT, ""},
		{"private_key_jwt without key", "client_auth = \"private_key_jwt\"\nclient_id = \"app\"", "", "credentials.c.signing_key"},
		{"private_key_jwt bad alg", "client_auth = \"private_key_jwt\"\nclient_id = \"app\"\nsigning_key = { env = \"KEY\" }\nalg = \"HS256\"", "", "credentials.c.alg"},
		{"private_key_jwt with a vault entry", "client_auth = \"private_key_jwt\"\nvault = \"local\"\nid = \"graph\"\nsigning_key = { env = \"KEY\" }", "", "credentials.c.vault"},
		{"no client id", "client_auth = \"private_key_jwt\"\nsigning_key = { env = \"KEY\" }", "", "credentials.c.client_id"},
		{"signing key on a secret method", `vault = "local"` + "\nid = \"graph\"\nsigning_key = { env = \"KEY\" }", "", "credentials.c.signing_key"},
		{"client_id on a secret method", `vault = "local"` + "\nid = \"graph\"\nclient_id = \"x\"", "", "credentials.c.client_id"},
		{"tls_client_auth", "client_auth = \"tls_client_auth\"\nclient_id = \"app\"\nprofile = \"mtls\"", AuthTLSClient, ""},
		{"tls_client_auth without profile", "client_auth = \"tls_client_auth\"\nclient_id = \"app\"", "", "credentials.c.profile"},
		{"tls_client_auth profile without cert", "client_auth = \"tls_client_auth\"\nclient_id = \"app\"\nprofile = \"trust\"", "", "credentials.c.profile"},
		{"none needs authorization_code", "client_auth = \"none\"\nclient_id = \"app\"", "", "credentials.c.client_auth"},
		{"authorize_url on client credentials", `vault = "local"` + "\nid = \"graph\"\nauthorize_url = \"https://x/authorize\"", "", "credentials.c.authorize_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := `
[vaults.local]
type = "file"
path = "secrets.toml"

[profiles.mtls]
cert = "secrets.toml"
key = "secrets.toml"

[profiles.trust]
ca = "secrets.toml"

[credentials.c]
token_url = "https://idp.example.com/token"
` + tc.cred + `

[connections.c]
hosts = ["api.example.com"]
credential = "c"
`
			cfg, probs := Load(writeConfig(t, text))
			if tc.want != "" {
				if probs.HasErrors() {
					t.Fatalf("refused: %v", probs)
				}
				if got := cfg.Credentials["c"].ClientAuth; got != tc.want {
					t.Fatalf("client_auth %q, want %q", got, tc.want)
				}
				return
			}
			for _, p := range probs {
				if p.Path == tc.errPath && !p.Warning {
					if p.Pos.Line == 0 {
						t.Errorf("%s has no line: %s", tc.errPath, p)
					}
					return
				}
			}
			t.Fatalf("no error at %s:\n%v", tc.errPath, probs)
		})
	}
}

func TestDelegatedMistakes(t *testing.T) {
	for _, tc := range []struct{ name, from, to, path, msg string }{
		{"no broker", "[broker]", "[ignored]", "credentials.graph_user.grant", "needs [broker]"},
		{"no authorize_url", `authorize_url = "https://login.example.com/authorize"`, "", "credentials.graph_user.authorize_url", "is required"},
		{"plain http authorize_url", `authorize_url = "https://login.example.com/authorize"`, `authorize_url = "http://login.example.com/authorize"`, "credentials.graph_user.authorize_url", "https"},
		{"bad prompt", `scopes = ["User.Read", "offline_access"]`, "scopes = [\"User.Read\"]\nprompt = \"always\"", "credentials.graph_user.prompt", "must be one of"},
		{"prefetch", `scopes = ["User.Read", "offline_access"]`, "scopes = [\"User.Read\"]\nprefetch = true", "credentials.graph_user.prefetch", "cannot be prefetched"},
		{"bad grant", `grant = "authorization_code"`, `grant = "password"`, "credentials.graph_user.grant", "must be"},
		{"no client identity", "[server.auth]\nusers = [ { name = \"alice\", password = { env = \"ALICE_PW\" } } ]", "", "connections.me.credential", "client identity"},
		{"connection scopes", "credential = \"graph_user\"\n", "credential = \"graph_user\"\nscopes = [\"x\"]\n", "connections.me.scopes", "consents"},
		{"broker on the proxy port", `listen = "127.0.0.1:9470"`, `listen = "127.0.0.1:3128"`, "broker.listen", "every listener needs its own"},
		{"unknown broker credential", `credentials = ["graph", "graph_user"]`, `credentials = ["graph", "nope"]`, "broker.clients[0].credentials[1]", "not defined"},
		{"no key", `key = { env = "BROKER_KEY" }, `, "", "broker.clients[0].key", "is required"},
		{"host-only redirect", `allowed_redirects = ["https://app.example.com/"]`, `allowed_redirects = ["https://app.example.com"]`, "broker.allowed_redirects[0]", "with a path"},
		{"public_url required off loopback", `listen = "127.0.0.1:9470"`, `listen = "0.0.0.0:9470"`, "broker.public_url", "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(delegatedConfig, tc.from, tc.to, 1)
			if text == delegatedConfig {
				t.Fatal("the edit did not apply")
			}
			_, probs := Load(writeConfig(t, text))
			for _, p := range probs {
				if p.Path == tc.path && !p.Warning && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("no error at %s containing %q:\n%v", tc.path, tc.msg, probs)
		})
	}
}
