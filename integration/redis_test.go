package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// Redis is a real redis-server (Debian's) on a free loopback port, with a
// password, no persistence, and its own temporary directory.
type Redis struct {
	t        *testing.T
	Port     int
	Dir      string
	Password string
	cmd      *exec.Cmd
	log      *testlog.Buffer
	// With TLS: the server's settings, and redis-cli's (a client certificate).
	tlsConf, tlsCLI []string
}

func startRedis(t *testing.T) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		needed(t, "redis-server is needed for the shared token cache tests (apt-get install redis-server)")
	}
	r := &Redis{t: t, Port: freePort(t), Dir: t.TempDir(), Password: "redis-pw-" + randomHex(12), log: &testlog.Buffer{}}
	extraCanaries.Store("the Redis password", r.Password)
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Start (re)starts the server on the same port, empty.
func (r *Redis) Start() {
	r.t.Helper()
	conf := filepath.Join(r.Dir, "redis.conf")
	text := fmt.Sprintf("bind 127.0.0.1\nport %d\nsave \"\"\nappendonly no\ndir %s\nrequirepass %s\n", r.Port, r.Dir, r.Password)
	if r.tlsConf != nil {
		text = fmt.Sprintf("bind 127.0.0.1\nport 0\ntls-port %d\nsave \"\"\nappendonly no\ndir %s\nrequirepass %s\n%s\n", r.Port, r.Dir, r.Password, strings.Join(r.tlsConf, "\n"))
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.cmd = exec.Command("redis-server", conf)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if out, err := r.CLI("PING"); err == nil && strings.TrimSpace(out) == "PONG" {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not start:\n%s", r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL): connections just break.
func (r *Redis) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // in case it was stalled
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Stall freezes the server (SIGSTOP) for d: the kernel still accepts
// connections, but nothing answers.
func (r *Redis) Stall(d time.Duration) {
	p := r.cmd.Process
	_ = p.Signal(syscall.SIGSTOP)
	time.AfterFunc(d, func() { _ = p.Signal(syscall.SIGCONT) })
}

// CLI runs redis-cli against the server (the password through the
// environment, not the command line) and returns its raw output.
func (r *Redis) CLI(args ...string) (string, error) {
	cmd := exec.Command("redis-cli", append(append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(r.Port)}, r.tlsCLI...), args...)...)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+r.Password)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("redis-cli %v: %v %s", args, err, errb.String())
	}
	return out.String(), nil
}

// Dump returns every key and, for each, its raw value (GET) and its
// serialisation (DUMP), as a Redis dump would hold them.
func (r *Redis) Dump() (keys []string, dump string) {
	r.t.Helper()
	out, err := r.CLI("--scan")
	if err != nil {
		r.t.Fatal(err)
	}
	keys = strings.Fields(out)
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\n")
		for _, cmd := range []string{"GET", "DUMP"} {
			v, err := r.CLI("--no-raw", cmd, k)
			if err != nil {
				r.t.Fatal(err)
			}
			raw, _ := r.CLI("--raw", cmd, k)
			b.WriteString(v + raw)
		}
	}
	return keys, b.String()
}

// sharedSetup is what the replicas share: one secrets file (the credential
// definition, and so the cache key, is then the same on each), one cache
// key file, one Redis.
type sharedSetup struct {
	redis   *Redis
	secrets string
	keyFile string
	admin   bool
	timeout string // [cache] timeout: 1s unless a test is about it, so that a busy machine is not an outage
}

