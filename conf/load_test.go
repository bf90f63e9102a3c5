package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const validConfig = `
[server]
listen = "127.0.0.1:3128"

[vaults.local]
type = "file"
path = "secrets.toml"

[credentials.graph]
vault = "local"
id = "graph"
token_url = "https://login.example.com/token"
scopes = ["api.read"]

[connections.graph]
hosts = ["graph.example.com", "*.graph.example.com"]
credential = "graph"
timeout = "10s"
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secrets.toml"), []byte("[graph]\nclient_id='a'\nclient_secret='b'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "authgress.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidConfig(t *testing.T) {
	cfg, probs := Load(writeConfig(t, validConfig))
	if probs.HasErrors() {
		t.Fatalf("valid config has problems:\n%v", probs)
	}
	if got := cfg.Connections["graph"].Timeout.D.String(); got != "10s" {
		t.Errorf("timeout = %s", got)
	}
	if cfg.Egress.Unmatched != "deny" || cfg.Credentials["graph"].Send != "basic" {
		t.Errorf("defaults not applied: %+v %+v", cfg.Egress, cfg.Credentials["graph"])
	}
	if n := len(cfg.Connections["graph"].Patterns); n != 2 {
		t.Errorf("patterns = %d", n)
	}
}

// TestEveryMistakeReported is the example: several mistakes in one
// file, each reported with its line and key path.
func TestEveryMistakeReported(t *testing.T) {
	text := `[server]
listen = "127.0.0.1:3128"
lisen = "x"

[vaults.local]
type = "file"
path = "secrets.toml"

[credentials.graph]
vault = "local"
ID = "graph"
token_url = "https://login.example.com/token"

[connections.graph]
hosts = ["api.example.com"]
credential = "graph"
timeout = 30

[connections.other]
hosts = ["API.example.com."]
credential = "nope"

