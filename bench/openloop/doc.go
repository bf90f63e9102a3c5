// Command openloop is an open-loop HTTP/1.1 load generator (wrk2-style): it
// sends GETs at a fixed rate over a fixed pool of kept-alive connections,
// directly or through a forward proxy (absolute-URI request lines, as
// HTTP_PROXY clients send them), and prints one line:
//
//	rate=R sent=N ok=N achieved=X p50=ms p90=ms p99=ms p999=ms max=ms errors=N late=N unsent=N lag_p50=ms lag_p99=ms gen_cpu_us=X
//
//	openloop -proxy 127.0.0.1:18100 -target http://127.0.0.1:18080/ -rate 10000 -c 64 -d 5s
//	openloop -target http://127.0.0.1:18080/ -rate 10000 -c 64 -d 5s
//
// # Coordinated omission
//
// A closed-loop generator (wrk) sends a connection's next request only when
// the previous answer is in: when the server stalls, the generator stops
// sending, and the stall is recorded as one slow request instead of as every
// request that would have waited behind it. openloop does not wait for the
// server. Request i is due at t0 + i/rate, fixed before the run, and its
// latency is measured from that scheduled time to the last byte of its
// answer, never from when it was actually written. A request that finds no
// connection free at its scheduled time waits (requests go out in schedule
// order) and is written as soon as one frees up; the wait counts in its
// latency. The schedule never slows down to match the server.
//
// Besides the latency percentiles it reports how far behind schedule requests
// were written: lag_p50 and lag_p99 (written − scheduled), late (written more
// than -late after their scheduled time: no connection was free, or the
// generator itself did not get a CPU in time) and unsent (due but never
// written, because the server fell so far behind that the run ended first).
// A run with many late or any unsent requests was over capacity: its
// percentiles are then lower bounds. errors counts connection failures,
// non-2xx answers and requests still unanswered when the run ends.
//
// # Its own cost
//
// One thread runs a loop over non-blocking sockets, as wrk2 does. It sleeps
// until the next request is due (nanosleep, with the thread's timer slack
// set to 1 ns), collects the answers that arrived meanwhile (epoll_pwait2
// without waiting) and writes every request that is due, each on the
// connection that has been free the longest (round-robin, so every
// connection carries traffic). An answer's time is the kernel's receive
// timestamp of its last packet (SO_TIMESTAMPNS), so answers need no wake-up
// of their own and their times do not depend on when the generator gets a
// CPU. It waits on the sockets only when a request is due and every
// connection is busy, and after the last send. Answers are parsed in place
// (Content-Length and chunked bodies) without allocating; latencies go into
// preallocated slices sorted after the run. gen_cpu_us is the generator's
// own CPU (user+system) per request sent.
//
// A request costs one wake-up, one write, one recvmsg and one epoll_pwait2,
// but on a VM the wake-ups dominate: about 30–35 µs of CPU per request at
// 14,000–22,000/s straight to nginx on the 2-vCPU bench machine, most of it
// kernel time sleeping and waking the server on the other core (a closed loop
// at saturation never sleeps: wrk spends about 3 µs per request there). A
// goroutine per connection with a nanosleep pacer cost the same. Sleeping on
// Go's timers was cheaper (8–17 µs) because it sends in bursts: when the
// process is idle they wake up to 1 ms late (the runtime's poller waits in
// whole milliseconds), and that lateness would be in every latency.
//
// Linux only (epoll_pwait2, Linux 5.11).
package main
