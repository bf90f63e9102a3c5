package conf

import (
	"strings"
	"testing"
)

// TestArraySectionsRefused: sections written as arrays used to pass as
// "0 connections" (the TOML library decodes an array into a map as nothing).
func TestArraySectionsRefused(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"inline array", "\nconnections = [{ hosts = ['a.example.com'] }]\n",
			":2:1: error: connections: connections must be a table of named connections: [connections.NAME], not an array"},
		{"array of tables", "[server]\n[[connections]]\nhosts = ['a.example.com']\n",
			":2:1: error: connections: connections must be a table of named connections: [connections.NAME], not an array of tables"},
		{"empty vaults", "vaults = []\n", ":1:1: error: vaults: vaults must be a table of named vaults: [vaults.NAME], not an array"},
		{"profiles", "[[profiles]]\nca = 'x.pem'\n", ":1:1: error: profiles: profiles must be a table of named profiles: [profiles.NAME], not an array of tables"},
		{"credentials", "credentials = 5\n", ":1:1: error: credentials: credentials must be a table of named credentials: [credentials.NAME], not an integer"},
		{"clusters", "clusters = [\n]\n", ":1:1: error: clusters: clusters must be a table of named clusters"},
		{"entry array of tables", "[[connections.a]]\nhosts = ['a.example.com']\n", ":1:1: error: connections.a: connections.a must be a table: [connections.a], not an array of tables"},
		{"entry inline array", "[connections]\na = [{ hosts = ['a.example.com'] }]\n", ":2:1: error: connections.a: connections.a must be a table: [connections.a], not an array"},
		{"entry string", "[vaults]\nv = 'file'\n", ":2:1: error: vaults.v: vaults.v must be a table: [vaults.v], not a string"},
		{"server array", "[[server]]\nlisten = '127.0.0.1:1'\n", ":1:1: error: server: [server] must be a table, not an array of tables"},
		{"log string", "log = 'debug'\n", ":1:1: error: log: [log] must be a table, not a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, probs := Parse("authgress.toml", []byte(tc.text))
			if !strings.Contains(probs.Error(), "authgress.toml"+tc.want) {
				t.Errorf("want %q in:\n%v", tc.want, probs)
			}
		})
	}
}

// TestWrongTypeKeepsTheEntry: a wrong-typed key used to drop its whole
// credential, so the user saw "credential ... is not defined" elsewhere and
// none of that credential's other problems.
func TestWrongTypeKeepsTheEntry(t *testing.T) {
	text := `[vaults.local]
type = "file"
path = "secrets.toml"

[credentials.graph]
vault = "local"
id = "graph"
token_url = "http://idp.example.com/token"
scopes = "api.read"
send = "both"
params = "audience=x"

[connections.graph]
hosts = ["graph.example.com"]
credential = "graph"
timeout = 30

[server.auth]
users = [
  { name = 7, password = { env = "A" } },
  { name = "b", password = { env = "B", file = "x" } },
]
`
	cfg, probs := Load(writeConfig(t, text))
	out := probs.Error()
	for _, want := range []string{
		`:8:1: error: credentials.graph.token_url: the token endpoint must use https://`,
		`:9:1: error: credentials.graph.scopes: expected an array, got a string`,
		`:10:1: error: credentials.graph.send: must be basic or body`,
		`:11:1: error: credentials.graph.params: expected a table, got a string`,
		`:16:1: error: connections.graph.timeout: durations are strings with a unit`,
		`:20:5: error: server.auth.users[0].name: expected a string, got an integer`,
		`:21:17: error: server.auth.users[1].password: a secret reference takes exactly one of`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, "is not defined") {
		t.Errorf("the credential was dropped:\n%s", out)
	}
	if t.Failed() {
		t.Log("\n" + out)
	}
	if c := cfg.Credentials["graph"]; c == nil || c.ID != "graph" || c.Scopes != nil {
		t.Errorf("credential not decoded key by key: %+v", c)
	}
}
