package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// HashiVault is a real HashiCorp Vault dev server (built by
// scripts/install-vault), in memory, on loopback.
type HashiVault struct {
	t    *testing.T
	URL  string
	root string
	cmd  *exec.Cmd
	out  *testlog.Buffer
}

// vaultBinary returns the Vault server binary. Without it the test is
// skipped, or fails when the full suite is required (see needed).
func vaultBinary(t testing.TB) string {
	cache := os.Getenv("AUTHGRESS_IT_CACHE")
	if cache == "" {
		home, _ := os.UserCacheDir()
		cache = filepath.Join(home, "authgress-it")
	}
	bin := filepath.Join(cache, "vault-v1.21.0", "vault")
	if _, err := os.Stat(bin); err != nil {
		needed(t, "HashiCorp Vault is not built: run scripts/install-vault (scripts/test does) — looked for "+bin)
	}
	return bin
}

func startHashiVault(t *testing.T) *HashiVault {
	t.Helper()
	v := &HashiVault{t: t, root: "hvs-root-canary-" + randomHex(6), out: &testlog.Buffer{}}
	extraCanaries.Store("the Vault root token", v.root)
	port := freePort(t)
	v.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	v.cmd = exec.Command(vaultBinary(t), "server", "-dev", "-dev-root-token-id="+v.root, fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port))
	v.cmd.Env = append(os.Environ(), "VAULT_DISABLE_MLOCK=true", "HOME="+t.TempDir())
	v.cmd.Stdout, v.cmd.Stderr = v.out, v.out
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.cmd.Process.Signal(syscall.SIGTERM); _ = v.cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(v.URL + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault did not start:\n%s", v.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return v
}

