package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/authgress/authgress/intercept"
)

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func (h *harness) header() {
	h.printf("# authgress benchmark run, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	h.printf("- machine: %d cores (%s), %s; load generator, upstreams and proxies share it\n", runtime.NumCPU(), cpuModel(), runtime.Version())
	h.printf("- load: `wrk -t%d -c%d -d%s --latency`, %d interleaved rounds after a 1 s warm-up per row; medians\n", *threads, *conns, *duration, *rounds)
	h.printf("- proxy CPU: utime+stime of the proxy's process tree (/proc/PID/stat) over the measurement ÷ requests\n\n")
}

func (h *harness) plainRows() error {
	h.printf("## Plain HTTP upstream (nginx), c=%d\n\n", *conns)
	h.printf("`net/http forward bare` is `bench/nethttp-bare`: a net/http handler forwarding through one `http.Transport` with a static `Authorization` and pooled copy buffers, no goproxy: the floor of a forward proxy on net/http.\n\n")
	target := "http://" + upPlain + "/"
	direct := &row{name: "direct (no proxy)", target: target}
	floor := &row{name: "goproxy-bare", target: target, proxy: "http://" + gpBare, pid: pids["goproxy-bare"]}
	rows := []*row{
		direct,
		{name: "authgress", target: target, proxy: "http://" + agLog, pid: pids["authgress"]},
		{name: "authgress, access log off", target: target, proxy: "http://" + agNoLog, pid: pids["authgress-nolog"]},
		floor,
		{name: "net/http forward bare (no goproxy)", target: target, proxy: "http://" + nethttpBare, pid: pids["nethttp-bare"]},
		{name: "nginx reverse, static header", target: "http://" + nginxRev + "/", pid: pids["nginx-reverse"]},
		{name: "squid forward, static header", target: target, proxy: "http://" + squidAddr, pid: pids["squid"]},
	}
	if *smokeBin != "" {
		rows = append(rows, &row{name: "smokescreen forward, no header", target: target, proxy: "http://" + smokescreen, pid: pids["smokescreen"]})
	}
	if *abEnv != "" || *abBin != "" {
		name := "authgress, " + *abEnv
		if *abBin != "" {
			name = strings.TrimSpace(name + " " + filepath.Base(*abBin))
		}
		rows = append(rows[:2], append([]*row{{name: name, target: target, proxy: "http://" + agAB, pid: pids["authgress-ab"]}}, rows[2:]...)...)
	}
	if err := h.measure(rows, *conns, *threads); err != nil {
		return err
	}
	h.table(rows, direct, floor)
	return nil
}

func (h *harness) mtlsRows() error {
	h.printf("## mTLS upstream (nginx `ssl_verify_client on`), c=%d\n\n", *conns)
	h.printf("wrk cannot present a client certificate, so there is no direct row; squid cannot upgrade a plain forward request to an mTLS origin, so it has none either.\n\n")
	target := "http://" + upMTLS + "/"
	floor := &row{name: "goproxy-bare (mTLS transport)", target: target, proxy: "http://" + gpBareMTLS, pid: pids["goproxy-bare-mtls"]}
	rows := []*row{
		{name: "authgress", target: target, proxy: "http://" + agLog, pid: pids["authgress"]},
		{name: "authgress, access log off", target: target, proxy: "http://" + agNoLog, pid: pids["authgress-nolog"]},
		floor,
		{name: "nginx reverse, static header", target: "http://" + nginxRevMTLS + "/", pid: pids["nginx-reverse"]},
	}
	if err := h.measure(rows, *conns, *threads); err != nil {
		return err
	}
	h.table(rows, nil, floor)
	return nil
}

// reverseRows: authgress's reverse listener against a bare
// httputil.ReverseProxy (with a buffer pool), both to the plain upstream.
func (h *harness) reverseRows() error {
	h.printf("## Reverse listener (plain HTTP upstream), c=%d\n\n", *conns)
	h.printf("wrk sends origin-form requests straight to each listener. The floor is `bench/reverse-bare`: net/http's `httputil.ReverseProxy` with a buffer pool and a static `Authorization`.\n\n")
	target := "/"
	floor := &row{name: "httputil.ReverseProxy bare", target: "http://" + revBare + target, pid: pids["reverse-bare"]}
	rows := []*row{
		{name: "authgress reverse listener", target: "http://" + agRevLog + target, pid: pids["authgress"]},
		{name: "authgress reverse, access log off", target: "http://" + agRevNoLog + target, pid: pids["authgress-nolog"]},
		floor,
		{name: "nginx reverse, static header", target: "http://" + nginxRev + target, pid: pids["nginx-reverse"]},
	}
	if err := h.measure(rows, *conns, *threads); err != nil {
		return err
	}
	h.tableVs(rows, nil, floor, "bare ReverseProxy")
	return nil
}

// interceptRows compares intercepted https:// requests on kept-alive
// tunnels with the plain http:// path, on one authgress process, one
// upstream (the mTLS nginx) and one load generator (bench/tunnelload, since
// wrk cannot CONNECT).
func (h *harness) interceptRows() error {
	h.printf("## Intercepted CONNECT vs the plain http:// path, c=%d\n\n", *conns)
	h.printf("One authgress (access log off, `[intercept]` configured), the mTLS nginx upstream, and the same Go client for every row (`bench/tunnelload`: one kept-alive connection — for https, one tunnel — per client). The intercepted row pays for a second TLS session (client ↔ authgress) on every request.\n\n")
	certPEM, keyPEM, err := intercept.NewCA("bench interception CA", 48*time.Hour)
	if err != nil {
		return err
	}
	ca, key := filepath.Join(h.dir, "intercept-ca.pem"), filepath.Join(h.dir, "intercept-ca-key.pem")
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		return err
	}
	extra := fmt.Sprintf("\n[intercept]\nca_cert = %q\nca_key = %q\n", ca, key)
	pid, err := h.authgress("authgress-intercept", authgressConfig(agIntercept, "http://"+tokenAddr+"/token", pkiFilesFrom(h.dir), false, extra))
	if err != nil {
		return err
	}
	if err := waitHTTP("http://"+upMTLS+"/", "http://"+agIntercept); err != nil {
		return err
	}
	rssStart := rssKB(pid)
	plain := &row{name: "plain http:// (absolute URI)", target: "http://" + upMTLS + "/", proxy: "http://" + agIntercept, pid: pid, tunnelload: true, ca: ca}
	kept := &row{name: "intercepted https:// (CONNECT, kept alive)", target: "https://" + upMTLS + "/", proxy: "http://" + agIntercept, pid: pid, tunnelload: true, ca: ca}
	rows := []*row{plain, kept}
	if err := h.measure(rows, *conns, *threads); err != nil {
		return err
	}
	h.printf("| row | req/s | p50 ms | p99 ms | proxy CPU µs/req | req/s ÷ plain | CPU ÷ plain | errors |\n|---|---|---|---|---|---|---|---|\n")
	rps := func(x result) float64 { return x.rps }
	cpu := func(x result) float64 { return x.cpuPerReq }
	p50 := func(x result) float64 { return x.p50 }
	p99 := func(x result) float64 { return x.p99 }
	for _, r := range rows {
		errs := ""
		for _, x := range r.results {
			errs = strings.TrimSpace(errs + " " + x.errors)
		}
		h.printf("| %s | %.0f | %.2f | %.2f | %.1f | %.2f× | %.2f× | %s |\n", r.name, r.med(rps), r.med(p50), r.med(p99), r.med(cpu),
			r.med(rps)/plain.med(rps), r.med(cpu)/plain.med(cpu), errs)
	}
	h.printf("\n")
	if err := h.heldTunnels(pid, ca, rssStart); err != nil {
		return err
	}
	return h.newTunnels(pid, ca)
}