func newSharedSetup(t *testing.T) *sharedSetup {
	dir := t.TempDir()
	s := &sharedSetup{redis: startRedis(t), secrets: filepath.Join(dir, "secrets.toml"), keyFile: filepath.Join(dir, "cache-key"), admin: true, timeout: "1s"}
	if err := os.WriteFile(s.secrets, []byte(fmt.Sprintf(secretsFile, canarySecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	enc := base64.StdEncoding.EncodeToString(key)
	extraCanaries.Store("the cache key", enc)
	extraCanaries.Store("the cache key (hex)", fmt.Sprintf("%x", key))
	if err := os.WriteFile(s.keyFile, []byte(enc+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// config is proxy_test's config() with the shared cache on.
func (s *sharedSetup) config(tokenURL, host, extra string) string {
	cfg := strings.ReplaceAll(config(tokenURL, host, extra), "{{SECRETS}}", s.secrets)
	if s.admin {
		cfg = "[server]\nadmin = \"127.0.0.1:0\"\n" + cfg
	}
	return cfg + fmt.Sprintf(`
[cache]
type = "redis"
url = "redis://127.0.0.1:%d/0"
password = { env = "REDIS_PASSWORD" }
key = { file = %q }
timeout = %q
`, s.redis.Port, s.keyFile, s.timeout)
}

// replicas starts n authgress processes with the same config.
func (s *sharedSetup) replicas(t *testing.T, n int, config string) []*Authgress {
	var out []*Authgress
	for i := 0; i < n; i++ {
		out = append(out, startAuthgress(t, config, "REDIS_PASSWORD="+s.redis.Password))
	}
	return out
}

// loadRun sends requests through the replicas (workers per replica, one
// every pause each) until Stop, and counts them and their worst latency.
type loadRun struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errors     []string
	maxLatency time.Duration
	stop       chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
}

func runLoad(t *testing.T, rs []*Authgress, url string, workers int, pause time.Duration) *loadRun {
	l := &loadRun{stop: make(chan struct{})}
	stop, wg := l.stop, &l.wg
	for _, a := range rs {
		client := a.Client()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					resp, err := client.Get(url)
					took := time.Since(start)
					l.mu.Lock()
					l.maxLatency = max(l.maxLatency, took)
					switch {
					case err != nil:
						l.failed.Add(1)
						l.errors = append(l.errors, err.Error())
					case resp.StatusCode != 200:
						l.failed.Add(1)
						l.errors = append(l.errors, fmt.Sprintf("status %d %s", resp.StatusCode, resp.Header.Get("X-Authgress-Error")))
					default:
						l.ok.Add(1)
					}
					l.mu.Unlock()
					if resp != nil {
						resp.Body.Close()
					}
					time.Sleep(pause)
				}
			}()
		}
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for the requests in flight.
func (l *loadRun) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *loadRun) check(t *testing.T, what string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed.Load() != 0 {
		t.Fatalf("%s: %d of %d requests failed: %v", what, l.failed.Load(), l.failed.Load()+l.ok.Load(), l.errors[:min(len(l.errors), 5)])
	}
}

// cacheState is /status's cache section.
type cacheState struct {
	Type   string `json:"type"`
	State  string `json:"state"`
	Shared struct {
		Hits, Misses, Errors int64
	} `json:"shared"`
}

func statusCache(t *testing.T, a *Authgress) cacheState {
	t.Helper()
	var doc struct {
		Cache cacheState `json:"cache"`
	}
	if err := json.Unmarshal([]byte(adminGet(t, a.adminAddr(), "/status")), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Cache
}

// waitCacheState waits up to within for every replica's /status to show
// the shared cache in state.
func waitCacheState(t *testing.T, rs []*Authgress, state string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for _, a := range rs {
		for statusCache(t, a).State != state {
			if time.Since(start) > within {
				t.Fatalf("/status cache state is %q after %v, want %q", statusCache(t, a).State, within, state)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(start)
}

var keyNameRe = regexp.MustCompile(`^authgress:(tok|lock):[0-9a-f]{32}$`)

// assertDumpHoldsNothing dumps every key authgress wrote and greps it for
// every canary: the client secret and id, every token an upstream saw, the
// cache key and the Redis password; key names are hashes.
func assertDumpHoldsNothing(t *testing.T, r *Redis) {
	t.Helper()
	keys, dump := r.Dump()
	tokens := 0
	for _, k := range keys {
		if !keyNameRe.MatchString(k) {
			t.Errorf("key name %q is not prefix + kind + hash", k)
		}
		if strings.HasPrefix(k, "authgress:tok:") {
			tokens++
		}
	}
	if tokens == 0 {
		t.Fatalf("no token in Redis (keys %v): the dump proves nothing", keys)
	}
	assertNoCanary(t, "the Redis dump", dump)
	for _, clear := range []string{"proxy-client", "api:read", "Bearer"} {
		if strings.Contains(dump, clear) {
			t.Errorf("the Redis dump holds %q in clear", clear)
		}
	}
	n := 0
	seenTokens.Range(func(_, _ any) bool { n++; return true })
	t.Logf("Redis dump: %d keys (%d tokens), %d bytes, grepped for the client secret, the client id, the scope, %d tokens, the cache key, the Redis password",
		len(keys), tokens, len(dump), n)
}

// TestSharedCacheOneTokenRequestForThreeReplicas: 300 concurrent first
// requests spread over three replicas cause exactly one token request.
func TestSharedCacheOneTokenRequestForThreeReplicas(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	s := newSharedSetup(t)
	rs := s.replicas(t, 3, s.config(count.TokenURL(), up.Addr, ""))
	waitCacheState(t, rs, "up", 5*time.Second)
	clients := []*http.Client{rs[0].Client(), rs[1].Client(), rs[2].Client()}
	failed := burst(300, func(i int) *http.Client { return clients[i%3] }, "http://"+up.Addr+"/")
	if failed != 0 || count.n.Load() != 1 {
		t.Fatalf("failed requests %d, token requests %d (want 0 and 1)", failed, count.n.Load())
	}
	distinct := map[string]bool{}
	for _, a := range up.Auths() {
		distinct[a] = true
	}
	if len(distinct) != 1 {
		t.Fatalf("the upstream saw %d different tokens, want 1", len(distinct))
	}
	hits := int64(0)
	for _, a := range rs {
		st := statusCache(t, a)
		hits += st.Shared.Hits
		if st.Type != "redis" || st.State != "up" || st.Shared.Errors != 0 {
			t.Fatalf("/status cache: %+v", st)
		}
	}
	if hits != 2 {
		t.Fatalf("%d shared hits over the replicas, want 2 (the replicas that did not fetch)", hits)
	}
	// Every request is counted at the local level: a miss if it came before
	// its replica had the token, a hit if after (timing decides which).
	var sharedHits, localMisses, localHits float64
	for _, a := range rs {
		m := adminGet(t, a.adminAddr(), "/metrics")
		sharedHits += metricValue(t, m, "authgress_cache_requests_total", `level="shared"`, `result="hit"`)
		localMisses += metricValue(t, m, "authgress_cache_requests_total", `level="local"`, `result="miss"`)
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "authgress_cache_requests_total{") && strings.Contains(line, `level="local"`) && strings.Contains(line, `result="hit"`) {
				localHits += metricValue(t, line, "authgress_cache_requests_total")
			}
		}
	}
	if sharedHits != 2 || localMisses+localHits != 300 || localMisses < 3 {
		t.Fatalf("authgress_cache_requests_total: %v shared hits, %v local misses, %v local hits; want 2 shared hits and 300 local requests", sharedHits, localMisses, localHits)
	}
	t.Logf("300 concurrent first requests over 3 replicas: %d token request", count.n.Load())
	assertDumpHoldsNothing(t, s.redis)
}

// TestSharedCacheSteadyLoad: under steady load for three token lifetimes
// (3 s tokens), three replicas sharing Redis make about one token request
// per lifetime between them, like one replica, where three replicas
// without it make three times as many.
func TestSharedCacheSteadyLoad(t *testing.T) {
	const lifetime, lifetimes = 3, 3
	idp := startIdP(t, lifetime, "opaque")
	up := startUpstream(t)
	s := newSharedSetup(t)
	s.admin = false
	for _, tc := range []struct {
		name     string
		replicas int
		shared   bool
		min, max int64
	}{
		{"3 replicas, memory", 3, false, 3 * lifetimes, 3 * (lifetimes*10/7 + 2)},
		{"1 replica, redis", 1, true, lifetimes, lifetimes*10/7 + 2},
		{"3 replicas, redis", 3, true, lifetimes, lifetimes*10/7 + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := countTokenRequests(t, idp)
			cfg := s.config(count.TokenURL(), up.Addr, "")
			if !tc.shared {
				cfg = cfg[:strings.Index(cfg, "\n[cache]")]
			}
			rs := s.replicas(t, tc.replicas, cfg)
			l := runLoad(t, rs, "http://"+up.Addr+"/", 2, 10*time.Millisecond)
			time.Sleep(lifetimes * lifetime * time.Second)
			l.Stop()
			l.check(t, tc.name)
			n := count.n.Load()
			t.Logf("%s: %d requests over %d s (%d lifetimes of %d s): %d token requests, %.2f per lifetime",
				tc.name, l.ok.Load(), lifetimes*lifetime, lifetimes, lifetime, n, float64(n)/lifetimes)
			if n < tc.min || n > tc.max {
				t.Fatalf("%s: %d token requests in %d lifetimes, want %d to %d", tc.name, n, lifetimes, tc.min, tc.max)
			}
		})
	}
}

// TestSharedCacheRejectedTokenDroppedEverywhere: a 401 seen by replica A
// makes B and C stop sending the rejected token: their next request
// carries the new one, which A fetched (one token request), and the shared
// copy of the old token is gone.
func TestSharedCacheRejectedTokenDroppedEverywhere(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	up.Handle(introspecting(idp))
	s := newSharedSetup(t)
	rs := s.replicas(t, 3, s.config(count.TokenURL(), up.Addr, ""))
	for i, a := range rs {
		if resp, body := a.Get("http://" + up.Addr + "/warm"); resp.StatusCode != 200 {
			t.Fatalf("replica %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := count.n.Load(); n != 1 {
		t.Fatalf("%d token requests for three replicas, want 1", n)
	}
	old := up.Auths()[0]
	idp.Revoke(strings.TrimPrefix(old, "Bearer "))

	// A: 401, a new token, the request replayed.
	resp, body := rs[0].Get("http://" + up.Addr + "/a")
	if resp.StatusCode != 200 {
		t.Fatalf("replica A after the revocation: %d %s", resp.StatusCode, body)
	}
	rejectedAt := time.Now()
	auths := up.Auths()
	fresh := auths[len(auths)-1]
	if auths[len(auths)-2] != old || fresh == old {
		t.Fatal("replica A did not replay with a new token")
	}
	// B and C drop the rejected token within a second.
	for i, a := range rs[1:] {
		a.WaitLog(func(l map[string]any) bool { return l["msg"] == "token dropped: another replica saw it rejected" })
		if d := time.Since(rejectedAt); d > time.Second {
			t.Fatalf("replica %c dropped the rejected token after %v", 'B'+i, d)
		}
	}
	before := len(up.Auths())
	for i, a := range rs[1:] {
		if resp, body := a.Get("http://" + up.Addr + "/next"); resp.StatusCode != 200 {
			t.Fatalf("replica %c: %d %s", 'B'+i, resp.StatusCode, body)
		}
	}
	for i, got := range up.Auths()[before:] {
		if got != fresh {
			t.Fatalf("replica %c's next request carried %s token, want the new one", 'B'+i, map[bool]string{true: "the rejected", false: "another"}[got == old])
		}
	}
	if n := count.n.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2 (the first, and A's after the 401)", n)
	}
	// The throttle holds per replica: B has forced no refresh, so a 401 on
	// B still replays; A has, so a second 401 on A goes to the client.
	idp.Revoke(strings.TrimPrefix(fresh, "Bearer "))
	if resp, _ := rs[0].Get("http://" + up.Addr + "/a2"); resp.StatusCode != 401 {
		t.Fatalf("replica A's second forced refresh within min_refresh_interval: %d, want the 401", resp.StatusCode)
	}
	if resp, _ := rs[1].Get("http://" + up.Addr + "/b2"); resp.StatusCode != 200 {
		t.Fatalf("replica B's first forced refresh: %d, want 200", resp.StatusCode)
	}
	t.Logf("401 on A: B and C dropped the token within %v; token requests %d", time.Since(rejectedAt).Round(time.Millisecond), count.n.Load())
	assertDumpHoldsNothing(t, s.redis)
}

// TestSharedCacheRedisKilledUnderLoad: Redis killed under load → no request
// fails (each replica uses its own cache and fetches its own tokens);
// restarted → sharing resumes within seconds, and token requests are back
// to about one per lifetime.
func TestSharedCacheRedisKilledUnderLoad(t *testing.T) {
	const lifetime = 3
	idp := startIdP(t, lifetime, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	s := newSharedSetup(t)
	rs := s.replicas(t, 3, s.config(count.TokenURL(), up.Addr, ""))
	l := runLoad(t, rs, "http://"+up.Addr+"/", 2, 10*time.Millisecond)
	time.Sleep(time.Second)

	s.redis.Kill()
	down := count.n.Load()
	time.Sleep(2 * lifetime * time.Second)
	l.check(t, "with Redis killed")
	whileDown := count.n.Load() - down
	for _, a := range rs {
		if st := statusCache(t, a); st.State != "down" {
			t.Fatalf("/status cache state %q with Redis killed", st.State)
		}
	}

	s.redis.Start()
	took := waitCacheState(t, rs, "up", 5*time.Second)
	time.Sleep(lifetime * time.Second) // the replicas' own tokens reach their refresh points
	from := count.n.Load()
	time.Sleep(3 * lifetime * time.Second)
	l.Stop()
	l.check(t, "after Redis returned")
	after := count.n.Load() - from
	t.Logf("Redis killed for %d s: %d token requests (each replica alone), %d requests, none failed; back: shared again after %v, then %d token requests in 3 lifetimes",
		2*lifetime, whileDown, l.ok.Load(), took.Round(time.Millisecond), after)
	if after > 3*10/7+2 {
		t.Fatalf("%d token requests in 3 lifetimes after Redis returned: sharing did not resume", after)
	}
}

// TestSharedCacheRedisStalled: Redis frozen (SIGSTOP: connections are
// accepted, nothing answers) → a request that needs the shared level waits
// at most about the configured timeout (250ms) before its replica fetches
// alone, requests served from the local cache do not wait at all, and
// nothing hangs.
func TestSharedCacheRedisStalled(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	s := newSharedSetup(t)
	s.timeout = "250ms"
	// A second connection with its own scopes: a token slot never used
	// before the stall, so its first request must go to the shared level.
	extra := fmt.Sprintf("\n[connections.other]\nhosts = [\"localhost:%s\"]\ncredential = \"app\"\nscopes = [\"api:write\"]\nprofile = \"upstream\"\n", port)
	rs := s.replicas(t, 3, s.config(count.TokenURL(), up.Addr, extra))
	for _, a := range rs {
		if resp, _ := a.Get("http://" + up.Addr + "/warm"); resp.StatusCode != 200 {
			t.Fatal("warm-up failed")
		}
	}
	l := runLoad(t, rs, "http://"+up.Addr+"/", 2, 10*time.Millisecond)
	s.redis.Stall(5 * time.Second)
	time.Sleep(200 * time.Millisecond)

	var firstMiss time.Duration
	for i, a := range rs {
		start := time.Now()
		resp, body := a.Get("http://localhost:" + port + "/other")
		took := time.Since(start)
		if resp.StatusCode != 200 {
			t.Fatalf("replica %d, first request of a new token slot during the stall: %d %s", i, resp.StatusCode, body)
		}
		firstMiss = max(firstMiss, took)
	}
	time.Sleep(4 * time.Second)
	l.Stop()
	l.check(t, "with Redis stalled")
	t.Logf("Redis stalled 5 s: a local miss took at most %v (timeout 250ms); %d cached-token requests, slowest %v",
		firstMiss.Round(time.Millisecond), l.ok.Load(), l.maxLatency.Round(time.Millisecond))
	if firstMiss > 250*time.Millisecond+750*time.Millisecond {
		t.Fatalf("a local miss took %v with Redis stalled: not bounded by the 250ms timeout", firstMiss)
	}
	if l.maxLatency > time.Second {
		t.Fatalf("a request served from the local cache took %v with Redis stalled", l.maxLatency)
	}
	waitCacheState(t, rs, "up", 5*time.Second)
}

// TestCheckCacheSection: `authgress check` reports every mistake in
// [cache] with its line and key path, refuses a key file that is not 32
// bytes of base64 without printing it, and accepts a good [cache] without
// needing Redis.
func TestCheckCacheSection(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "secrets.toml"), []byte("[app]\nclient_id='a'\nclient_secret='b'\n"), 0o600)
	base := strings.ReplaceAll(config("https://login.example.com/token", "api.example.com", ""), "{{SECRETS}}", "secrets.toml")
	base = strings.ReplaceAll(base, "[profiles.upstream]\nca = \"{{CA}}\"\n", "[profiles.upstream]\n")
	bad := base + `
[cache]
type = "redis"
url = "redis://:inline-password-canary@127.0.0.1:6379/0"
key = { file = "missing-key-file" }
profile = "upstream"
timeout = 250
`
	path := filepath.Join(dir, "bad.toml")
	_ = os.WriteFile(path, []byte(bad), 0o600)
	code, out := runCheck(t, path)
	if code != 1 || strings.Contains(out, "inline-password-canary") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	lines := strings.Split(bad, "\n")
	lineOf := func(prefix string) int { // in [cache]
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.HasPrefix(lines[i], prefix) {
				return i + 1
			}
		}
		return 0
	}
	for _, want := range []string{
		fmt.Sprintf("bad.toml:%d:1: error: cache.url: must not carry credentials", lineOf("url = \"redis://")),
		fmt.Sprintf("bad.toml:%d:1: error: cache.key: secret", lineOf("key = ")),
		fmt.Sprintf("bad.toml:%d:1: error: cache.profile: a profile is the TLS to Redis: it needs a rediss:// url", lineOf("profile = \"upstream\"")),
		fmt.Sprintf("bad.toml:%d:1: error: cache.timeout: durations are strings", lineOf("timeout = 250")),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	// A key of the wrong length: refused at the build step, without its value.
	keyFile := filepath.Join(dir, "cache-key")
	short := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	_ = os.WriteFile(keyFile, []byte(short+"\n"), 0o600)
	good := base + fmt.Sprintf("\n[cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:%d/0\"\nkey = { file = %q }\n", freePort(t), keyFile)
	_ = os.WriteFile(path, []byte(good), 0o600)
	code, out = runCheck(t, path)
	if code != 1 || !strings.Contains(out, "cache.key (file:"+keyFile+"): the cache key decodes to 16 bytes, want 32") || strings.Contains(out, short) {
		t.Fatalf("short key: exit %d:\n%s", code, out)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	_ = os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	code, out = runCheck(t, path)
	if code != 0 || strings.Contains(out, base64.StdEncoding.EncodeToString(key)) {
		t.Fatalf("good [cache] (Redis not running): exit %d:\n%s", code, out)
	}
}

// startSentinel runs a Redis Sentinel (redis-server --sentinel) that
// monitors r as master "tokens", and returns its address.
func startSentinel(t *testing.T, r *Redis) string {
	t.Helper()
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor tokens 127.0.0.1 %d 1\nsentinel auth-pass tokens %s\n", port, r.Port, r.Password)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &testlog.Buffer{}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, _ := exec.Command("redis-cli", "-p", fmt.Sprint(port), "SENTINEL", "get-master-addr-by-name", "tokens").Output()
		if strings.Contains(string(out), fmt.Sprint(r.Port)) {
			return fmt.Sprintf("127.0.0.1:%d", port)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinel does not know the master:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSharedCacheThroughSentinel: with addrs + master_name, the replicas
// find Redis through a Sentinel and share as with url.
func TestSharedCacheThroughSentinel(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	s := newSharedSetup(t)
	sentinel := startSentinel(t, s.redis)
	cfg := strings.Replace(s.config(count.TokenURL(), up.Addr, ""), fmt.Sprintf("url = \"redis://127.0.0.1:%d/0\"", s.redis.Port),
		fmt.Sprintf("addrs = [%q]\nmaster_name = \"tokens\"", sentinel), 1)
	rs := s.replicas(t, 2, cfg)
	waitCacheState(t, rs, "up", 5*time.Second)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rs[i%2].Client().Get("http://" + up.Addr + "/")
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || count.n.Load() != 1 {
		t.Fatalf("through the Sentinel: %d failed, %d token requests (want 0 and 1)", failed.Load(), count.n.Load())
	}
	keys, _ := s.redis.Dump()
	if len(keys) == 0 {
		t.Fatal("nothing in the master behind the Sentinel")
	}
}

// TestSharedCacheOverMutualTLS: rediss:// with a profile (the CA and a
// client certificate) to a Redis that requires client certificates; a
// profile without the client certificate is refused by Redis, and the
// replicas then serve alone.
func TestSharedCacheOverMutualTLS(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		needed(t, "redis-server is needed for the shared token cache tests (apt-get install redis-server)")
	}
	p := getPKI(t)
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "authgress-redis-client", nil, nil)
	r := &Redis{t: t, Port: freePort(t), Dir: t.TempDir(), Password: "redis-pw-" + randomHex(12), log: &testlog.Buffer{},
		tlsConf: []string{"tls-cert-file " + p.serverCertFile, "tls-key-file " + p.serverKeyFile, "tls-ca-cert-file " + p.caFile, "tls-auth-clients yes"},
		tlsCLI:  []string{"--tls", "--cacert", p.caFile, "--cert", cert, "--key", key}}
	extraCanaries.Store("the Redis password", r.Password)
	r.Start()
	t.Cleanup(r.Kill)
	s := newSharedSetup(t)
	s.redis.Kill()
	s.redis = r

	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	for _, tc := range []struct {
		profile      string
		state        string
		tokenFetches int64
	}{
		{fmt.Sprintf("ca = %q\ncert = %q\nkey = %q\n", p.caFile, cert, key), "up", 1},
		{fmt.Sprintf("ca = %q\n", p.caFile), "down", 2}, // no client certificate: Redis refuses
	} {
		count := countTokenRequests(t, idp)
		cfg := strings.Replace(s.config(count.TokenURL(), up.Addr, ""), fmt.Sprintf("url = \"redis://127.0.0.1:%d/0\"", r.Port),
			fmt.Sprintf("url = \"rediss://127.0.0.1:%d/0\"\nprofile = \"redis_tls\"", r.Port), 1) + "\n[profiles.redis_tls]\n" + tc.profile
		rs := s.replicas(t, 2, cfg)
		for i, a := range rs {
			if resp, body := a.Get("http://" + up.Addr + "/"); resp.StatusCode != 200 {
				t.Fatalf("replica %d: %d %s", i, resp.StatusCode, body)
			}
		}
		waitCacheState(t, rs, tc.state, 5*time.Second)
		if n := count.n.Load(); n != tc.tokenFetches {
			t.Fatalf("Redis over TLS, %s: %d token requests, want %d", tc.state, n, tc.tokenFetches)
		}
		for _, a := range rs {
			_ = a.Terminate(10 * time.Second)
		}
	}
	if keys, _ := r.Dump(); len(keys) == 0 {
		t.Fatal("nothing stored over TLS")
	}
}
