package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

var (
	olLoad = flag.String("openloop-load", "0.5,0.8", "openloop: the rates, as fractions of goproxy-bare's closed-loop req/s (measured with wrk first)")
	olRPS  = flag.String("openloop-rps", "", "openloop: fixed rates in req/s instead of -openloop-load (comma-separated; goproxy-bare's capacity is not measured)")
)

// olResult is one bench/openloop measurement.
type olResult struct {
	rate, achieved, p50, p90, p99, p999, max float64 // latencies in ms
	sent, errors, late, unsent               float64
	lagP50, lagP99, genCPU                   float64 // the generator's send lag (ms) and CPU (µs/request)
	cpuPerReq                                float64 // the proxy's, µs/request (0: not measured)
}

// olRow is one thing measured in the open loop.
type olRow struct {
	name, target, proxy string // proxy: host:port, empty for direct
	pid                 int
	results             []olResult
}

func (r *olRow) med(f func(olResult) float64) float64 {
	var v []float64
	for _, x := range r.results {
		v = append(v, f(x))
	}
	return median(v)
}

func (r *olRow) sum(f func(olResult) float64) float64 {
	t := 0.0
	for _, x := range r.results {
		t += f(x)
	}
	return t
}

// openloop runs bench/openloop once against r at rate for d; the CPU of
// pid (0: none) is charged per request sent.
func (h *harness) openloop(r *olRow, pid, rate int, d time.Duration) (olResult, error) {
	args := []string{"-target", r.target, "-rate", strconv.Itoa(rate), "-c", strconv.Itoa(*conns), "-d", d.String()}
	if r.proxy != "" {
		args = append(args, "-proxy", r.proxy)
	}
	var charged []int
	if pid != 0 {
		charged = []int{pid}
	}
	meter := startCPU(charged)
	cmd := exec.Command(h.bins["openloop"], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return olResult{}, fmt.Errorf("openloop %v: %v\n%s", args, err, out)
	}
	kv := map[string]float64{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k], _ = strconv.ParseFloat(v, 64)
		}
	}
	if _, ok := kv["p99"]; !ok {
		return olResult{}, fmt.Errorf("openloop: unexpected output %q", out)
	}
	res := olResult{rate: kv["rate"], achieved: kv["achieved"], p50: kv["p50"], p90: kv["p90"], p99: kv["p99"], p999: kv["p999"], max: kv["max"],
		sent: kv["sent"], errors: kv["errors"], late: kv["late"], unsent: kv["unsent"], lagP50: kv["lag_p50"], lagP99: kv["lag_p99"], genCPU: kv["gen_cpu_us"]}
	res.cpuPerReq, _ = meter.perRequest(res.sent)
	if pid != 0 && !alive(pid) {
		return res, fmt.Errorf("row %q: process %d has exited (its log is in %s)", r.name, pid, h.dir)
	}
	return res, nil
}

// openloopRows: latency at fixed request rates (wrk2-style, corrected for
// coordinated omission), to tell the proxies' tails apart from the
// scheduling noise of a closed loop that keeps both cores busy.
func (h *harness) openloopRows() error {
	if h.bins["openloop"] == "" {
		bin := filepath.Join(h.dir, "openloop")
		cmd := exec.Command("go", "build", "-o", bin, "./bench/openloop")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./bench/openloop: %w", err)
		}
		h.bins["openloop"] = bin
	}
	target := "http://" + upPlain + "/"
	h.printf("## Open-loop latency at fixed rates (plain HTTP upstream), c=%d\n\n", *conns)
	h.printf("`bench/openloop` sends GETs on a fixed schedule (request i at t0 + i/rate) over %d kept-alive connections and measures each request's latency from its scheduled send time, not from when it was written: a request that finds every connection busy waits, and the wait counts (wrk2-style, corrected for coordinated omission). Below capacity the proxy is not kept saturated, so the tail is the proxy's and the queueing its stalls cause, rather than the run queue of a closed loop that keeps both cores busy. ", *conns)
	var rates []int
	if *olRPS != "" {
		for _, s := range strings.Split(*olRPS, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v <= 0 {
				return fmt.Errorf("-openloop-rps: %q is not a rate", s)
			}
			rates = append(rates, v)
		}
		h.printf("Rates given with `-openloop-rps`.")
	} else {
		capD := min(*duration, 5*time.Second).Truncate(time.Second)
		capD = max(capD, time.Second)
		if _, err := h.wrk(target, "http://"+gpBare, nil, *conns, *threads, time.Second); err != nil {
			return err
		}
		capacity, err := h.wrk(target, "http://"+gpBare, nil, *conns, *threads, capD)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  goproxy-bare closed-loop capacity %8.0f req/s\n", capacity.rps)
		var shares []string
		for _, s := range strings.Split(*olLoad, ",") {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || f <= 0 {
				return fmt.Errorf("-openloop-load: %q is not a fraction", s)
			}
			rates = append(rates, int(math.Round(f*capacity.rps/100))*100)
			shares = append(shares, fmt.Sprintf("%.0f%%", f*100))
		}
		h.printf("The rates are %s of goproxy-bare's closed-loop throughput measured just before (`wrk -c%d`, %s, after a 1 s warm-up): %.0f req/s.", strings.Join(shares, " and "), *conns, capD, capacity.rps)
	}
	h.printf(" Rows interleaved over %d rounds of %s, each after a 1 s warm-up at its rate; medians. Late: requests written more than 1 ms after their scheduled time (every connection busy, or the generator not scheduled in time); unsent: never written before the run ended. Either makes the row's percentiles lower bounds.\n\n", *rounds, *duration)
	for _, rate := range rates {
		if err := h.openloopRate(target, rate); err != nil {
			return err
		}
	}
	return nil
}

