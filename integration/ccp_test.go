package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// ccpConfig: vault "corp" (the emulator, client certificate through profile
// "ccp_client"), credential "app" (id) and connection "api" to the upstream.
func ccpConfig(ccp *CCPEmulator, identity, tokenURL, upstream, id string) string {
	return fmt.Sprintf(`
[profiles.ccp_client]
ca = "{{CA}}"
%s

[profiles.upstream]
ca = "{{CA}}"

[vaults.corp]
type = "cyberark-ccp"
url = "https://%s/AIMWebService/api/Accounts"
app_id = "authgress"
safe = "OAuthClients"
profile = "ccp_client"
timeout = "5s"

[credentials.app]
vault = "corp"
id = %q
token_url = %q
scopes = ["api:read"]

[connections.api]
hosts = [%q]
credential = "app"
profile = "upstream"
`, identity, ccp.Addr, id, tokenURL, upstream)
}

func TestCyberArkCCPEndToEnd(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	ccp := startCCP(t)
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "authgress-gw", nil, nil)
	p12 := issueKeystore(t, dir, "authgress-p12", "p12-pass", false)
	ccp.Allow("authgress", "authgress-gw")
	ccp.Allow("authgress", "authgress-p12")
	// The seeds' layout: a platform with a Client ID property (UserName),
	// the client secret as the account's password (Content).
	ccp.Put("OAuthClients", "graph client", &ccpAccount{UserName: "proxy-client", Contents: []string{canarySecret}})

	for name, identity := range map[string]string{
		"pem":    fmt.Sprintf("cert = %q\nkey = %q", cert, key),
		"pkcs12": fmt.Sprintf("keystore = %q\npassword = { env = \"CCP_P12_PASSWORD\" }", p12),
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("CCP_P12_PASSWORD", "p12-pass")
			a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n"+ccpConfig(ccp, identity, idp.TokenURL(), up.Addr, "OAuthClients:graph client:OAuth2Client"))
			resp, body := a.Get("http://" + up.Addr + "/")
			if resp.StatusCode != 200 || resp.Header.Get("X-Token-Client") != "proxy-client" {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			m := adminGet(t, a.adminAddr(), "/metrics")
			if metricValue(t, m, "authgress_vault_requests_total", `vault="corp"`, `result="ok"`) != 1 {
				t.Fatal("vault request not counted")
			}
		})
	}
	q := ccp.Queries()
	if len(q) != 2 || q[0] != "AppID=authgress&Safe=OAuthClients&Folder=Root&Object=graph%20client&PolicyID=OAuth2Client" {
		t.Fatalf("CCP queries: %v", q)
	}
}

func TestCyberArkErrorsReachTheClient(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	ccp := startCCP(t)
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "authgress-gw", nil, nil)
	stranger, strangerKey := issueClient(t, dir, "not-registered", nil, nil)
	ccp.Allow("authgress", "authgress-gw")
	ccp.Put("OAuthClients", "vault-down", &ccpAccount{Fail: "APPAP007E"})
	ccp.Put("OAuthClients", "rotating", &ccpAccount{Fail: "APPAP282E"})
	ccp.Put("OAuthClients", "ambiguous", &ccpAccount{Fail: "APPAP227E"})
	ccp.Put("OAuthClients", "empty", &ccpAccount{UserName: "u", Contents: []string{""}})
	pem := fmt.Sprintf("cert = %q\nkey = %q", cert, key)
	cases := []struct {
		identity, id, code, cyberark string
	}{
		{pem, "missing", "credential_not_found", "APPAP004E"},
		{pem, "vault-down", "vault_unavailable", "APPAP007E"},
		{pem, "rotating", "vault_unavailable", "APPAP282E"},
		{pem, "ambiguous", "credential_not_found", "APPAP227E"},
		{pem, "empty", "credential_not_found", "empty Content"},
		{fmt.Sprintf("cert = %q\nkey = %q", stranger, strangerKey), "x", "credential_not_found", "APPAP306E"},
		{"", "x", "credential_not_found", "APPAP306E"}, // no client certificate at all
	}
	for _, tc := range cases {
		t.Run(tc.cyberark, func(t *testing.T) {
			a := startAuthgress(t, ccpConfig(ccp, tc.identity, idp.TokenURL(), up.Addr, tc.id))
			resp, body := a.Get("http://" + up.Addr + "/")
			e := decodeError(t, resp, body)
			if resp.StatusCode != 502 || e.Error != tc.code || !strings.Contains(e.Message, tc.cyberark) {
				t.Fatalf("%d %+v", resp.StatusCode, e)
			}
		})
	}
	wrongApp := strings.Replace(ccpConfig(ccp, pem, idp.TokenURL(), up.Addr, "x"), `app_id = "authgress"`, `app_id = "unknown-app"`, 1)
	a := startAuthgress(t, wrongApp)
	resp, body := a.Get("http://" + up.Addr + "/")
	if e := decodeError(t, resp, body); e.Error != "credential_not_found" || !strings.Contains(e.Message, "APPAP008E") {
		t.Fatalf("unknown AppID: %+v", e)
	}
}

