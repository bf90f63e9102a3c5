package conf

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// fuzzConfigSeeds are configs worth mutating: valid ones, each shape the
// loader refuses, and text that once hung or exhausted it.
var fuzzConfigSeeds = []string{
	validConfig,
	utf8BOM + validConfig,
	utf8BOM + "[server]\nlisen = 'x'\n",
	"connections = [{ hosts = ['a.example.com'] }]\n",
	"[[connections]]\nhosts = ['a.example.com']\n",
	"vaults = []\n[[profiles]]\n",
	"[[connections.a]]\nhosts = ['a.example.com']\n",
	"[credentials.c]\nvault = 'v'\nid = 'x'\nscopes = 'x'\nparams = 'y'\n[connections.c]\nhosts = ['c.example.com']\ncredential = 'c'\n",
	"[connections.\"b\\u0063\"]\nhosts = ['bc.example.com']\ncredential = 'nope'\n",
	"connections . \"e\" . hosts = [\n  \"e.example.com\",\n  'E.example.com.',\n]\n",
	"[server.auth]\nusers = [\n  { name = 'a', password = { env = 'A' } },\n  { name = 'a',\n    password = { env = 'B', file = 'x' } },\n]\n",
	"a=" + strings.Repeat("{a=", 70) + "1" + strings.Repeat("}", 70) + "\n",
	"x = " + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "\n",
	strings.Repeat("a.", 70) + "a = 1\n",
	"[vaults.c]\ntype = 'cyberark-ccp'\nurl = 'https://ccp.example.com/x'\napp_id = 'a'\nsafe = 'S'\nprofile = 'p'\n[profiles.p]\nkeystore = 'x.p12'\npassword = { vault = 'c', id = 'Certs:p12' }\n",
	"[vaults.k]\ntype = 'hashicorp-kv'\naddress = 'https://vault:8200'\ntoken = { env = 'T' }\n[credentials.c]\nvault = 'k'\nid = '../etc'\ntoken_url = 'https://idp/t'\n",
	"[connections.a]\nhosts = ['a.com']\npaths = ['/v1']\n[connections.b]\nhosts = ['A.com.']\npaths = ['/v1/']\nretry = { count = 'x' }\ntimeout = 30\n",
	"[server]\nlisten = 5\nshutdown_timeout = '5 seconds'\n[log]\nlevel = 'loud'\n[egress]\nunmatched = 'maybe'\n",
	"s = \"\"\"\n[[[{{{\n\"\"\"\nt = '''x'''\n# [[[\n",
	"[server\n",
	"\"\" = 1\n'' = 2\n[\"\".\"\"]\n",
}

// fileLevel reports whether a problem is about the file as a whole and so has
// no line.
func fileLevel(p Problem) bool {
	return p.Path == "" && (strings.Contains(p.Msg, "larger than") || strings.Contains(p.Msg, "more problems not shown"))
}

// tomlDepth is how deep a decoded TOML value nests, counted as nestingDepth
// counts: each key and each array adds a level.
func tomlDepth(v any, d int) int {
	max := d
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			max = maxInt(max, tomlDepth(c, d+1))
		}
	case []map[string]any:
		for _, c := range x {
			max = maxInt(max, tomlDepth(c, d+1))
		}
	case []any:
		for _, c := range x {
			max = maxInt(max, tomlDepth(c, d+1))
		}
	}
	return max
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// FuzzLoad runs the whole load and validate path on arbitrary text: it must
// not panic, must end quickly, and must place every problem on a line of the
// file. Where the TOML library accepts the text, the pre-scan must not
// under-count its nesting, and every key the library saw must have a
// position from the position parser (the two parsers agree).
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzConfigSeeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		_, probs := Parse(dir+"/authgress.toml", data)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Parse took %s", d)
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, p := range probs {
			if p.Pos.Line == 0 && !fileLevel(p) {
				t.Errorf("problem without a line: %v", p)
			}
			if p.Pos.Line > lines {
				t.Errorf("problem on line %d of a %d-line file: %v", p.Pos.Line, lines, p)
			}
		}
		if len(data) > MaxConfigSize {
			return
		}
		text := strings.TrimPrefix(string(data), utf8BOM)
		deepest, _, deep := nestingDepth([]byte(text), MaxNesting)
		if deep || !utf8.ValidString(text) {
			return
		}
		var doc map[string]any
		md, err := toml.Decode(text, &doc)
		if err != nil {
			return
		}
		if got := tomlDepth(doc, 0); got > deepest {
			t.Errorf("the pre-scan measured depth %d, the parsed document has %d", deepest, got)
		}
		pos, perr := indexPositions([]byte(text))
		if perr != nil {
			t.Fatalf("the decoder accepts the text, the position parser refuses it: %v", perr.Msg)
		}
		for _, k := range md.Keys() {
			path := strings.Join(k, ".")
			if _, ok := pos[path]; !ok {
				t.Errorf("key %q has no position", path)
			}
		}
	})
}

