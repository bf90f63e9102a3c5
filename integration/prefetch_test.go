package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func (a *Authgress) adminAddr() string {
	for _, l := range a.logLines() {
		if l["msg"] == "admin listening" {
			return l["addr"].(string)
		}
	}
	a.t.Fatal("no admin listener in the log")
	return ""
}

func readyz(t *testing.T, addr string) int {
	code, _ := readyzBody(t, addr)
	return code
}

func readyzBody(t *testing.T, addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func TestPrefetchAndReadiness(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	cfg := "[server]\nadmin = \"127.0.0.1:0\"\n" + strings.Replace(config(count.TokenURL(), up.Addr, ""), `scopes = ["api:read"]`, "scopes = [\"api:read\"]\nprefetch = true", 1)
	a := startAuthgress(t, cfg)
	admin := a.adminAddr()
	deadline := time.Now().Add(10 * time.Second)
	for readyz(t, admin) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never became ready with a prefetch credential")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count.n.Load(); n != 1 {
		t.Fatalf("token requests before any traffic: %d, want 1", n)
	}
	a.WaitLog(func(l map[string]any) bool { return l["msg"] == "token fetched" && l["credential"] == "app" })
	if resp, _ := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 || count.n.Load() != 1 {
		t.Fatalf("first request: %d, token requests %d", resp.StatusCode, count.n.Load())
	}
}

func TestNotReadyWhilePrefetchFails(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	idp.Stop()
	cfg := "[server]\nadmin = \"127.0.0.1:0\"\n" + strings.Replace(config(idp.TokenURL(), up.Addr, ""), `scopes = ["api:read"]`, "scopes = [\"api:read\"]\nprefetch = true", 1)
	a := startAuthgress(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := readyzBody(t, a.adminAddr())
		if code != 503 {
			t.Fatalf("/readyz = %d with the token endpoint down, want 503", code)
		}
		if strings.Contains(body, "the last fetch failed") && strings.Contains(body, "connection refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz does not say why it is waiting: %q", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	idp.Start()
	deadline = time.Now().Add(40 * time.Second)
	for readyz(t, a.adminAddr()) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("not ready after the token endpoint came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
