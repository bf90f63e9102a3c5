package integration

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mtlsConfig: credential "app" and one connection per (path, profile) on
// the nginx mTLS host.
func mtlsConfig(tokenURL, host string, profiles map[string]string, routes [][3]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
[vaults.local]
type = "file"
path = "{{SECRETS}}"

[credentials.app]
vault = "local"
id = "app"
token_url = %q
scopes = ["api:read"]
`, tokenURL)
	for name, body := range profiles {
		fmt.Fprintf(&b, "\n[profiles.%s]\nca = \"{{CA}}\"\nwatch_interval = \"200ms\"\n%s\n", name, body)
	}
	for _, r := range routes { // name, path, profile
		fmt.Fprintf(&b, "\n[connections.%s]\nhosts = [%q]\npaths = [%q]\ncredential = \"app\"\nprofile = %q\n", r[0], host, r[1], r[2])
	}
	return b.String()
}

func dnOf(body string) string {
	start := strings.Index(body, "dn=[")
	if start < 0 {
		return ""
	}
	rest := body[start+4:]
	return rest[:strings.Index(rest, "]")]
}

func TestMTLSIdentitiesAreIsolated(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	ng := startNginx(t, "")
	dir := t.TempDir()
	certA, keyA := issueClient(t, dir, "tenant-a", nil, nil)
	p12B := issueKeystore(t, dir, "tenant-b", "pass-b", false) // OpenSSL 3 defaults
	p12C := issueKeystore(t, dir, "tenant-c", "pass-c", true)  // -legacy
	t.Setenv("P12_B_PASSWORD", "pass-b")
	passC := dir + "/pass-c"
	_ = os.WriteFile(passC, []byte("pass-c\n"), 0o600)
	cfg := mtlsConfig(idp.TokenURL(), ng.MTLS, map[string]string{
		"pem_a": fmt.Sprintf("cert = %q\nkey = %q", certA, keyA),
		"p12_b": fmt.Sprintf("keystore = %q\npassword = { env = \"P12_B_PASSWORD\" }", p12B),
		"p12_c": fmt.Sprintf("keystore = %q\npassword = { file = %q }", p12C, passC),
	}, [][3]string{{"a", "/a", "pem_a"}, {"b", "/b", "p12_b"}, {"c", "/c", "p12_c"}})
	a := startAuthgress(t, cfg)
	client := a.Client()
	want := map[string]string{"/a": "tenant-a", "/b": "tenant-b", "/c": "tenant-c"}
	var wg sync.WaitGroup
	var bad atomic.Int64
	var mu sync.Mutex
	var firstBad string
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				path := []string{"/a", "/b", "/c"}[(i+w)%3]
				resp, err := client.Get("http://" + ng.MTLS + path)
				if err != nil {
					bad.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				text := string(b)
				if resp.StatusCode != 200 || !strings.Contains(dnOf(text), "CN="+want[path]) || !strings.Contains(text, "auth=[Bearer ") {
					bad.Add(1)
					mu.Lock()
					firstBad = fmt.Sprintf("%s -> %d dn=[%s]", path, resp.StatusCode, dnOf(text))
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of 360 interleaved requests went out with the wrong (or no) client certificate; e.g. %s", bad.Load(), firstBad)
	}
}

func TestMTLSFailuresAreClear(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	ng := startNginx(t, "")
	dir := t.TempDir()
	otherCA, otherKey := newCA("not-trusted-by-nginx")
	certX, keyX := issueClient(t, dir, "stranger", otherCA, otherKey)
	cfg := mtlsConfig(idp.TokenURL(), ng.MTLS, map[string]string{
		"no_identity": "",
		"untrusted":   fmt.Sprintf("cert = %q\nkey = %q", certX, keyX),
	}, [][3]string{{"none", "/none", "no_identity"}, {"stranger", "/stranger", "untrusted"}})
	cfg += fmt.Sprintf("\n[connections.no_trust]\nhosts = [%q]\npaths = [\"/no-trust\"]\ncredential = \"app\"\n", ng.MTLS)
	a := startAuthgress(t, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, body := a.Get("http://" + ng.MTLS + "/none")
		if resp.StatusCode != 400 || !strings.Contains(body, "No required SSL certificate was sent") {
			t.Errorf("no client certificate: %d %q", resp.StatusCode, body)
		}
		resp, body = a.Get("http://" + ng.MTLS + "/stranger")
		if resp.StatusCode != 400 || !strings.Contains(body, "SSL certificate error") {
			t.Errorf("untrusted client certificate: %d %q", resp.StatusCode, body)
		}
		resp, body = a.Get("http://" + ng.MTLS + "/no-trust/x")
		if e := decodeError(t, resp, body); resp.StatusCode != 502 || e.Error != "upstream_unreachable" || !strings.Contains(e.Message, "unknown authority") {
			t.Errorf("untrusted server: %d %+v", resp.StatusCode, e)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a failing mTLS request hung")
	}
}

func TestClientCertificateRotationUnderLoad(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	ng := startNginx(t, "")
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "before-rotation", nil, nil)
	cfg := "[server]\nadmin = \"127.0.0.1:0\"\n" + mtlsConfig(idp.TokenURL(), ng.MTLS, map[string]string{
		"rot": fmt.Sprintf("cert = %q\nkey = %q", cert, key),
	}, [][3]string{{"rot", "/", "rot"}})
	a := startAuthgress(t, cfg)
	var seen sync.Map // DN -> count
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := a.Client()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + ng.MTLS + "/x")
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				dn := dnOf(string(b))
				v, _ := seen.LoadOrStore(dn, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	sawDN := func(cn string) bool {
		found := false
		seen.Range(func(k, _ any) bool { found = found || strings.Contains(k.(string), "CN="+cn); return true })
		return found
	}
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("traffic with the first certificate", func() bool { return sawDN("before-rotation") })

	// A bad pair (a new cert with the old key) is rejected; the old one stays.
	newCert, newKey := issueClient(t, t.TempDir(), "after-rotation", nil, nil)
	certPEM, _ := os.ReadFile(newCert)
	_ = os.WriteFile(cert, certPEM, 0o600)
	waitUntil("the rejection in the log", func() bool { return strings.Contains(a.out.String(), "client certificate change rejected") })
	time.Sleep(300 * time.Millisecond)
	if sawDN("after-rotation") {
		t.Fatal("a certificate without its key was used")
	}
	// The key arrives: the pair is swapped in under load.
	keyPEM, _ := os.ReadFile(newKey)
	_ = os.WriteFile(key, keyPEM, 0o600)
	waitUntil("traffic with the rotated certificate", func() bool { return sawDN("after-rotation") })
	rotatedAt := time.Now()
	seen.Range(func(k, _ any) bool { seen.Delete(k); return true })
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during rotation", failed.Load())
	}
	if sawDN("before-rotation") {
		t.Fatalf("the old certificate was still used more than 1.5s after rotation (rotated at %s)", rotatedAt.Format(time.StampMilli))
	}
	st := adminGet(t, a.adminAddr(), "/status")
	if !strings.Contains(st, "CN=after-rotation") || !strings.Contains(st, "rotated_at") {
		t.Fatalf("/status does not show the rotated certificate:\n%s", st)
	}
	if m := adminGet(t, a.adminAddr(), "/metrics"); metricValue(t, m, "authgress_client_certificate_expiry_seconds", `profile="rot"`) < 3600 {
		t.Fatal("certificate expiry metric")
	}
}

func TestTokenRequestOverMTLS(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	ng := startNginx(t, fmt.Sprintf("127.0.0.1:%d", idp.Port))
	up := startUpstream(t)
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "token-client", nil, nil)
	base := config("https://"+ng.TokenEP+"/token", up.Addr, "")
	withProfile := strings.Replace(base, `scopes = ["api:read"]`, "scopes = [\"api:read\"]\nprofile = \"idp_mtls\"", 1) +
		fmt.Sprintf("\n[profiles.idp_mtls]\nca = \"{{CA}}\"\ncert = %q\nkey = %q\n", cert, key)
	a := startAuthgress(t, withProfile)
	if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
		t.Fatalf("token over mTLS: %d %s", resp.StatusCode, body)
	}
	// Without the credential's profile, the token endpoint refuses the request.
	b := startAuthgress(t, strings.Replace(base, `[credentials.app]`, "[profiles.idp_trust_only]\nca = \"{{CA}}\"\n\n[credentials.app]\nprofile = \"idp_trust_only\"", 1))
	resp, body := b.Get("http://" + up.Addr + "/")
	if e := decodeError(t, resp, body); resp.StatusCode != 502 || e.Error != "token_unavailable" || !strings.Contains(e.Message, "HTTP 400") {
		t.Fatalf("token endpoint without a client certificate: %d %+v", resp.StatusCode, e)
	}
}
