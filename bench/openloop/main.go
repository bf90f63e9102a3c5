//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	proxy := flag.String("proxy", "", "forward proxy host:port (empty: connect to the target directly)")
	target := flag.String("target", "", "http:// URL to GET")
	rate := flag.Int("rate", 1000, "requests per second (the schedule)")
	c := flag.Int("c", 64, "kept-alive connections")
	d := flag.Duration("d", 5*time.Second, "duration of the schedule")
	drain := flag.Duration("drain", 2*time.Second, "how long to wait for answers after the last scheduled send")
	late := flag.Duration("late", time.Millisecond, "a request written more than this after its scheduled time counts as late")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" || *rate <= 0 || *c <= 0 || int64(*rate)*int64(*d) < int64(time.Second) {
		fmt.Fprintln(os.Stderr, "openloop: need -target http://host:port/path, -c > 0 and at least one request (-rate × -d)")
		os.Exit(2)
	}
	g, err := newGen(*proxy, *target, *rate, *c, *d, *late)
	if err == nil {
		err = g.run(*d+*drain, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(1)
	}
}

// conn is one kept-alive connection.
type conn struct {
	idx     int
	fd      int // -1 while down
	buf     []byte
	busy    bool  // a request is in flight
	sched   int64 // its scheduled time, ns since t0
	retryAt int64 // while down: when to dial again
}

type gen struct {
	sa              syscall.Sockaddr
	req             []byte
	rate            int64
	n               int64 // requests in the schedule
	late            int64
	t0              time.Time
	wall0           int64 // t0 on the wall clock (receive timestamps use it), ns
	oob             [64]byte
	eager           bool // wake for answers: the kernel gave no receive timestamp
	epfd            int
	conns           []*conn
	free            []*conn // ring: free[freeHead … freeHead+nfree) mod len
	freeHead, nfree int
	down            int // connections waiting to be dialled again

	next                  int64 // the next request to write
	done                  int64 // answered or failed
	nLate, non2xx, failed int64
	lastDone              int64
	lats, lags            []int64
	firstErr              error
}