// FuzzNormalizeHost: the result of NormalizeHost normalises to itself and
// never has upper case, a trailing dot or an empty label.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"API.Example.COM.", "localhost..", "a..b", "..", ".a", "bücher.example.", "a。", "a。。", "::1", "xn--bcher-kva.example", "Ⅸ.example", "ß.de", "a\u200db.com", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		out, ok := NormalizeHost(h)
		if !ok {
			return
		}
		again, ok2 := NormalizeHost(out)
		if !ok2 || again != out {
			t.Fatalf("NormalizeHost(%q) = %q; NormalizeHost(%q) = %q, %v", h, out, out, again, ok2)
		}
		if out == "" || strings.ToLower(out) != out || strings.HasSuffix(out, ".") || strings.HasPrefix(out, ".") || strings.Contains(out, "..") {
			t.Fatalf("NormalizeHost(%q) = %q", h, out)
		}
	})
}

// FuzzHostPattern: a parsed pattern's String parses back to the same pattern.
func FuzzHostPattern(f *testing.F) {
	for _, s := range []string{"API.Example.COM.", "api.example.com:8443", "*.Example.com", "bücher.example", "[::1]:443", "127.0.0.1", "*.a.b:1", "a.com:0443", "[::ffff:1.2.3.4]", "*.*.com", "a.com:", ":80", "[a.com]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseHostPattern(s)
		if err != nil {
			return
		}
		str := p.String()
		q, err := ParseHostPattern(str)
		if err != nil {
			t.Fatalf("ParseHostPattern(%q) = %q, which does not parse: %v", s, str, err)
		}
		if q != p || q.String() != str {
			t.Fatalf("ParseHostPattern(%q) = %+v (%q), reparsed %+v (%q)", s, p, str, q, q.String())
		}
	})
}

// FuzzCCPID: a CyberArk credential ID that parses has an object, no
// forbidden characters, and parses to the same parts once rebuilt.
func FuzzCCPID(f *testing.F) {
	for _, s := range []string{"object", "Safe:object", "Safe:object:Platform", ":object", "a:b:c:d", "S:a;b", "", "::", "S:", "OAuthClients:graph-client:OAuth2Client"} {
		f.Add(s)
	}
	vaults := []*Vault{{Type: "cyberark-ccp"}, {Type: "cyberark-ccp", Safe: "S"}, {Type: "hashicorp-kv"}, {Type: "env"}, {Type: "file"}}
	f.Fuzz(func(t *testing.T, id string) {
		for _, v := range vaults {
			_ = checkVaultID(v, id)
		}
		safe, object, policy, err := ParseCCPID(id)
		if err != nil {
			return
		}
		if object == "" {
			t.Fatalf("ParseCCPID(%q): no object", id)
		}
		for _, part := range []string{safe, object, policy} {
			if strings.ContainsAny(part, CCPForbidden+":") {
				t.Fatalf("ParseCCPID(%q): part %q", id, part)
			}
		}
		rebuilt := object
		switch {
		case policy != "" || strings.Count(id, ":") == 2:
			rebuilt = safe + ":" + object + ":" + policy
		case strings.Contains(id, ":"):
			rebuilt = safe + ":" + object
		}
		if rebuilt != id {
			t.Fatalf("ParseCCPID(%q) = %q %q %q, rebuilt %q", id, safe, object, policy, rebuilt)
		}
	})
}