[connections.bad-name]
hosts = ["x.example.com"]
`
	_, probs := Load(writeConfig(t, text))
	if !probs.HasErrors() {
		t.Fatal("expected errors")
	}
	out := probs.Error()
	t.Log("\n" + out)
	want := []struct{ line, text string }{
		{":3:1:", `server.lisen: unknown key "lisen" (did you mean "listen"?)`},
		{":11:1:", `credentials.graph.ID: key "ID" differs only in case from "id"`},
		{":17:1:", `connections.graph.timeout: durations are strings with a unit: write "30s"`},
		{":21:1:", `connections.other.credential: credential "nope" is not defined`},
		{":20:", `connections.other.hosts[0]: host "api.example.com" is also matched by connections.graph`},
		{":23:1:", `connections.bad-name: invalid name "bad-name"`},
	}
	for _, w := range want {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, w.line) && strings.Contains(line, w.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem at %s: %s", w.line, w.text)
		}
	}
}

func TestProblems(t *testing.T) {
	base := "[vaults.local]\ntype = \"file\"\npath = \"secrets.toml\"\n"
	cases := []struct {
		name, text, want string
	}{
		{"syntax", "[server\n", "authgress.toml:2:8: error: expected"},
		{"wrong type", "[server]\nlisten = 5\n", "server.listen: expected a string, got an integer"},
		{"wrong type keeps others", "[server]\nlisten = 5\n[egress]\nunmatched = \"maybe\"\n", "egress.unmatched: must be deny or tunnel"},
		{"http token url", base + "[credentials.c]\nvault='local'\nid='x'\ntoken_url='http://idp.example.com/t'\n", "must use https://"},
		{"send", base + "[credentials.c]\nvault='local'\nid='x'\ntoken_url='https://idp/t'\nsend='both'\n", "must be basic or body"},
		{"reserved param", base + "[credentials.c]\nvault='local'\nid='x'\ntoken_url='https://idp/t'\nparams={grant_type='x'}\n", "cannot be overridden"},
		{"secret ref", "[server.auth]\nusers=[{name='a', password={env='A', file='b'}}]\n", "exactly one of"},
		{"secret ref key", "[server.auth]\nusers=[{name='a', password={evn='A'}}]\n", `unknown key "evn" in a secret reference`},
		{"wildcard", "[connections.c]\nhosts=['a.*.com']\n", "wildcard is only allowed"},
		{"path prefix", "[connections.c]\nhosts=['a.com']\npaths=['v1']\n", "must start with"},
		{"scope without cred", "[connections.c]\nhosts=['a.com']\nscopes=['x']\n", "has no credential"},
		{"unused vault key", "[vaults.v]\ntype='env'\nurl='https://x'\n", `vaults.v.url: is not used by type = "env"`},
		{"ccp needs app_id", "[vaults.v]\ntype='cyberark-ccp'\nurl='https://ccp.example.com/AIMWebService/api/Accounts'\n", "vaults.v.app_id: is required"},
		{"ccp forbidden chars", "[vaults.v]\ntype='cyberark-ccp'\nurl='https://ccp/x'\napp_id='a+b'\n", "vaults.v.app_id: contains a character CyberArk does not support"},
		{"ccp id parts", "[vaults.v]\ntype='cyberark-ccp'\nurl='https://ccp/x'\napp_id='a'\nsafe='S'\n[credentials.c]\nvault='v'\nid='a:b:c:d'\ntoken_url='https://idp/t'\n", `has 4 parts`},
		{"ccp id no safe", "[vaults.v]\ntype='cyberark-ccp'\nurl='https://ccp/x'\napp_id='a'\n[credentials.c]\nvault='v'\nid='object'\ntoken_url='https://idp/t'\n", `names no safe`},
		{"ccp id forbidden", "[vaults.v]\ntype='cyberark-ccp'\nurl='https://ccp/x'\napp_id='a'\nsafe='S'\n[credentials.c]\nvault='v'\nid='S:a;b'\ntoken_url='https://idp/t'\n", `does not support`},
		{"ccp http url", "[vaults.v]\ntype='cyberark-ccp'\nurl='http://ccp.example.com/x'\napp_id='a'\n", "must use https://"},
		{"kv auth missing", "[vaults.v]\ntype='hashicorp-kv'\naddress='https://vault:8200'\n", "needs token, or role_id + secret_id"},
		{"kv both auths", "[vaults.v]\ntype='hashicorp-kv'\naddress='https://vault:8200'\ntoken={env='T'}\nrole_id='r'\nsecret_id={env='S'}\n", "either token or role_id"},
		{"kv half approle", "[vaults.v]\ntype='hashicorp-kv'\naddress='https://vault:8200'\nrole_id='r'\n", "needs both role_id and secret_id"},
		{"kv ccp key", "[vaults.v]\ntype='hashicorp-kv'\naddress='https://vault:8200'\ntoken={env='T'}\napp_id='x'\n", `vaults.v.app_id: is not used by type = "hashicorp-kv"`},
		{"kv bad path", "[vaults.v]\ntype='hashicorp-kv'\naddress='https://vault:8200'\ntoken={env='T'}\n[credentials.c]\nvault='v'\nid='../etc'\ntoken_url='https://idp/t'\n", "not a valid secret path"},
		{"file vault profile", "[vaults.v]\ntype='file'\npath='secrets.toml'\nprofile='p'\n[profiles.p]\n", `vaults.v.profile: is not used by type = "file"`},
		{"cycle", "[vaults.a]\ntype='hashicorp-kv'\naddress='https://vault:8200'\ntoken={vault='b', id='x/y'}\n[vaults.b]\ntype='hashicorp-kv'\naddress='https://vault2:8200'\ntoken={vault='a', id='x/y'}\n", "depends on itself: vaults.a -> vaults.b -> vaults.a"},
		{"profile vault cycle", "[vaults.c]\ntype='cyberark-ccp'\nurl='https://ccp/x'\napp_id='a'\nsafe='S'\nprofile='p'\n[profiles.p]\nkeystore='secrets.toml'\npassword={vault='c', id='Certs:p12'}\n", "depends on itself"},
		{"missing file", "[vaults.v]\ntype='file'\npath='nope.toml'\n", "nope.toml\" does not exist"},
		{"bad duration", "[server]\nshutdown_timeout='5 seconds'\n", "is not a duration"},
		{"min version", "[profiles.p]\nmin_version='1.0'\n", "must be \"1.2\" or \"1.3\""},
		{"same path overlap", "[connections.a]\nhosts=['a.com']\npaths=['/v1']\n[connections.b]\nhosts=['a.com']\npaths=['/v1/']\n", "also matched by connections.a"},
		{"listen without url", "[connections.r]\nlisten='127.0.0.1:8081'\n", "connections.r.listen: a reverse listener needs url"},
		{"url with query", "[connections.r]\nurl='https://api.example.com/v2?x=1'\n", "connections.r.url: a base URL has no user info, query or fragment"},
		{"listener clash", "[server]\nlisten='127.0.0.1:3128'\n[connections.r]\nlisten='0.0.0.0:3128'\nurl='https://api.example.com'\n", "connections.r.listen: 0.0.0.0:3128 is also the address of server.listen"},
		{"admin on the proxy port", "[server]\nlisten='127.0.0.1:3128'\nadmin='127.0.0.1:3128'\n", "server.admin: 127.0.0.1:3128 is also the address of server.listen"},
		{"two reverse listeners", "[connections.a]\nlisten='127.0.0.1:8081'\nurl='https://a.example'\n[connections.b]\nlisten='127.0.0.1:8081'\nurl='https://b.example'\n", "connections.b.listen: 127.0.0.1:8081 is also the address of connections.a.listen"},
		{"server tls needs key", "[server.tls]\ncert='secrets.toml'\n", "server.tls.key: is required"},
		{"server tls missing client_ca", "[server.tls]\ncert='secrets.toml'\nkey='secrets.toml'\nclient_ca='nope.pem'\n", "server.tls.client_ca: "},
		{"empty clients", "[connections.a]\nhosts=['a.com']\nclients=[]\n", "connections.a.clients: is empty"},
		{"clients overlap", "[connections.a]\nhosts=['a.com']\nclients=['app1','app2']\n[connections.b]\nhosts=['a.com']\nclients=['app2']\n", "also matched by connections.a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, probs := Load(writeConfig(t, tc.text))
			if !strings.Contains(probs.Error(), tc.want) {
				t.Errorf("want %q in:\n%v", tc.want, probs)
			}
		})
	}
}

func TestDisjointClientsMayShareAHost(t *testing.T) {
	text := "[connections.a]\nhosts=['a.com']\nclients=['app1']\n[connections.b]\nhosts=['a.com']\nclients=['app2', 'CN=billing']\n[connections.c]\nhosts=['a.com']\n"
	if _, probs := Load(writeConfig(t, text)); probs.HasErrors() {
		t.Fatalf("disjoint clients (and a fallback without clients) are not an overlap:\n%v", probs)
	}
}

func TestReverseListenerMatchesOnlyWithExplicitHosts(t *testing.T) {
	text := "[connections.r]\nlisten='127.0.0.1:8081'\nurl='https://api.example.com/v2/'\n[connections.f]\nurl='https://api.example.com:8443/base'\n"
	cfg, probs := Load(writeConfig(t, text))
	if probs.HasErrors() {
		t.Fatal(probs)
	}
	if r := cfg.Connections["r"]; len(r.Patterns) != 0 || r.Upstream.Path != "/v2" {
		t.Fatalf("reverse: patterns %v, upstream %v", r.Patterns, r.Upstream)
	}
	if f := cfg.Connections["f"]; len(f.Patterns) != 1 || f.Patterns[0].String() != "api.example.com:8443" || f.Upstream.Host != "api.example.com:8443" {
		t.Fatalf("mapping: patterns %v, upstream %v", f.Patterns, f.Upstream)
	}
}

func TestNoOverlapWhenPathsDiffer(t *testing.T) {
	text := "[connections.a]\nhosts=['a.com']\npaths=['/v1']\n[connections.b]\nhosts=['a.com']\npaths=['/v2']\n[connections.c]\nhosts=['a.com:8443', '*.a.com']\n"
	if _, probs := Load(writeConfig(t, text)); probs.HasErrors() {
		t.Fatalf("unexpected problems:\n%v", probs)
	}
}

func TestWarnings(t *testing.T) {
	text := "[server.auth]\nusers=[{name='a', password='literal-pass'}]\n[profiles.p]\ninsecure_skip_verify=true\n"
	_, probs := Load(writeConfig(t, text))
	if probs.HasErrors() {
		t.Fatalf("warnings only expected:\n%v", probs)
	}
	if len(probs) != 2 || strings.Contains(probs.Error(), "literal-pass") {
		t.Fatalf("want two warnings without the secret, got:\n%v", probs)
	}
}

func TestHostPatterns(t *testing.T) {
	cases := []struct{ in, want string }{
		{"API.Example.COM.", "api.example.com"},
		{"api.example.com:8443", "api.example.com:8443"},
		{"*.Example.com", "*.example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"[::1]:443", "[::1]:443"},
		{"127.0.0.1", "127.0.0.1"},
		{"::0.", "[::]"},
		{"127.0.0.1.", "127.0.0.1"},
	}
	for _, tc := range cases {
		p, err := ParseHostPattern(tc.in)
		if err != nil || p.String() != tc.want {
			t.Errorf("ParseHostPattern(%q) = %q, %v; want %q", tc.in, p.String(), err, tc.want)
		}
	}
	for _, bad := range []string{"", "*", "*.com", "a.*.com", "http://a.com/", "a.com:99999", "a b.com", "a:b:c", "*.::1.", "a..com"} {
		if _, err := ParseHostPattern(bad); err == nil {
			t.Errorf("ParseHostPattern(%q) accepted", bad)
		}
	}
}

func TestQuotedKeysHavePositions(t *testing.T) {
	_, probs := Load(writeConfig(t, "[vaults.local]\ntype = \"file\"\npath = \"secrets.toml\"\n\n[\"Safe:odd\"]\nx = 1\n"))
	if !strings.Contains(probs.Error(), ":5:1: error: Safe:odd: unknown key") {
		t.Fatalf("got:\n%v", probs)
	}
}

// TestPositionsFollowTheParser: key positions come from a TOML parser, so keys
// written with escapes, quotes, spaces around dots or inside multi-line
// inline tables are placed where they are written.
func TestPositionsFollowTheParser(t *testing.T) {
	text := `connections . "e" . hosts = [
  "e.example.com/",
  "d.example.com",
]

