package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runCheck(t *testing.T, path string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary, "check", "--config", path).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

func TestCheckReportsEveryMistake(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "secrets.toml"), []byte("[x]\nclient_id='a'\nclient_secret='b'\n"), 0o600)
	path := filepath.Join(dir, "bad.toml")
	text := `[server]
listen = "127.0.0.1:3128"
Listen = "127.0.0.1:3129"

[vaults.local]
type = "file"
path = "secrets.toml"

[credentials.graph]
vault = "local"
id = "x"
token_url = "https://login.example.com/token"
scopes = ["a"]
sned = "basic"

[connections.graph]
hosts = ["api.example.com"]
credential = "graph"
timeout = 30

[connections.dup]
hosts = ["API.example.com"]
credential = "missing"

[connections.bad-name]
hosts = ["other.example.com"]
`
	_ = os.WriteFile(path, []byte(text), 0o600)
	code, out := runCheck(t, path)
	t.Log("\n" + out)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		`bad.toml:3:1: error: server.Listen: key "Listen" differs only in case from "listen"`,
		`bad.toml:14:1: error: credentials.graph.sned: unknown key "sned" (did you mean "send"?)`,
		`bad.toml:19:1: error: connections.graph.timeout: durations are strings with a unit: write "30s"`,
		`bad.toml:22:10: error: connections.dup.hosts[0]: host "api.example.com" is also matched by connections.graph`,
		`bad.toml:23:1: error: connections.dup.credential: credential "missing" is not defined`,
		`bad.toml:25:1: error: connections.bad-name: invalid name "bad-name"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing: %s", want)
		}
	}
}

// TestCheckReportsMissingEnvVariables: check fails, one error per missing
// variable, for a credential read from an env vault (at run time its token
// fetch would fail).
func TestCheckReportsMissingEnvVariables(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "env.toml")
	text := `[vaults.environment]
type = "env"

[credentials.graph]
vault = "environment"
id = "AGIT_GRAPH"
token_url = "https://login.example.com/token"

[credentials.partner]
vault = "environment"
id = "AGIT_PARTNER"
token_url = "https://login.example.com/token"

[connections.graph]
hosts = ["graph.example.com"]
credential = "graph"

[connections.partner]
hosts = ["partner.example.com"]
credential = "partner"
`
	_ = os.WriteFile(path, []byte(text), 0o600)
	t.Setenv("AGIT_GRAPH_CLIENT_SECRET", "s3cret-value")
	t.Setenv("AGIT_PARTNER_CLIENT_ID", "partner-client")
	t.Setenv("AGIT_PARTNER_CLIENT_SECRET", "s3cret-value")
	code, out := runCheck(t, path)
	want := `env.toml: error: credentials.graph.id: credential "graph" (env vault "environment"): environment variable AGIT_GRAPH_CLIENT_ID is not set`
	if code != 1 || !strings.Contains(out, want) || strings.Count(out, "error:") != 1 || strings.Contains(out, "s3cret") {
		t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, out)
	}
	t.Setenv("AGIT_GRAPH_CLIENT_ID", "graph-client")
	if code, out := runCheck(t, path); code != 0 {
		t.Fatalf("all variables set: exit %d\n%s", code, out)
	}
}

func TestExampleConfigsPassCheck(t *testing.T) {
	// examples/authgress.toml reads credential graph from an env vault.
	t.Setenv("GRAPH_CLIENT_ID", "graph-client")
	t.Setenv("GRAPH_CLIENT_SECRET", "not-a-real-secret")
	files, _ := filepath.Glob("../examples/*.toml")
	more, _ := filepath.Glob("../examples/*/authgress.toml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		if code, out := runCheck(t, f); code != 0 {
			t.Errorf("%s: exit %d\n%s", f, code, out)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"check", "--no-such-flag"}, {"check", "extra-arg"}} {
		err := exec.Command(binary, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
	if out, err := exec.Command(binary, "check", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "--config") && !strings.Contains(string(out), "-config") {
		t.Errorf("check --help: %v %s", err, out)
	}
}