// UnsealKey is printed by the dev server, possibly after it starts serving.
func (v *HashiVault) UnsealKey() string {
	v.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := regexp.MustCompile(`Unseal Key: (\S+)`).FindStringSubmatch(v.out.String()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	v.t.Fatalf("no unseal key in the dev server output:\n%s", v.out.String())
	return ""
}

// API calls Vault with the root token and decodes the JSON answer.
func (v *HashiVault) API(method, path string, body any) map[string]any {
	v.t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, v.URL+"/v1/"+path, r)
	req.Header.Set("X-Vault-Token", v.root)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		v.t.Fatalf("vault %s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

// setup creates a KV v2 mount "kv", the credential at
// kv/egress/oauth/app, a read policy for kv/egress/*, and an AppRole.
func (v *HashiVault) setup(tokenTTL, maxTTL string) (roleID, secretID string) {
	v.API("POST", "sys/mounts/kv", map[string]any{"type": "kv", "options": map[string]string{"version": "2"}})
	v.API("POST", "kv/data/egress/oauth/app", map[string]any{"data": map[string]string{"client_id": "proxy-client", "client_secret": canarySecret}})
	v.API("POST", "kv/data/other/app", map[string]any{"data": map[string]string{"client_id": "proxy-client", "client_secret": canarySecret}})
	v.API("PUT", "sys/policies/acl/egress-read", map[string]any{"policy": `path "kv/data/egress/*" { capabilities = ["read"] }`})
	v.API("POST", "sys/auth/approle", map[string]any{"type": "approle"})
	v.API("POST", "auth/approle/role/egress-proxy", map[string]any{"token_policies": []string{"egress-read"}, "token_ttl": tokenTTL, "token_max_ttl": maxTTL})
	roleID = v.API("GET", "auth/approle/role/egress-proxy/role-id", nil)["data"].(map[string]any)["role_id"].(string)
	secretID = v.API("POST", "auth/approle/role/egress-proxy/secret-id", nil)["data"].(map[string]any)["secret_id"].(string)
	extraCanaries.Store("the AppRole secret_id", secretID)
	return roleID, secretID
}

// policyToken creates a token with only the egress-read policy.
func (v *HashiVault) policyToken() string {
	tok := v.API("POST", "auth/token/create", map[string]any{"policies": []string{"egress-read"}, "ttl": "1h"})["auth"].(map[string]any)["client_token"].(string)
	extraCanaries.Store("a Vault token", tok)
	return tok
}

func hcvConfig(vaultURL, auth, id, tokenURL, upstream string) string {
	return fmt.Sprintf(`
[profiles.upstream]
ca = "{{CA}}"

[vaults.hcv]
type = "hashicorp-kv"
address = %q
mount = "kv"
%s

[credentials.app]
vault = "hcv"
id = %q
token_url = %q
scopes = ["api:read"]

[connections.api]
hosts = [%q]
credential = "app"
profile = "upstream"
`, vaultURL, auth, id, tokenURL, upstream)
}

func TestHashiCorpVaultTokenAuth(t *testing.T) {
	hv := startHashiVault(t)
	hv.setup("1h", "2h")
	t.Setenv("VAULT_TOKEN_IT", hv.policyToken())
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n"+hcvConfig(hv.URL, `token = { env = "VAULT_TOKEN_IT" }`, "egress/oauth/app", idp.TokenURL(), up.Addr))
	if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 || resp.Header.Get("X-Token-Client") != "proxy-client" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	m := adminGet(t, a.adminAddr(), "/metrics")
	if metricValue(t, m, "authgress_vault_requests_total", `vault="hcv"`, `result="ok"`) != 1 {
		t.Fatal("vault request not counted")
	}
}

func TestHashiCorpVaultAppRoleUnderLoad(t *testing.T) {
	hv := startHashiVault(t)
	roleID, secretID := hv.setup("3s", "6s") // the AppRole token must be renewed, then re-obtained
	t.Setenv("VAULT_ROLE_ID_IT", roleID)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	_ = os.WriteFile(secretFile, []byte(secretID+"\n"), 0o600)
	idp := startIdP(t, 2, "opaque") // short tokens: a token fetch (and vault read) every ~1.5s
	up := startUpstream(t)
	auth := fmt.Sprintf("role_id = { env = \"VAULT_ROLE_ID_IT\" }\nsecret_id = { file = %q }\ncache_ttl = \"1s\"", secretFile)
	a := startAuthgress(t, hcvConfig(hv.URL, auth, "egress/oauth/app", idp.TokenURL(), up.Addr))
	l := startLoad(a.Client(), "http://"+up.Addr+"/", 3)
	time.Sleep(12 * time.Second) // twice the AppRole token's max TTL
	ok, failed := l.finish()
	time.Sleep(300 * time.Millisecond) // the log is flushed every 100ms
	lookups := 0
	for _, line := range a.logLines() {
		if line["msg"] == "vault lookup" {
			lookups++
		}
	}
	t.Logf("AppRole over 12s (token ttl 3s, max 6s): %d requests ok, %d failed, %d vault lookups", ok, failed, lookups)
	if failed != 0 || lookups < 5 {
		t.Fatalf("%d failed requests (%s), %d vault lookups", failed, l.firstErr, lookups)
	}
}

func TestHashiCorpVaultErrorsAndSeal(t *testing.T) {
	hv := startHashiVault(t)
	hv.setup("1h", "2h")
	t.Setenv("VAULT_TOKEN_IT", hv.policyToken())
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	for _, tc := range []struct{ id, code, text string }{
		{"other/app", "credential_not_found", "denied"},         // outside the policy: 403
		{"egress/oauth/missing", "credential_not_found", "404"}, // inside the policy, absent
	} {
		a := startAuthgress(t, hcvConfig(hv.URL, `token = { env = "VAULT_TOKEN_IT" }`, tc.id, idp.TokenURL(), up.Addr))
		resp, body := a.Get("http://" + up.Addr + "/")
		if e := decodeError(t, resp, body); resp.StatusCode != 502 || e.Error != tc.code || !strings.Contains(e.Message, tc.text) {
			t.Fatalf("%s: %d %+v", tc.id, resp.StatusCode, e)
		}
	}
	a := startAuthgress(t, hcvConfig(hv.URL, `token = { env = "VAULT_TOKEN_IT" }`, "egress/oauth/app", idp.TokenURL(), up.Addr))
	hv.API("PUT", "sys/seal", nil)
	resp, body := a.Get("http://" + up.Addr + "/")
	if e := decodeError(t, resp, body); resp.StatusCode != 502 || e.Error != "vault_unavailable" || !strings.Contains(e.Message, "sealed") {
		t.Fatalf("sealed: %d %+v", resp.StatusCode, e)
	}
	hv.API("PUT", "sys/unseal", map[string]string{"key": hv.UnsealKey()})
	deadline := time.Now().Add(40 * time.Second)
	for {
		if resp, _ := a.Get("http://" + up.Addr + "/"); resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no recovery after unseal")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestSecretReferencesFromVault: a keystore password and a proxy user's
// password read from Vault ({ vault, id }).
func TestSecretReferencesFromVault(t *testing.T) {
	hv := startHashiVault(t)
	hv.setup("1h", "2h")
	hv.API("POST", "kv/data/egress/certs/tenant", map[string]any{"data": map[string]string{"client_secret": "p12-pass-from-vault"}})
	hv.API("POST", "kv/data/egress/proxy-users/app1", map[string]any{"data": map[string]string{"client_secret": "proxy-pass-from-vault"}})
	extraCanaries.Store("a keystore password", "p12-pass-from-vault")
	extraCanaries.Store("a proxy password", "proxy-pass-from-vault")
	t.Setenv("VAULT_TOKEN_IT", hv.policyToken())
	idp := startIdP(t, 300, "opaque")
	ng := startNginx(t, "")
	p12 := issueKeystore(t, t.TempDir(), "tenant-from-vault", "p12-pass-from-vault", false)
	cfg := hcvConfig(hv.URL, `token = { env = "VAULT_TOKEN_IT" }`, "egress/oauth/app", idp.TokenURL(), ng.MTLS) +
		fmt.Sprintf("\n[profiles.tenant]\nca = \"{{CA}}\"\nkeystore = %q\npassword = { vault = \"hcv\", id = \"egress/certs/tenant\" }\n", p12) +
		"\n[server.auth]\nusers = [{ name = \"app1\", password = { vault = \"hcv\", id = \"egress/proxy-users/app1\" } }]\n"
	cfg = strings.Replace(cfg, "profile = \"upstream\"\n", "profile = \"tenant\"\n", 1)
	a := startAuthgress(t, cfg)
	req := mustRequest(t, "GET", "http://"+ng.MTLS+"/", nil)
	req.SetBasicAuth("app1", "proxy-pass-from-vault")
	req.Header["Proxy-Authorization"], req.Header["Authorization"] = req.Header["Authorization"], nil
	resp, body := a.Do(req)
	if resp.StatusCode != 200 || !strings.Contains(body, "CN=tenant-from-vault") || !strings.Contains(body, "auth=[Bearer ") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// recordingTB records Skipf and Fatalf instead of ending the test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                   {}
func (r *recordingTB) Skipf(f string, a ...any)  { r.skipped = fmt.Sprintf(f, a...) }
func (r *recordingTB) Fatalf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...) }

// TestMissingVaultBinarySkipsUnlessRequired: `go test ./...` on a machine
// without the Vault build skips the Vault tests with the reason; with
// AUTHGRESS_IT_REQUIRE_ALL set (scripts/test, CI) they fail.
func TestMissingVaultBinarySkipsUnlessRequired(t *testing.T) {
	t.Setenv("AUTHGRESS_IT_CACHE", t.TempDir()) // no Vault build in it
	t.Setenv(requireAll, "")
	skipped := false
	t.Run("without the full suite", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		startHashiVault(t)
	})
	if !skipped {
		t.Fatal("a Vault test without the Vault binary was not skipped")
	}
	t.Setenv(requireAll, "1")
	r := &recordingTB{TB: t}
	vaultBinary(r)
	if r.skipped != "" || !strings.Contains(r.failed, "scripts/install-vault") || !strings.Contains(r.failed, requireAll) {
		t.Fatalf("with %s=1: skipped %q, failed %q", requireAll, r.skipped, r.failed)
	}
}
