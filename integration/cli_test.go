package integration

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// cli runs an authgress subcommand against a config written like
// startAuthgress writes it, returning the exit code and combined output.
func cli(t *testing.T, config string, args ...string) (int, string) {
	t.Helper()
	a := &Authgress{t: t, Dir: t.TempDir()}
	path := a.writeConfig(config)
	cmd := exec.Command(binary, append([]string{args[0], "--config", path}, args[1:]...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), canarySecret) {
		t.Errorf("authgress %s printed the client secret", args[0])
	}
	return code, string(out)
}

var opaqueToken = regexp.MustCompile(`[A-Za-z0-9_-]{40,}`)

func TestTokenCommand(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	cfg := config(idp.TokenURL(), up.Addr, "")

	code, out := cli(t, cfg, "token", "app")
	if code != 0 || !strings.Contains(out, "type        Bearer") || !strings.Contains(out, `granted "api:read"`) || !strings.Contains(out, "expires     in 5m0s") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if opaqueToken.MatchString(out) {
		t.Fatalf("the token was printed without --show:\n%s", out)
	}
	code, out = cli(t, cfg, "token", "app", "--show")
	tok := opaqueToken.FindString(out)
	if code != 0 || tok == "" {
		t.Fatalf("--show: exit %d:\n%s", code, out)
	}
	if active, client, _ := idp.Introspect(tok); !active || client != "proxy-client" {
		t.Fatalf("the printed token is not live: active=%v client=%q", active, client)
	}
	seenTokens.Store(tok, true)

	code, out = cli(t, strings.Replace(cfg, `id = "app"`, `id = "wrong"`, 1), "token", "app")
	if code != 1 || !strings.Contains(out, "FAILED at the token endpoint (rejected)") || !strings.Contains(out, "invalid_client") {
		t.Fatalf("wrong secret: exit %d:\n%s", code, out)
	}
	code, out = cli(t, strings.Replace(cfg, `id = "app"`, `id = "absent"`, 1), "token", "app")
	if code != 1 || !strings.Contains(out, "FAILED at the vault (credential_not_found)") {
		t.Fatalf("missing vault entry: exit %d:\n%s", code, out)
	}
	if code, out = cli(t, cfg, "token", "nope"); code != 1 || !strings.Contains(out, `credential "nope" is not defined`) {
		t.Fatalf("unknown credential: exit %d:\n%s", code, out)
	}
	if code, _ = cli(t, cfg, "token"); code != 2 {
		t.Fatalf("no credential: exit %d, want 2", code)
	}
}

func TestTestCommand(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	cfg := config(idp.TokenURL(), up.Addr, "")

	code, out := cli(t, cfg, "test", "api", "/v1/ping")
	if code != 0 || !strings.Contains(out, "token       ok: credential app, Bearer") || !strings.Contains(out, "upstream    200 OK") || !strings.Contains(out, "result      ok") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// A connection split by path: its first path is the default, and a
	// PATH that another connection matches is said plainly, not tested.
	split := config(idp.TokenURL(), up.Addr, "paths = [\"/v1\"]\n\n[connections.reports]\nhosts = [\""+up.Addr+"\"]\npaths = [\"/reports\", \"/r2\"]\nprofile = \"upstream\"\n")
	code, out = cli(t, split, "test", "api")
	if code != 0 || !strings.Contains(out, "http://"+up.Addr+"/v1 ") || !strings.Contains(out, "result      ok") {
		t.Fatalf("default path: exit %d:\n%s", code, out)
	}
	code, out = cli(t, split, "test", "reports", "/v1/x")
	if code != 1 || !strings.Contains(out, `matched connection "api", not "reports"`) || !strings.Contains(out, "its paths: /reports, /r2") || strings.Contains(out, "scopes") {
		t.Fatalf("other connection: exit %d:\n%s", code, out)
	}
	code, out = cli(t, strings.Replace(cfg, `id = "app"`, `id = "absent"`, 1), "test", "api")
	if code != 1 || !strings.Contains(out, "token       FAILED at the vault") {
		t.Fatalf("vault stage: exit %d:\n%s", code, out)
	}
	idp.Stop()
	code, out = cli(t, cfg, "test", "api")
	if code != 1 || !strings.Contains(out, "token       FAILED at the token endpoint (unavailable)") || !strings.Contains(out, "connection refused") {
		t.Fatalf("token stage: exit %d:\n%s", code, out)
	}
}

func TestUpstreamStageOfTestCommand(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	code, out := cli(t, config(idp.TokenURL(), "127.0.0.1:1", ""), "test", "api")
	if code != 1 || !strings.Contains(out, "upstream    FAILED: 502 upstream_unreachable") || !strings.Contains(out, "connection refused") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"version", "--config", "/nonexistent/authgress.toml"}, {"--version"}, {"-version"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "authgress dev (go") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if err := exec.Command(binary, "version", "--no-such-flag").Run(); err == nil {
		t.Error("version --no-such-flag: exit 0, want 2")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("version --no-such-flag: %v, want exit 2", err)
	}
}

// TestDebugLevelLogsTheEffectiveConfig: level = "debug" adds lines "info"
// does not have (the effective config, at start and after a reload), and
// none of them holds a secret.
func TestDebugLevelLogsTheEffectiveConfig(t *testing.T) {
	up := startUpstream(t)
	cfg := config("http://127.0.0.1:1/token?tenant=private-query-value", up.Addr, "")
	a := startAuthgress(t, cfg) // writeConfig sets level = "debug"
	conn := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "config connection" })
	if conn["level"] != "DEBUG" || conn["connection"] != "api" || conn["credential"] != "app" {
		t.Fatalf("debug line: %v", conn)
	}
	cred := a.WaitLog(func(l map[string]any) bool { return l["msg"] == "config credential" })
	if cred["token_url"] != "http://127.0.0.1:1/token" || cred["vault"] != "local" {
		t.Fatalf("debug line: %v", cred)
	}
	if strings.Contains(a.out.String(), "private-query-value") {
		t.Fatal("a debug line holds a query value")
	}
	if msg := a.Reload(strings.Replace(cfg, `hosts = [`, `hosts = ["second.example", `, 1)); msg != "config reloaded" {
		t.Fatalf("reload: %s", msg)
	}
	a.WaitLog(func(l map[string]any) bool {
		hosts, _ := l["hosts"].([]any)
		return l["msg"] == "config connection" && len(hosts) == 2
	})
}
