// Command harness runs the authgress benchmarks side by side on this machine
// (bench/run.sh installs what it needs and calls it). Everything listens on
// 127.0.0.1. Rows are interleaved over rounds and medians reported, with
// ratios to the direct path and to a bare goproxy forward proxy, measured in
// the same run: absolute numbers depend on the machine, ratios carry over.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	rounds   = flag.Int("rounds", 3, "interleaved rounds per row")
	duration = flag.Duration("d", 5*time.Second, "wrk duration per measurement")
	conns    = flag.Int("c", 64, "wrk connections")
	threads  = flag.Int("t", 2, "wrk threads")
	work     = flag.String("work", "", "work directory (default: a temp dir)")
	only     = flag.String("only", "", "comma-separated sections to run: plain,mtls,reverse,agent,intercept,latency,openloop,tokens,scale (default all)")
	out      = flag.String("out", "", "also write the report (markdown) to this file")
	abEnv    = flag.String("ab-env", "", "A/B: the plain section adds a row for an authgress (access log on) run with this extra environment, e.g. GOGC=200")
	abBin    = flag.String("ab-bin", "", "A/B: the plain section adds a row for this authgress binary (access log on), e.g. one built from the previous commit")
	profile  = flag.String("profile", "", "write CPU profiles of the authgress rows (first round) to this directory")
	smokeBin = flag.String("smokescreen-bin", "", "the plain section adds a row for this smokescreen binary (stripe/smokescreen, built elsewhere), a forward proxy that cannot add a header")
)

func main() {
	flag.Parse()
	h := newHarness()
	defer h.stopAll()
	if err := h.run(); err != nil {
		h.stopAll()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type harness struct {
	dir    string
	bins   map[string]string
	procs  []*exec.Cmd
	report strings.Builder
}

func newHarness() *harness {
	dir := *work
	if dir == "" {
		dir, _ = os.MkdirTemp("", "authgress-bench-")
	}
	_ = os.MkdirAll(dir, 0o777)
	_ = os.Chmod(dir, 0o777) // squid drops to user "proxy"
	return &harness{dir: dir, bins: map[string]string{}}
}

func (h *harness) printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	fmt.Print(s)
	h.report.WriteString(s)
}

func want(section string) bool {
	if *only == "" {
		return true
	}
	for _, s := range strings.Split(*only, ",") {
		if s == section {
			return true
		}
	}
	return false
}

func (h *harness) run() error {
	if err := h.build(); err != nil {
		return err
	}
	pki, err := makePKI(h.dir)
	if err != nil {
		return err
	}
	if err := h.startPeers(pki); err != nil {
		return err
	}
	h.header()
	if want("plain") {
		if err := h.plainRows(); err != nil {
			return err
		}
	}
	if want("mtls") {
		if err := h.mtlsRows(); err != nil {
			return err
		}
	}
	if want("reverse") {
		if err := h.reverseRows(); err != nil {
			return err
		}
	}
	if want("agent") {
		if err := h.agentRows(); err != nil {
			return err
		}
	}
	if want("intercept") {
		if err := h.interceptRows(); err != nil {
			return err
		}
	}
	if want("latency") {
		if err := h.latencyRows(); err != nil {
			return err
		}
	}
	if want("openloop") {
		if err := h.openloopRows(); err != nil {
			return err
		}
	}
	if want("tokens") {
		if err := h.tokenLoad(); err != nil {
			return err
		}
	}
	if want("scale") {
		if err := h.scale(); err != nil {
			return err
		}
	}
	if *out != "" {
		return os.WriteFile(*out, []byte(h.report.String()), 0o644)
	}
	return nil
}

func (h *harness) build() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	for name, pkg := range map[string]string{"authgress": "./cmd/authgress", "goproxy-bare": "./bench/goproxy-bare",
		"tokenserver": "./bench/tokenserver", "idleconns": "./bench/idleconns", "tunnelload": "./bench/tunnelload", "reverse-bare": "./bench/reverse-bare",
		"nethttp-bare": "./bench/nethttp-bare"} {
		bin := filepath.Join(h.dir, name)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", pkg, err)
		}
		h.bins[name] = bin
	}
	return nil
}