[vaults.local]
type = "file"
path = "secrets.toml"

[connections."b\u0063"]
hosts = ["bc.example.com"]
credential = "nope"

[connections.'d\e']
hosts = ["d.example.com"]

[server.auth]
users = [
  { name = "a", password = { env = "A" } },
  { name = "a",
    password = { env = "B" } },
]
`
	_, probs := Load(writeConfig(t, text))
	out := probs.Error()
	for _, want := range []string{
		`:2:3: error: connections.e.hosts[0]: "e.example.com/" is a URL or path`,
		`:12:1: error: connections.bc.credential: credential "nope" is not defined`,
		`:14:1: error: connections.d\e: invalid name "d\\e"`,
		`:15:10: error: connections.d\e.hosts[0]: host "d.example.com" is also matched by connections.e`,
		`:20:5: error: server.auth.users[1].name: user "a" is listed twice`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Log("\n" + out)
	}
}

// TestNormalizeHost: a trailing dot is dropped once and for all, and empty
// labels are refused ("localhost.." used to become "localhost.", which
// normalised again to "localhost").
func TestNormalizeHost(t *testing.T) {
	good := map[string]string{
		"API.Example.COM.": "api.example.com",
		"localhost":        "localhost",
		"localhost.":       "localhost",
		"bücher.example.":  "xn--bcher-kva.example",
		"a。b。":             "a.b",
		"::1":              "::1",
		"10.0.0.1":         "10.0.0.1",
	}
	for in, want := range good {
		got, ok := NormalizeHost(in)
		if !ok || got != want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", in, got, ok, want)
		}
		if again, ok := NormalizeHost(got); !ok || again != got {
			t.Errorf("NormalizeHost(%q) = %q, %v; not idempotent", got, again, ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "localhost..", "a..b", ".a", ".a.", "a.b..", "a b", "a/b", "a。。", "。a"} {
		if got, ok := NormalizeHost(bad); ok {
			t.Errorf("NormalizeHost(%q) = %q, accepted", bad, got)
		}
	}
}