// newTunnels reports what a new intercepted tunnel costs: CONNECT, the TLS
// handshake with the (already cached) leaf and the first request, measured
// by tunnelload -new (every request on a tunnel of its own), against a
// request on a kept-alive tunnel, interleaved on the same process. It runs
// after heldTunnels, so that the churn of handshakes does not leave freed
// heap for the held tunnels to reuse.
func (h *harness) newTunnels(pid int, ca string) error {
	kept := &row{name: "kept-alive tunnel, beside the new ones", target: "https://" + upMTLS + "/", proxy: "http://" + agIntercept, pid: pid, tunnelload: true, ca: ca}
	rows := []*row{
		{name: "new tunnel per request (CONNECT + full TLS handshake + GET)", target: kept.target, proxy: kept.proxy, pid: pid, tunnelload: true, ca: ca,
			tunnelArgs: []string{"-new"}},
		{name: "new tunnel per request, client keeps a TLS session cache", target: kept.target, proxy: kept.proxy, pid: pid, tunnelload: true, ca: ca,
			tunnelArgs: []string{"-new", "-resume"}},
	}
	if err := h.measure(append([]*row{kept}, rows...), *conns, *threads); err != nil {
		return err
	}
	h.printf("### A new intercepted tunnel, c=%d\n\n", *conns)
	h.printf("A new tunnel per request: each of the %d clients opens a CONNECT, does a TLS handshake with authgress's leaf (minted before the run and cached), sends one GET and closes; latency is that of the whole. Without a session cache every handshake is a full one; the last row's client offers to resume (the column says how many handshakes did). The upstream connection (authgress → nginx) stays pooled.\n\n", *conns)
	h.printf("| row | tunnels/s | p50 ms (setup + request) | p99 ms | authgress CPU µs per new tunnel | ÷ a kept-alive request | CPU of the setup (− a kept-alive request) µs | resumed handshakes | errors |\n|---|---|---|---|---|---|---|---|---|\n")
	rps := func(x result) float64 { return x.rps }
	cpu := func(x result) float64 { return x.cpuPerReq }
	p50 := func(x result) float64 { return x.p50 }
	p99 := func(x result) float64 { return x.p99 }
	h.printf("| kept-alive tunnel (a request, measured in the same rounds) | %.0f req/s | %.2f | %.2f | %.1f per request | 1.00× | — | — | |\n", kept.med(rps), kept.med(p50), kept.med(p99), kept.med(cpu))
	for _, r := range rows {
		errs := ""
		var tunnels, resumed float64
		for _, x := range r.results {
			errs = strings.TrimSpace(errs + " " + x.errors)
			tunnels += x.requests
			resumed += x.resumed
		}
		h.printf("| %s | %.0f | %.2f | %.2f | %.1f | %.1f× | %.1f | %.0f of %.0f | %s |\n", r.name, r.med(rps), r.med(p50), r.med(p99), r.med(cpu),
			r.med(cpu)/kept.med(cpu), r.med(cpu)-kept.med(cpu), resumed, tunnels, errs)
	}
	h.printf("\n")
	return nil
}