// start runs a long-lived process; its output goes to dir/name.log.
func (h *harness) start(name string, args []string, env ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(h.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	h.procs = append(h.procs, cmd)
	return cmd, nil
}

func (h *harness) stopAll() {
	for _, p := range h.procs {
		if p.Process != nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		}
	}
	for _, p := range h.procs {
		if p.Process != nil {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			}
		}
	}
	h.procs = nil
}

// waitHTTP waits for u to answer 200 through proxy with an injected token
// (any 200 without a proxy).
func waitHTTP(u, proxy string) error { return waitFor(u, proxy, proxy != "") }

func waitFor(u, proxy string, wantToken bool) error {
	client := &http.Client{Timeout: time.Second}
	if proxy != "" {
		pu, _ := url.Parse(proxy)
		client.Transport = &http.Transport{Proxy: http.ProxyURL(pu)}
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(u)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && (!wantToken || strings.Contains(string(body), "auth=[Bearer ")) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s (via %q) did not answer 200 with an injected token", u, proxy)
}

// processTree returns pid and its descendants (nginx and squid workers).
func processTree(pid int) []int {
	out := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			out = append(out, processTree(child)...)
		}
	}
	return out
}

// cpuTicks is utime+stime of a process tree, in clock ticks (1/100 s).
func cpuTicks(pid int) float64 {
	total := 0.0
	for _, p := range processTree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		total += u + s
	}
	return total
}

// cpuMeter charges the CPU of one or more process trees (the processes of
// a chain) to the requests of one measurement.
type cpuMeter struct {
	pids   []int
	before []float64
}

func startCPU(pids []int) cpuMeter {
	m := cpuMeter{pids: pids}
	for _, p := range pids {
		m.before = append(m.before, cpuTicks(p))
	}
	return m
}

// perRequest is the CPU in µs per request since startCPU, in total and
// per process (nil when nothing is charged).
func (m cpuMeter) perRequest(requests float64) (float64, []float64) {
	if len(m.pids) == 0 || requests <= 0 {
		return 0, nil
	}
	total, parts := 0.0, make([]float64, len(m.pids))
	for i, p := range m.pids {
		parts[i] = (cpuTicks(p) - m.before[i]) * 10000 / requests
		total += parts[i]
	}
	return total, parts
}

// alive tells whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	return len(f) > 0 && f[0] != "Z"
}

// rssKB is the resident set of a process tree.
func rssKB(pid int) int {
	total := 0
	for _, p := range processTree(pid) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "VmRSS:" {
				v, _ := strconv.Atoi(fs[1])
				total += v
			}
		}
		f.Close()
	}
	return total
}

// result is one wrk measurement.
type result struct {
	rps, p50, p99, cpuPerReq float64   // cpu in µs per request (0: not measured)
	cpuParts                 []float64 // per charged process, when there are several
	requests                 float64
	resumed                  float64 // tunnelload: TLS handshakes that resumed a session
	errors                   string
}

var (
	reqsRe   = regexp.MustCompile(`(\d+) requests in`)
	rpsRe    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	latRe    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	sockRe   = regexp.MustCompile(`Socket errors: .*`)
)

func ms(v float64, unit string) float64 {
	switch unit {
	case "us":
		return v / 1000
	case "s":
		return v * 1000
	}
	return v
}