// openloopRate measures every row at one rate, interleaved over rounds.
func (h *harness) openloopRate(target string, rate int) error {
	floor := &olRow{name: "goproxy-bare", target: target, proxy: gpBare, pid: pids["goproxy-bare"]}
	rows := []*olRow{
		{name: "authgress", target: target, proxy: agLog, pid: pids["authgress"]},
		{name: "authgress, access log off", target: target, proxy: agNoLog, pid: pids["authgress-nolog"]},
		floor,
		{name: "direct (no proxy)", target: target},
	}
	for _, r := range rows {
		if _, err := h.openloop(r, 0, rate, time.Second); err != nil {
			return err
		}
	}
	for i := 0; i < *rounds; i++ {
		for _, r := range rows {
			res, err := h.openloop(r, r.pid, rate, *duration)
			if err != nil {
				return err
			}
			r.results = append(r.results, res)
			fmt.Fprintf(os.Stderr, "  round %d %6d/s %-26s %8.0f req/s  p50 %6.3f  p99 %6.3f  p99.9 %6.3f ms  cpu %6.1f µs/req  late %.0f unsent %.0f errors %.0f  lag p99 %.3f ms  gen %.1f µs/req\n",
				i+1, rate, r.name, res.achieved, res.p50, res.p99, res.p999, res.cpuPerReq, res.late, res.unsent, res.errors, res.lagP99, res.genCPU)
		}
	}
	h.printf("### %d req/s\n\n", rate)
	h.printf("| row | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 ÷ goproxy-bare | p99.9 ÷ goproxy-bare | proxy CPU µs/req | late | unsent | errors |\n")
	h.printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	get := func(f func(olResult) float64) func(*olRow) float64 { return func(r *olRow) float64 { return r.med(f) } }
	achieved, p50, p90 := get(func(x olResult) float64 { return x.achieved }), get(func(x olResult) float64 { return x.p50 }), get(func(x olResult) float64 { return x.p90 })
	p99, p999, mx := get(func(x olResult) float64 { return x.p99 }), get(func(x olResult) float64 { return x.p999 }), get(func(x olResult) float64 { return x.max })
	cpu := get(func(x olResult) float64 { return x.cpuPerReq })
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, r := range rows {
		c := "—"
		if r.pid != 0 {
			c = fmt.Sprintf("%.1f", cpu(r))
		}
		h.printf("| %s | %.0f | %.3f | %.3f | %.3f | %.3f | %.2f | %s | %s | %s | %.0f | %.0f | %.0f |\n", r.name, achieved(r), p50(r), p90(r), p99(r), p999(r), mx(r),
			ratio(p99(r), p99(floor)), ratio(p999(r), p999(floor)), c,
			r.sum(func(x olResult) float64 { return x.late }), r.sum(func(x olResult) float64 { return x.unsent }), r.sum(func(x olResult) float64 { return x.errors }))
	}
	h.printf("\n")
	perRound := func(r *olRow, f func(olResult) float64) string {
		var s []string
		for _, x := range r.results {
			s = append(s, fmt.Sprintf("%.3f", f(x)))
		}
		return strings.Join(s, ", ")
	}
	for _, r := range rows[:3] {
		h.printf("- %s, p99 per round (ms): %s\n", r.name, perRound(r, func(x olResult) float64 { return x.p99 }))
	}
	for _, r := range rows[:2] {
		var s []string
		for i, x := range r.results {
			s = append(s, ratio(x.p99, floor.results[i].p99))
		}
		h.printf("- %s p99 ÷ goproxy-bare p99, round by round: %s\n", r.name, strings.Join(s, ", "))
	}
	var lag50, lag99, gen []float64
	for _, r := range rows {
		for _, x := range r.results {
			lag50, lag99, gen = append(lag50, x.lagP50), append(lag99, x.lagP99), append(gen, x.genCPU)
		}
	}
	h.printf("- the load generator: written %.3f ms (p50) and %.3f ms (p99) after the scheduled time, %.1f µs of its own CPU per request (medians over rows and rounds); its lag is part of every latency above\n\n",
		median(lag50), median(lag99), median(gen))
	return nil
}