// heldTunnels: RSS of the intercepting authgress while it holds 1,000
// intercepted tunnels, each with its TLS handshake and one request done and
// kept alive, against its RSS just before they were opened.
func (h *harness) heldTunnels(pid int, ca string, rssStart int) error {
	const n = 1000
	time.Sleep(2 * time.Second) // let the load rows' connections close
	before := rssKB(pid)
	cmd := exec.Command(h.bins["tunnelload"], "-proxy", agIntercept, "-target", "https://"+upMTLS+"/", "-ca", ca,
		"-c", strconv.Itoa(n), "-hold", "5s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	opened, failed, holding, held := 0, 0, 0, 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "open=%d failed=%d", &opened, &failed); err == nil {
			time.Sleep(2 * time.Second)
			holding = rssKB(pid)
			held = openSockets(pid)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("tunnelload -hold: %v", err)
	}
	h.printf("| intercepted tunnels held (TLS done, one request each, kept alive) | failed | authgress sockets while held | RSS at start | RSS before opening them | RSS holding them | per tunnel |\n|---|---|---|---|---|---|---|\n")
	h.printf("| %d | %d | %d | %.1f MiB | %.1f MiB | %.1f MiB | %.1f KiB |\n\n", opened, failed, held, float64(rssStart)/1024, float64(before)/1024,
		float64(holding)/1024, float64(holding-before)/float64(max(opened, 1)))
	return nil
}