// wrk measures target: via a forward proxy (absolute-URI request line) when
// proxy is set; pids (none: nothing) are the processes whose CPU is charged.
func (h *harness) wrk(target, proxy string, pids []int, c, t int, d time.Duration) (result, error) {
	args := []string{fmt.Sprintf("-t%d", t), fmt.Sprintf("-c%d", c), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency"}
	env := os.Environ()
	endpoint := target
	if proxy != "" {
		lua := filepath.Join(h.dir, "forward.lua")
		_ = os.WriteFile(lua, []byte(forwardLua), 0o644)
		args = append(args, "-s", lua)
		env = append(env, "TARGET="+target)
		endpoint = proxy
	}
	args = append(args, endpoint)
	meter := startCPU(pids)
	cmd := exec.Command("wrk", args...)
	cmd.Env = env
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk %v: %v\n%s", args, err, outb)
	}
	o := string(outb)
	var r result
	if m := reqsRe.FindStringSubmatch(o); m != nil {
		r.requests, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := rpsRe.FindStringSubmatch(o); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range latRe.FindAllStringSubmatch(o, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			r.p50 = ms(v, m[3])
		} else {
			r.p99 = ms(v, m[3])
		}
	}
	r.cpuPerReq, r.cpuParts = meter.perRequest(r.requests)
	if m := non2xxRe.FindStringSubmatch(o); m != nil {
		r.errors = m[1] + " non-2xx"
	}
	if m := sockRe.FindString(o); m != "" {
		r.errors = strings.TrimSpace(r.errors + " " + m)
	}
	return r, nil
}

const forwardLua = `-- drive a forward proxy: absolute-URI request line
local target = os.getenv("TARGET")
local hostport = target:match("^https?://([^/]+)")
wrk.path = target
wrk.headers["Host"] = hostport
request = function() return wrk.format("GET", target) end
`

// row is one thing measured.
type row struct {
	name, target, proxy string
	pid                 int
	also                []int // more processes charged with pid (a chain of proxies)
	results             []result
	// tunnelload: drive the row with bench/tunnelload instead of wrk
	// (wrk cannot CONNECT); ca is the root for its https targets.
	tunnelload bool
	ca         string
	tunnelArgs []string // more tunnelload flags (-new, -resume)
}

// charged is the processes whose CPU a measurement of r is charged with.
func (r *row) charged() []int {
	if r.pid == 0 {
		return nil
	}
	return append([]int{r.pid}, r.also...)
}

// load runs one measurement of r, charging pids.
func (h *harness) load(r *row, pids []int, c, t int, d time.Duration) (result, error) {
	if r.tunnelload {
		return h.tunnelLoad(r, pids, c, d)
	}
	return h.wrk(r.target, r.proxy, pids, c, t, d)
}

var tunnelRe = regexp.MustCompile(`requests=(\d+) rps=([\d.]+) p50=([\d.]+) p99=([\d.]+) errors=(\d+) resumed=(\d+)`)

func (h *harness) tunnelLoad(r *row, pids []int, c int, d time.Duration) (result, error) {
	meter := startCPU(pids)
	args := append([]string{"-proxy", strings.TrimPrefix(r.proxy, "http://"), "-target", r.target,
		"-ca", r.ca, "-c", strconv.Itoa(c), "-d", d.String()}, r.tunnelArgs...)
	out, err := exec.Command(h.bins["tunnelload"], args...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("tunnelload: %v\n%s", err, out)
	}
	m := tunnelRe.FindStringSubmatch(string(out))
	if m == nil {
		return result{}, fmt.Errorf("tunnelload: unexpected output %q", out)
	}
	var res result
	res.requests, _ = strconv.ParseFloat(m[1], 64)
	res.rps, _ = strconv.ParseFloat(m[2], 64)
	res.p50, _ = strconv.ParseFloat(m[3], 64)
	res.p99, _ = strconv.ParseFloat(m[4], 64)
	res.resumed, _ = strconv.ParseFloat(m[6], 64)
	if m[5] != "0" {
		res.errors = m[5] + " failed"
	}
	res.cpuPerReq, res.cpuParts = meter.perRequest(res.requests)
	return res, nil
}

func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func (r *row) med(f func(result) float64) float64 {
	var v []float64
	for _, x := range r.results {
		v = append(v, f(x))
	}
	return median(v)
}