func TestVaultOutageAndRecovery(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	ccp := startCCP(t)
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "authgress-gw", nil, nil)
	ccp.Allow("authgress", "authgress-gw")
	ccp.Put("OAuthClients", "reader", &ccpAccount{UserName: "proxy-client", Contents: []string{canarySecret}})
	ccp.Put("OAuthClients", "writer", &ccpAccount{UserName: "proxy-client", Contents: []string{canarySecret}})
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	cfg := "[server]\nadmin = \"127.0.0.1:0\"\n" + ccpConfig(ccp, fmt.Sprintf("cert = %q\nkey = %q", cert, key), idp.TokenURL(), up.Addr, "reader") + fmt.Sprintf(`
[credentials.writer]
vault = "corp"
id = "writer"
token_url = %q
scopes = ["api:write"]

[connections.writes]
hosts = ["localhost:%s"]
credential = "writer"
profile = "upstream"
`, idp.TokenURL(), port)
	a := startAuthgress(t, cfg)
	if resp, _ := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
		t.Fatal("first request")
	}
	ccp.Stop()
	for i := 0; i < 3; i++ {
		if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
			t.Fatalf("cached token not used while the vault is down: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := a.Get("http://localhost:" + port + "/")
	e := decodeError(t, resp, body)
	if resp.StatusCode != 502 || e.Error != "vault_unavailable" || !strings.Contains(e.Message, "could not be reached") {
		t.Fatalf("never-fetched credential with the vault down: %d %+v", resp.StatusCode, e)
	}
	if st := adminGet(t, a.adminAddr(), "/status"); !strings.Contains(st, `"last_result": "unavailable"`) {
		t.Fatalf("/status does not show the vault failure:\n%s", st)
	}
	ccp.Start()
	deadline := time.Now().Add(40 * time.Second)
	for {
		resp, _ := a.Get("http://localhost:" + port + "/")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no recovery after the vault came back")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestRotatedSecretIsReadAgainOnInvalidClient(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	ccp := startCCP(t)
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "authgress-gw", nil, nil)
	ccp.Allow("authgress", "authgress-gw")
	// The first read returns the old secret (already rotated at the IdP).
	ccp.Put("OAuthClients", "rotated", &ccpAccount{UserName: "proxy-client", Contents: []string{"old-secret-before-rotation", canarySecret}})
	a := startAuthgress(t, ccpConfig(ccp, fmt.Sprintf("cert = %q\nkey = %q", cert, key), idp.TokenURL(), up.Addr, "rotated"))
	if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if n := len(ccp.Queries()); n != 2 {
		t.Fatalf("vault reads = %d, want 2 (the first, and one after invalid_client)", n)
	}
	if strings.Contains(a.out.String(), "old-secret-before-rotation") {
		t.Fatal("the old secret is in the log")
	}
}