// openSockets counts the sockets a process has open.
func openSockets(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

func (h *harness) latencyRows() error {
	h.printf("## Unloaded latency (one connection: `wrk -t1 -c1`)\n\n")
	target := "http://" + upPlain + "/"
	direct := &row{name: "direct (no proxy)", target: target}
	floor := &row{name: "goproxy-bare", target: target, proxy: "http://" + gpBare, pid: pids["goproxy-bare"]}
	rows := []*row{direct,
		{name: "authgress", target: target, proxy: "http://" + agLog, pid: pids["authgress"]},
		{name: "authgress, access log off", target: target, proxy: "http://" + agNoLog, pid: pids["authgress-nolog"]},
		floor,
		{name: "nginx reverse, static header", target: "http://" + nginxRev + "/", pid: pids["nginx-reverse"]},
	}
	if err := h.measure(rows, 1, 1); err != nil {
		return err
	}
	h.table(rows, direct, floor)
	return nil
}

func tokenCount(addr string) (int, error) {
	resp, err := http.Get("http://" + addr + "/count")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// tokenLoad: with short token lifetimes and many clients, token requests
// must follow the lifetime, not the load.
func (h *harness) tokenLoad() error {
	h.printf("## Token endpoint load\n\n")
	h.printf("| token lifetime | clients | proxied requests | token requests | per 100,000 requests | lifetime-driven expectation |\n|---|---|---|---|---|---|\n")
	ttlPids := map[int]int{}
	for i, ttl := range []int{2, 10} {
		addr := fmt.Sprintf("127.0.0.1:%d", 18410+i)
		if _, err := h.start(fmt.Sprintf("tokenserver-%ds", ttl), []string{h.bins["tokenserver"], "-listen", addr, "-ttl", strconv.Itoa(ttl)}); err != nil {
			return err
		}
		listen := fmt.Sprintf("127.0.0.1:%d", 18120+i)
		pid, err := h.authgress(fmt.Sprintf("authgress-ttl%d", ttl), authgressConfig(listen, "http://"+addr+"/token", pkiFilesFrom(h.dir), false, ""))
		if err != nil {
			return err
		}
		ttlPids[ttl] = pid
		if err := waitHTTP("http://"+upPlain+"/", "http://"+listen); err != nil {
			return err
		}
		before, err := tokenCount(addr)
		if err != nil {
			return err
		}
		d := 20 * time.Second
		res, err := h.wrk("http://"+upPlain+"/", "http://"+listen, nil, 256, 2, d)
		if err != nil {
			return err
		}
		after, _ := tokenCount(addr)
		n := after - before
		expect := d.Seconds() / (0.775 * float64(ttl))
		h.printf("| %d s | 256 | %.0f | %d | %.1f | about %.0f (one per ~%.1f s) |\n", ttl, res.requests, n, float64(n)/res.requests*100000, expect, 0.775*float64(ttl))
	}
	h.printf("\n")
	return h.refreshLatency(ttlPids[2])
}

// refreshLatency: the plain forward path at c=64 while the token refreshes
// every ~1.6 s (2 s lifetime) against the same config with a 300 s token
// (no refresh during the run), interleaved; the goal is p99 within
// ±10%.
func (h *harness) refreshLatency(pid2 int) error {
	const long = 300
	addr := "127.0.0.1:18412"
	if _, err := h.start("tokenserver-300s", []string{h.bins["tokenserver"], "-listen", addr, "-ttl", strconv.Itoa(long)}); err != nil {
		return err
	}
	listen := "127.0.0.1:18122"
	pid, err := h.authgress("authgress-ttl300", authgressConfig(listen, "http://"+addr+"/token", pkiFilesFrom(h.dir), false, ""))
	if err != nil {
		return err
	}
	if err := waitHTTP("http://"+upPlain+"/", "http://"+listen); err != nil {
		return err
	}
	short, longRow := &row{name: "2 s token", target: "http://" + upPlain + "/", proxy: "http://127.0.0.1:18120", pid: pid2},
		&row{name: "300 s token", target: "http://" + upPlain + "/", proxy: "http://" + listen, pid: pid}
	b2, _ := tokenCount("127.0.0.1:18410")
	b300, _ := tokenCount(addr)
	t0 := time.Now()
	if err := h.measure([]*row{short, longRow}, *conns, *threads); err != nil {
		return err
	}
	span := time.Since(t0).Seconds()
	a2, _ := tokenCount("127.0.0.1:18410")
	a300, _ := tokenCount(addr)
	h.printf("Latency while the token refreshes: the same authgress config (access log off) against a token endpoint issuing 2 s tokens and one issuing %d s tokens, c=%d, interleaved (%d rounds of %s, medians). Token requests are counted over the whole comparison (%.0f s, warm-ups included).\n\n", long, *conns, *rounds, *duration, span)
	h.printf("| token lifetime | req/s | p50 ms | p99 ms | proxy CPU µs/req | p99 ÷ %d s row | token requests | per-round p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|\n", long)
	rps := func(x result) float64 { return x.rps }
	p50 := func(x result) float64 { return x.p50 }
	p99 := func(x result) float64 { return x.p99 }
	cpu := func(x result) float64 { return x.cpuPerReq }
	for i, r := range []*row{short, longRow} {
		n := a2 - b2
		if i == 1 {
			n = a300 - b300
		}
		var per []string
		errs := ""
		for _, x := range r.results {
			per = append(per, fmt.Sprintf("%.2f", x.p99))
			errs = strings.TrimSpace(errs + " " + x.errors)
		}
		h.printf("| %s | %.0f | %.3f | %.2f | %.1f | %.2f | %d | %s | %s |\n", r.name, r.med(rps), r.med(p50), r.med(p99), r.med(cpu),
			r.med(p99)/longRow.med(p99), n, strings.Join(per, ", "), errs)
	}
	h.printf("\n")
	return nil
}

func pkiFilesFrom(dir string) pkiFiles {
	return pkiFiles{ca: filepath.Join(dir, "ca.pem"), serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem")}
}

// scale: startup time and RSS with 10,000 connections, per-request cost
// beside a one-connection config, and RSS with 10,000 idle keep-alive clients.
func (h *harness) scale() error {
	h.printf("## Scale\n\n")
	var extra strings.Builder
	for i := 0; i < 10000; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&extra, "\n[connections.svc%d]\nhosts = [\"api%d.svc%d.example.test\"]\ncredential = \"api\"\n", i, i, i)
		case 1:
			fmt.Fprintf(&extra, "\n[connections.svc%d]\nhosts = [\"api%d.svc%d.example.test:8443\"]\ncredential = \"api\"\n", i, i, i)
		default:
			fmt.Fprintf(&extra, "\n[connections.svc%d]\nhosts = [\"*.svc%d.example.net\"]\ncredential = \"api\"\nscopes = [\"svc%d\"]\n", i, i, i)
		}
	}
	cfgPath := filepath.Join(h.dir, "authgress-10k.toml")
	listen := "127.0.0.1:18130"
	if err := os.WriteFile(cfgPath, []byte(authgressConfig(listen, "http://"+tokenAddr+"/token", pkiFilesFrom(h.dir), false, extra.String())), 0o644); err != nil {
		return err
	}
	// Startup time: from exec to the listener answering, three times.
	var starts []float64
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		cmd := exec.Command(h.bins["authgress"], "run", "--config", cfgPath)
		cmd.Env = append(os.Environ(), "BENCH_CLIENT_ID=bench", "BENCH_CLIENT_SECRET=bench-secret")
		if err := cmd.Start(); err != nil {
			return err
		}
		for {
			if resp, err := http.Get("http://" + listen + "/"); err == nil {
				resp.Body.Close()
				break
			}
			if time.Since(t0) > 60*time.Second {
				_ = cmd.Process.Kill()
				return fmt.Errorf("authgress with 10,000 connections did not start")
			}
			time.Sleep(5 * time.Millisecond)
		}
		starts = append(starts, time.Since(t0).Seconds()*1000)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	pid, err := h.authgress("authgress-10k", mustRead(cfgPath))
	if err != nil {
		return err
	}
	if err := waitHTTP("http://"+upPlain+"/", "http://"+listen); err != nil {
		return err
	}
	rssStart := rssKB(pid)
	rows := []*row{
		{name: "authgress, 2 connections", target: "http://" + upPlain + "/", proxy: "http://" + agNoLog, pid: pids["authgress-nolog"]},
		{name: "authgress, 10,002 connections", target: "http://" + upPlain + "/", proxy: "http://" + listen, pid: pid},
	}
	if err := h.measure(rows, *conns, *threads); err != nil {
		return err
	}
	h.printf("| config | startup (exec → serving), median of 3 | RSS after start | RSS after load | req/s | proxy CPU µs/req |\n|---|---|---|---|---|---|\n")
	rps := func(x result) float64 { return x.rps }
	cpu := func(x result) float64 { return x.cpuPerReq }
	h.printf("| 2 connections | — | — | %d MiB | %.0f | %.1f |\n", rssKB(pids["authgress-nolog"])/1024, rows[0].med(rps), rows[0].med(cpu))
	h.printf("| 10,002 connections (exact, exact:port, wildcard; 6,668 token slots) | %.0f ms | %d MiB | %d MiB | %.0f | %.1f |\n\n",
		median(starts), rssStart/1024, rssKB(pid)/1024, rows[1].med(rps), rows[1].med(cpu))

	// 10,000 idle keep-alive client connections: RSS measured while held.
	before := rssKB(pids["authgress-nolog"])
	idle := exec.Command(h.bins["idleconns"], "-proxy", agNoLog, "-target", "http://"+upPlain+"/", "-n", "10000", "-hold", "3s")
	stdout, err := idle.StdoutPipe()
	if err != nil {
		return err
	}
	if err := idle.Start(); err != nil {
		return err
	}
	opened, holding := 0, 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "open="); ok {
			opened, _ = strconv.Atoi(n)
			time.Sleep(time.Second)
			holding = rssKB(pids["authgress-nolog"])
		}
	}
	if err := idle.Wait(); err != nil {
		return fmt.Errorf("idleconns: %v", err)
	}
	h.printf("| idle keep-alive client connections | authgress RSS before | RSS holding them | per connection |\n|---|---|---|---|\n")
	h.printf("| %d | %d MiB | %d MiB | %.1f KiB |\n\n", opened, before/1024, holding/1024, float64(holding-before)/float64(max(opened, 1)))
	return nil
}