// measure runs every row once per round, interleaved (A B C … A B C …),
// after a short warm-up of each.
func (h *harness) measure(rows []*row, c, t int) error {
	for _, r := range rows {
		if _, err := h.load(r, nil, c, t, time.Second); err != nil {
			return err
		}
	}
	for i := 0; i < *rounds; i++ {
		for _, r := range rows {
			var prof chan struct{}
			if i == 0 {
				prof = h.cpuProfile(r, c)
			}
			res, err := h.load(r, r.charged(), c, t, *duration)
			if prof != nil {
				<-prof
			}
			if err != nil {
				return err
			}
			r.results = append(r.results, res)
			for _, pid := range r.charged() {
				if !alive(pid) {
					return fmt.Errorf("row %q: process %d has exited (its log is in %s)", r.name, pid, h.dir)
				}
			}
			fmt.Fprintf(os.Stderr, "  round %d %-22s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %6.1f µs/req %s\n", i+1, r.name, res.rps, res.p50, res.p99, res.cpuPerReq, res.errors)
		}
	}
	return nil
}

// pprofAddr maps an authgress process to its AUTHGRESS_PPROF address.
var pprofAddr = map[int]string{}

// cpuProfile takes a CPU profile of r's process over most of one
// measurement when -profile is set and the process serves pprof; the
// channel closes when the profile is written (nil: none taken).
func (h *harness) cpuProfile(r *row, c int) chan struct{} {
	addr := pprofAddr[r.pid]
	if *profile == "" || addr == "" {
		return nil
	}
	_ = os.MkdirAll(*profile, 0o755)
	secs := max(int(duration.Seconds())-1, 1)
	name := strings.NewReplacer(" ", "-", ",", "", "/", "-", ":", "").Replace(r.name)
	path := filepath.Join(*profile, fmt.Sprintf("%s-c%d.prof", name, c))
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
		fmt.Fprintln(os.Stderr, "  profile:", path)
	}()
	return done
}

// table prints medians and ratios; base is the direct row (may be nil), floor
// the goproxy-bare row.
func (h *harness) table(rows []*row, base, floor *row) { h.tableVs(rows, base, floor, "goproxy-bare") }

// tableVs is table with the floor row named floorName in the headings.
func (h *harness) tableVs(rows []*row, base, floor *row, floorName string) {
	h.printf("| row | req/s | p50 ms | p99 ms | proxy CPU µs/req | req/s ÷ direct | req/s ÷ %[1]s | CPU ÷ %[1]s | p50 − %[1]s (ms) | errors |\n", floorName)
	h.printf("|---|---|---|---|---|---|---|---|---|---|\n")
	rps := func(x result) float64 { return x.rps }
	p50 := func(x result) float64 { return x.p50 }
	p99 := func(x result) float64 { return x.p99 }
	cpu := func(x result) float64 { return x.cpuPerReq }
	for _, r := range rows {
		errs := ""
		for _, x := range r.results {
			if x.errors != "" {
				errs = x.errors
			}
		}
		ratio := func(a, b float64) string {
			if b == 0 || a == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		dr, fr, fc, fl := "—", "—", "—", "—"
		if base != nil {
			dr = ratio(r.med(rps), base.med(rps))
		}
		if floor != nil {
			fr = ratio(r.med(rps), floor.med(rps))
			fc = ratio(r.med(cpu), floor.med(cpu))
			fl = fmt.Sprintf("%+.3f", r.med(p50)-floor.med(p50))
		}
		c := "—"
		if r.pid != 0 {
			c = fmt.Sprintf("%.1f", r.med(cpu))
		}
		h.printf("| %s | %.0f | %.3f | %.2f | %s | %s | %s | %s | %s | %s |\n", r.name, r.med(rps), r.med(p50), r.med(p99), c, dr, fr, fc, fl, errs)
	}
	h.printf("\n")
}
