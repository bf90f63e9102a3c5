package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDelegatedTokensSharedByReplicas: a user who logs in through one
// replica's broker has their token injected by another replica (through
// Redis, encrypted: a dump holds no token or refresh token), which also
// keeps it fresh alone with the stored refresh token; a revoked login ends
// in login_required on both.
func TestDelegatedTokensSharedByReplicas(t *testing.T) {
	s := newSharedSetup(t)
	ports := []int{freePort(t), freePort(t)}
	var callbacks []string
	for _, p := range ports {
		callbacks = append(callbacks, fmt.Sprintf("http://127.0.0.1:%d/oauth-callback", p))
	}
	idp := startIdPWith(t, IdPOptions{TTL: 300, Format: "opaque", UserTTL: 6, RedirectURIs: callbacks})
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	up.Handle(whoseToken(idp))
	key := "broker-key-" + randomHex(12)
	extraCanaries.Store("the broker key", key)
	var rs []*Authgress
	for _, p := range ports {
		cfg := brokerConfig(s.config(count.TokenURL(), up.Addr, ""), idp, count, up, p)
		rs = append(rs, startAuthgress(t, cfg, append(brokerEnv(key, "other-"+randomHex(8)), "REDIS_PASSWORD="+s.redis.Password)...))
	}
	asUser := func(a *Authgress, name string) *http.Response {
		req := mustRequest(t, "GET", "http://"+up.Addr+"/me", nil)
		req.Header.Set("Proxy-Authorization", "Basic "+basic(name, name+"-pw"))
		resp, _ := a.Do(req)
		return resp
	}
	b0 := &Broker{t: t, Base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Key: key}
	b1 := &Broker{t: t, Base: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), Key: key}

	if resp := asUser(rs[1], "alice"); resp.StatusCode != 401 || resp.Header.Get("X-Authgress-Error") != "login_required" {
		t.Fatalf("replica 2 before any login: %d", resp.StatusCode)
	}
	b0.Login(idp, "users", "alice", "", false)
	// Replica 2 never saw the login: its proxy and its broker serve alice
	// from the shared cache.
	if resp := asUser(rs[1], "alice"); resp.StatusCode != 200 || resp.Header.Get("X-Token-Sub") != "alice" {
		t.Fatalf("replica 2 after a login on replica 1: %d %q", resp.StatusCode, resp.Header.Get("X-Token-Sub"))
	}
	_, m := b1.UserToken("users", "alice")
	first, _ := m["access_token"].(string)
	if first == "" {
		t.Fatalf("replica 2's broker: %v", m)
	}
	seenTokens.Store(first, true)
	_, dump := s.redis.Dump()
	assertNoCanary(t, "the Redis dump", dump)

	// Replica 2 alone, past two lifetimes: it refreshes with the stored
	// (rotated) refresh token; every request carries a live alice token.
	deadline := time.Now().Add(14 * time.Second)
	tokens := map[string]bool{first: true}
	for time.Now().Before(deadline) {
		if resp := asUser(rs[1], "alice"); resp.StatusCode != 200 || resp.Header.Get("X-Token-Sub") != "alice" {
			t.Fatalf("replica 2 while refreshing: %d", resp.StatusCode)
		}
		if _, m := b1.UserToken("users", "alice"); m["access_token"] != nil {
			v := m["access_token"].(string)
			seenTokens.Store(v, true)
			tokens[v] = true
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(tokens) < 3 {
		t.Fatalf("%d distinct tokens in 14 s of 6 s tokens, want at least 3", len(tokens))
	}
	// Replica 1 follows (the shared level has the newest token).
	if resp := asUser(rs[0], "alice"); resp.StatusCode != 200 {
		t.Fatalf("replica 1 after replica 2's refreshes: %d", resp.StatusCode)
	}

	idp.RevokeAccount("alice")
	deadline = time.Now().Add(20 * time.Second)
	for _, a := range rs {
		for {
			resp := asUser(a, "alice")
			if resp.StatusCode == 401 && resp.Header.Get("X-Authgress-Error") == "login_required" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still %d 20 s after the revocation", resp.StatusCode)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	_, dump = s.redis.Dump()
	for _, a := range rs {
		assertNoCanary(t, "authgress output", a.out.String())
	}
	assertNoCanary(t, "the Redis dump", dump)
	if strings.Contains(dump, "alice") {
		t.Error("the Redis dump names the user (keys must be hashes)")
	}
}