func mustRead(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// agentRows: what one more hop costs, a gateway in front of an agent over
// mTLS, against the same hop between two goproxy-bare. All rows go to the
// plain upstream at c=conns; a chain's CPU is that of both processes.
func (h *harness) agentRows() error {
	h.printf("## Gateway → agent over mTLS: the added cost per hop, c=%d\n\n", *conns)
	h.printf("The gateway is an authgress whose connection has `via` a cluster of one node (no credential of its own); the node is a second authgress with `[server.tls]` and `client_ca` (the agent listener), which injects the token and calls the plain upstream. The gateway presents a client certificate from the bench CA. The goproxy chain is the same shape: a first goproxy-bare (no header) whose `Tr.Proxy` is a second goproxy-bare serving TLS with client certificates (ALPN http/1.1), which sets the static header. Access log on in all three authgress processes. CPU of a chain is the sum of its two processes (gateway + agent, first + second).\n\n")
	p := pkiFilesFrom(h.dir)
	tokenURL := "http://" + tokenAddr + "/token"
	agentPid, err := h.authgress("authgress-agent", authgressConfig(agAgent, tokenURL, p, true,
		fmt.Sprintf("\n[server.tls]\ncert = %q\nkey = %q\nclient_ca = %q\n", p.serverCert, p.serverKey, p.ca)))
	if err != nil {
		return err
	}
	gwPid, err := h.authgress("authgress-gateway", fmt.Sprintf(`[server]
listen = %q

[log]
access = true

[profiles.agents]
cert = %q
key = %q
ca = %q

[clusters.bench]
profile = "agents"
nodes = [{ name = "a1", url = "https://%s" }]

[connections.plain]
hosts = [%q]
via = "bench"
allow_insecure = true
`, agGateway, p.clientCert, p.clientKey, p.ca, agAgent, upPlain))
	if err != nil {
		return err
	}
	second, err := h.start("goproxy-bare-chain2", []string{h.bins["goproxy-bare"], "-listen", gpChain2,
		"-tls-cert", p.serverCert, "-tls-key", p.serverKey, "-client-ca", p.ca})
	if err != nil {
		return err
	}
	first, err := h.start("goproxy-bare-chain1", []string{h.bins["goproxy-bare"], "-listen", gpChain1, "-token", "",
		"-upstream-proxy", "https://" + gpChain2, "-cert", p.clientCert, "-key", p.clientKey, "-ca", p.ca})
	if err != nil {
		return err
	}
	target := "http://" + upPlain + "/"
	for _, proxy := range []string{agGateway, gpChain1} {
		if err := waitHTTP(target, "http://"+proxy); err != nil {
			return err
		}
	}
	agChain := &row{name: "authgress gateway → agent (mTLS)", target: target, proxy: "http://" + agGateway, pid: gwPid, also: []int{agentPid}}
	agOne := &row{name: "authgress (one process)", target: target, proxy: "http://" + agLog, pid: pids["authgress"]}
	gpChain := &row{name: "goproxy-bare → goproxy-bare (mTLS)", target: target, proxy: "http://" + gpChain1, pid: first.Process.Pid, also: []int{second.Process.Pid}}
	gpOne := &row{name: "goproxy-bare (one process)", target: target, proxy: "http://" + gpBare, pid: pids["goproxy-bare"]}
	rows := []*row{agChain, agOne, gpChain, gpOne}
	if err := h.measure(rows, *conns, *threads); err != nil {
		return err
	}
	rps := func(x result) float64 { return x.rps }
	p50 := func(x result) float64 { return x.p50 }
	p99 := func(x result) float64 { return x.p99 }
	cpu := func(x result) float64 { return x.cpuPerReq }
	h.printf("| row | req/s | p50 ms | p99 ms | CPU µs/req (all its processes) | per process (first, second) | errors |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		parts := "—"
		if len(r.also) > 0 {
			var ps []string
			for i := range 1 + len(r.also) {
				ps = append(ps, fmt.Sprintf("%.1f", r.med(func(x result) float64 {
					if i < len(x.cpuParts) {
						return x.cpuParts[i]
					}
					return 0
				})))
			}
			parts = strings.Join(ps, " + ")
		}
		errs := ""
		for _, x := range r.results {
			errs = strings.TrimSpace(errs + " " + x.errors)
		}
		h.printf("| %s | %.0f | %.3f | %.2f | %.1f | %s | %s |\n", r.name, r.med(rps), r.med(p50), r.med(p99), r.med(cpu), parts, errs)
	}
	h.printf("\nPer hop: the two-process row minus the one-process row (medians).\n\n")
	h.printf("| | added CPU µs/req | added p50 ms | added p99 ms | req/s two ÷ one |\n|---|---|---|---|---|\n")
	type hop struct{ cpu, p50, p99, rps float64 }
	hopOf := func(two, one *row) hop {
		return hop{two.med(cpu) - one.med(cpu), two.med(p50) - one.med(p50), two.med(p99) - one.med(p99), two.med(rps) / one.med(rps)}
	}
	ag, gp := hopOf(agChain, agOne), hopOf(gpChain, gpOne)
	h.printf("| authgress: gateway → agent over mTLS | %+.1f | %+.3f | %+.2f | %.2f |\n", ag.cpu, ag.p50, ag.p99, ag.rps)
	h.printf("| goproxy-bare → goproxy-bare over mTLS | %+.1f | %+.3f | %+.2f | %.2f |\n", gp.cpu, gp.p50, gp.p99, gp.rps)
	ratio := func(a, b float64) string { // of two added costs: only when both are > 0
		if a <= 0 || b <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	h.printf("| authgress hop ÷ goproxy hop | %s | %s | %s | — |\n\n", ratio(ag.cpu, gp.cpu), ratio(ag.p50, gp.p50), ratio(ag.p99, gp.p99))
	return nil
}