// newGen prepares a run of rate requests per second for d over c
// connections, through proxy (host:port) unless it is empty.
func newGen(proxy, target string, rate, c int, d, late time.Duration) (*gen, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	path := u.RequestURI()
	addr, line := u.Host, path
	if proxy != "" {
		addr, line = proxy, "http://"+u.Host+path
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	var sa syscall.Sockaddr
	if ip4 := ta.IP.To4(); ip4 != nil {
		s := &syscall.SockaddrInet4{Port: ta.Port}
		copy(s.Addr[:], ip4)
		sa = s
	} else {
		s := &syscall.SockaddrInet6{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To16())
		sa = s
	}
	n := int64(rate) * int64(d) / int64(time.Second)
	return &gen{
		sa:    sa,
		req:   []byte("GET " + line + " HTTP/1.1\r\nHost: " + u.Host + "\r\n\r\n"),
		rate:  int64(rate),
		n:     n,
		late:  int64(late),
		conns: make([]*conn, c),
		free:  make([]*conn, c),
		lats:  make([]int64, 0, n),
		lags:  make([]int64, 0, n),
	}, nil
}

func (g *gen) now() int64 { return int64(time.Since(g.t0)) }

// sched is request i's scheduled time, ns since t0.
func (g *gen) sched(i int64) int64 { return i * 1e9 / g.rate }

// run runs the schedule, waits up to limit from its start for the answers,
// and prints the result line to out.
func (g *gen) run(limit time.Duration, out io.Writer) error {
	// One thread does everything; its sleeps are not rounded up.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, _, _ = syscall.RawSyscall6(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, 1, 0, 0, 0, 0)
	defer syscall.RawSyscall6(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, 50000, 0, 0, 0, 0)

	var err error
	if g.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return err
	}
	defer syscall.Close(g.epfd)
	for i := range g.conns {
		c := &conn{idx: i, fd: -1, buf: make([]byte, 0, 16<<10)}
		g.conns[i] = c
		if err := g.dial(c); err != nil {
			return err
		}
		g.free[i] = c
	}
	g.nfree = len(g.conns)
	defer func() {
		for _, c := range g.conns {
			if c.fd >= 0 {
				syscall.Close(c.fd)
			}
		}
	}()
	events := make([]syscall.EpollEvent, len(g.conns))
	end := int64(limit)
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	g.t0 = time.Now().Add(2 * time.Millisecond)
	g.wall0 = g.t0.UnixNano()
	for g.done < g.n {
		now := g.now()
		if now >= end {
			break
		}
		// Collect the answers that have arrived (their arrival times are
		// the kernel's), then write what is due, oldest first, on the
		// longest-free connections.
		if err := g.poll(events, 0); err != nil {
			return err
		}
		if g.down > 0 {
			g.redialDue(now)
		}
		for g.next < g.n && g.nfree > 0 && g.sched(g.next) <= now {
			c := g.free[g.freeHead]
			g.freeHead = (g.freeHead + 1) % len(g.free)
			g.nfree--
			g.send(c, g.sched(g.next))
			g.next++
		}
		wake := end
		for i := 0; g.down > 0 && i < len(g.conns); i++ {
			if c := g.conns[i]; c.fd < 0 {
				wake = min(wake, c.retryAt)
			}
		}
		now = g.now()
		if g.next < g.n && (g.nfree > 0 || g.sched(g.next) > now) && !g.eager {
			// Sleep until the next request is due without waking for
			// answers: they are collected then, with their arrival times.
			wake = min(wake, g.sched(g.next))
			ts := syscall.NsecToTimespec(wake - now)
			_ = syscall.Nanosleep(&ts, nil)
			continue
		}
		if g.next < g.n && g.nfree > 0 {
			wake = min(wake, g.sched(g.next))
		}
		// A request is due and every connection is busy, or everything has
		// been sent: wait for an answer.
		if err := g.poll(events, max(wake-now, 0)); err != nil {
			return err
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	unsent := g.n - g.next
	timeouts := int64(0)
	for _, c := range g.conns {
		if c.busy {
			timeouts++
		}
	}
	slices.Sort(g.lats)
	slices.Sort(g.lags)
	elapsed := max(time.Duration(g.lastDone), time.Duration(g.sched(g.n)))
	cpu := float64(syscall.TimevalToNsec(ru1.Utime) + syscall.TimevalToNsec(ru1.Stime) -
		syscall.TimevalToNsec(ru0.Utime) - syscall.TimevalToNsec(ru0.Stime))
	errs := g.non2xx + g.failed + timeouts
	fmt.Fprintf(out, "rate=%d sent=%d ok=%d achieved=%.1f p50=%.3f p90=%.3f p99=%.3f p999=%.3f max=%.3f errors=%d late=%d unsent=%d lag_p50=%.3f lag_p99=%.3f gen_cpu_us=%.1f\n",
		g.rate, g.next, len(g.lats), float64(len(g.lats))/elapsed.Seconds(),
		pct(g.lats, 0.50), pct(g.lats, 0.90), pct(g.lats, 0.99), pct(g.lats, 0.999), pct(g.lats, 1),
		errs, g.nLate, unsent, pct(g.lags, 0.50), pct(g.lags, 0.99), cpu/1000/float64(max(g.next, 1)))
	if errs > 0 {
		fmt.Fprintf(os.Stderr, "openloop: %d non-2xx, %d connection errors (first: %v), %d unanswered at the end\n", g.non2xx, g.failed, g.firstErr, timeouts)
	}
	return nil
}

// pct is the nearest-rank percentile of sorted ns values, in ms.
func pct(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return float64(sorted[min(max(i, 0), len(sorted)-1)]) / 1e6
}

// poll reads the connections that are readable, waiting up to timeout ns
// for one to be.
func (g *gen) poll(events []syscall.EpollEvent, timeout int64) error {
	k, err := epollWait(g.epfd, events, timeout)
	if err != nil && err != syscall.EINTR {
		return err
	}
	for _, ev := range events[:max(k, 0)] {
		g.readable(g.conns[ev.Fd])
	}
	return nil
}

// epollWait waits up to timeout ns (epoll_pwait2: no rounding to
// milliseconds).
func epollWait(epfd int, events []syscall.EpollEvent, timeout int64) (int, error) {
	ts := syscall.NsecToTimespec(timeout)
	n, _, e := syscall.Syscall6(sysEpollPwait2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sysEpollPwait2 is epoll_pwait2's number in Linux's generic syscall table,
// which amd64 and arm64 share for it.
const sysEpollPwait2 = 441

// dial connects c (a blocking connect: on loopback it takes microseconds)
// and adds it to the epoll set.
func (g *gen) dial(c *conn) error {
	domain := syscall.AF_INET
	if _, ok := g.sa.(*syscall.SockaddrInet6); ok {
		domain = syscall.AF_INET6
	}
	fd, err := syscall.Socket(domain, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err = syscall.Connect(fd, g.sa); err == nil {
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err == nil {
		err = syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.idx)})
	}
	if err != nil {
		syscall.Close(fd)
		return err
	}
	c.fd, c.buf = fd, c.buf[:0]
	return nil
}

// send writes the request scheduled at sched on c.
func (g *gen) send(c *conn, sched int64) {
	lag := g.now() - sched
	g.lags = append(g.lags, lag)
	if lag > g.late {
		g.nLate++
	}
	c.busy, c.sched = true, sched
	for {
		n, err := syscall.Write(c.fd, g.req)
		if err == syscall.EINTR {
			continue
		}
		if err == nil && n < len(g.req) {
			err = errors.New("short write") // one small request on an idle connection: the socket buffer has room
		}
		if err != nil {
			g.fail(c, err)
		}
		return
	}
}

// readable reads what arrived on c and completes the answers it holds.
func (g *gen) readable(c *conn) {
	if c.fd < 0 {
		return
	}
	if len(c.buf) == cap(c.buf) {
		if len(c.buf) >= maxAnswer {
			g.fail(c, errors.New("an answer larger than 16 MiB"))
			return
		}
		c.buf = slices.Grow(c.buf, cap(c.buf)) // a large answer: it is parsed once complete
	}
	n, oobn, _, _, err := syscall.Recvmsg(c.fd, c.buf[len(c.buf):cap(c.buf)], g.oob[:], 0)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		g.fail(c, err)
		return
	}
	now := g.arrival(g.oob[:oobn])
	c.buf = c.buf[:len(c.buf)+n]
	for len(c.buf) > 0 {
		used, status, closeAfter, err := parseResponse(c.buf)
		if err == errIncomplete {
			return
		}
		if err == nil && !c.busy {
			err = errors.New("an answer with no request in flight")
		}
		if err != nil {
			g.fail(c, err)
			return
		}
		c.buf = c.buf[:copy(c.buf, c.buf[used:])]
		c.busy = false
		if status >= 200 && status < 300 {
			g.lats = append(g.lats, now-c.sched)
		} else {
			g.non2xx++
		}
		g.finish(now)
		if closeAfter {
			g.drop(c, now)
			return
		}
		g.free[(g.freeHead+g.nfree)%len(g.free)] = c
		g.nfree++
	}
}

const maxAnswer = 16 << 20

// arrival is when the bytes just read arrived (ns since t0): the kernel's
// receive timestamp of the last packet, or now if there is none.
func (g *gen) arrival(oob []byte) int64 {
	// One cmsghdr (64-bit: len uint64, level int32, type int32) and a timespec.
	if len(oob) >= 32 && int32(binary.NativeEndian.Uint32(oob[8:])) == syscall.SOL_SOCKET &&
		int32(binary.NativeEndian.Uint32(oob[12:])) == syscall.SCM_TIMESTAMPNS {
		sec, nsec := int64(binary.NativeEndian.Uint64(oob[16:])), int64(binary.NativeEndian.Uint64(oob[24:]))
		return sec*1e9 + nsec - g.wall0
	}
	g.eager = true // from now on, wake for answers to time them
	return g.now()
}

func (g *gen) finish(now int64) {
	g.done++
	g.lastDone = now
}

// fail handles a broken connection: the request in flight on it, if any,
// counts as an error; an idle one leaves the pool. Either way c is dialled
// again.
func (g *gen) fail(c *conn, err error) {
	now := g.now()
	if c.busy {
		c.busy = false
		g.failed++
		if g.firstErr == nil {
			g.firstErr = err
		}
		g.finish(now)
	} else {
		for i := 0; i < g.nfree; i++ {
			if g.free[(g.freeHead+i)%len(g.free)] != c {
				continue
			}
			for k := i; k < g.nfree-1; k++ {
				g.free[(g.freeHead+k)%len(g.free)] = g.free[(g.freeHead+k+1)%len(g.free)]
			}
			g.nfree--
			break
		}
	}
	g.drop(c, now)
}

// drop closes c; it is dialled again at the next turn of the loop.
func (g *gen) drop(c *conn, now int64) {
	syscall.Close(c.fd) // also leaves the epoll set
	c.fd, c.retryAt = -1, now
	g.down++
}

// redialDue dials the connections that are down and due, and puts them back
// in the pool; a failed dial is tried again 50 ms later.
func (g *gen) redialDue(now int64) {
	for _, c := range g.conns {
		if c.fd >= 0 || c.retryAt > now {
			continue
		}
		if err := g.dial(c); err != nil {
			c.retryAt = now + int64(50*time.Millisecond)
			if g.firstErr == nil {
				g.firstErr = err
			}
			continue
		}
		g.down--
		g.free[(g.freeHead+g.nfree)%len(g.free)] = c
		g.nfree++
	}
}
