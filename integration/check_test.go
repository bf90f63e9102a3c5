package integration

import (
	"github.com/authgress/authgress/conf"
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

// setExampleEnv sets, as a user of the example would, the variables of
// every credential the config reads from an env vault.
func setExampleEnv(t *testing.T, path string) {
	t.Helper()
	cfg, _ := conf.Load(path)
	if cfg == nil {
		return
	}
	for _, c := range cfg.Credentials {
		if v := cfg.Vaults[c.Vault]; v != nil && v.Type == "env" {
			t.Setenv(strings.ToUpper(c.ID)+"_CLIENT_ID", "example-client")
			t.Setenv(strings.ToUpper(c.ID)+"_CLIENT_SECRET", "not-a-real-secret")
		}
	}
	var refs []conf.Secret
	if a := cfg.Server.Auth; a != nil {
		for _, u := range a.Users {
			refs = append(refs, u.Password)
		}
	}
	if b := cfg.Broker; b != nil {
		for _, c := range b.Clients {
			refs = append(refs, c.Key)
		}
	}
	for _, r := range refs {
		if r.Env != "" {
			t.Setenv(r.Env, "not-a-real-secret")
		}
	}
}

func TestExampleConfigsPassCheck(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.toml")
	more, _ := filepath.Glob("../examples/*/authgress.toml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		setExampleEnv(t, f)
		if code, out := runCheck(t, f); code != 0 {
			t.Errorf("%s: exit %d\n%s", f, code, out)
		}
	}

	// examples/ways: one per way in. The files they name (the agent's
	// certificates, the interception CA) are not in the repository: the
	// commands in docs/agent.md and docs/intercept.md make them, run here as
	// written in a copy of the directory.
	ways, _ := filepath.Glob("../examples/ways/*.toml")
	if len(ways) < 4 {
		t.Fatalf("examples/ways has %d configs, want one per way in", len(ways))
	}
	dir := t.TempDir()
	for _, f := range ways {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600)
	}
	for _, r := range [][2]string{{"intercept.md", "ca-init"}, {"agent.md", "agent-pki"}} {
		cmd := exec.Command("sh", "-ec", docRecipe(t, r[0], r[1]))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docs/%s recipe %s: %v\n%s", r[0], r[1], err, out)
		}
	}
	for _, f := range ways {
		path := filepath.Join(dir, filepath.Base(f))
		setExampleEnv(t, path)
		if code, out := runCheck(t, path); code != 0 {
			t.Errorf("examples/ways/%s: exit %d\n%s", filepath.Base(f), code, out)
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

// TestCheckReportsEveryFileProblem: problems with the files a config names
// (profiles' CA, certificate and keystore, a file vault's path) are all
// reported in one run, each with its line and key path.
func TestCheckReportsEveryFileProblem(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("not a certificate\n"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "garbage.p12"), []byte("not a keystore"), 0o600)
	_ = os.Mkdir(filepath.Join(dir, "secrets.d"), 0o700)
	path := filepath.Join(dir, "files.toml")
	text := `[vaults.local]
type = "file"
path = "secrets.d"

[profiles.a]
ca = "garbage.pem"

[profiles.b]
keystore = "garbage.p12"
password = { env = "AUTHGRESS_TEST_NEVER_SET" }

[profiles.c]
ca = "garbage.pem"
`
	_ = os.WriteFile(path, []byte(text), 0o600)
	code, out := runCheck(t, path)
	t.Log("\n" + out)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		`files.toml:3:1: error: vaults.local.path: "` + filepath.Join(dir, "secrets.d") + `" is a directory, not a file`,
		`files.toml:6:1: error: profiles.a.ca: ca file ` + filepath.Join(dir, "garbage.pem") + ` holds no PEM certificate`,
		`files.toml:10:1: error: profiles.b.password: keystore password (env:AUTHGRESS_TEST_NEVER_SET): environment variable AUTHGRESS_TEST_NEVER_SET is not set`,
		`files.toml:13:1: error: profiles.c.ca: ca file ` + filepath.Join(dir, "garbage.pem") + ` holds no PEM certificate`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing: %s", want)
		}
	}
}
