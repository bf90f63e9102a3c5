package integration

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// load sends requests to url from workers until stop is closed, counting
// successes and failures (an error or a status other than 200).
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   string
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(client *http.Client, url string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					l.failed.Add(1)
					l.mu.Lock()
					if l.firstErr == "" {
						l.firstErr = fmt.Sprint(err, resp)
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, failed int64) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}

func TestReloadUnderLoad(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	base := config(count.TokenURL(), up.Addr, `timeout = "20s"`)
	withSecond := base + fmt.Sprintf("\n[connections.second]\nhosts = [\"localhost:%s\"]\ncredential = \"app\"\nprofile = \"upstream\"\n", port)
	a := startAuthgress(t, base)
	l := startLoad(a.Client(), "http://"+up.Addr+"/", 4)
	time.Sleep(300 * time.Millisecond)

	// 1. Add a connection (and change another key of "api"): it matches at once.
	if msg := a.Reload(strings.Replace(withSecond, `timeout = "20s"`, `timeout = "25s"`, 1)); msg != "config reloaded" {
		t.Fatalf("reload 1: %s", msg)
	}
	if resp, body := a.Get("http://localhost:" + port + "/"); resp.StatusCode != 200 {
		t.Fatalf("added connection: %d %s", resp.StatusCode, body)
	}
	time.Sleep(200 * time.Millisecond)

	// 2. A file with an error is rejected; the running config keeps serving.
	if msg := a.Reload(withSecond + "\n[connections.broken]\nhosts = [\"b.example\"]\ntimeout = 30\n"); !strings.HasPrefix(msg, "reload rejected") {
		t.Fatalf("reload 2 accepted a bad file: %s", msg)
	}
	if resp, _ := a.Get("http://localhost:" + port + "/"); resp.StatusCode != 200 {
		t.Fatalf("after a rejected reload: %d", resp.StatusCode)
	}
	time.Sleep(200 * time.Millisecond)

	// 3. Remove the connection: it stops matching.
	if msg := a.Reload(base); msg != "config reloaded" {
		t.Fatalf("reload 3: %s", msg)
	}
	resp, body := a.Get("http://localhost:" + port + "/")
	if e := decodeError(t, resp, body); resp.StatusCode != 403 || e.Error != "egress_denied" {
		t.Fatalf("removed connection still matches: %d %+v", resp.StatusCode, e)
	}
	time.Sleep(200 * time.Millisecond)

	ok, failed := l.finish()
	t.Logf("reloads under load: %d requests ok, %d failed, %d token requests", ok, failed, count.n.Load())
	if failed != 0 || ok < 100 {
		t.Fatalf("%d failed requests during reloads (first: %s), %d ok", failed, l.firstErr, ok)
	}
	if n := count.n.Load(); n != 1 {
		t.Fatalf("token requests = %d: the unchanged credential's token did not survive the reloads", n)
	}
}

func TestReloadWithChangedCredentialFetchesNewToken(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	count := countTokenRequests(t, idp)
	up := startUpstream(t)
	cfg := config(count.TokenURL(), up.Addr, "")
	a := startAuthgress(t, cfg)
	a.Get("http://" + up.Addr + "/")
	if msg := a.Reload(strings.Replace(cfg, `scopes = ["api:read"]`, `scopes = ["api:read", "api:write"]`, 1)); msg != "config reloaded" {
		t.Fatal(msg)
	}
	resp, _ := a.Get("http://" + up.Addr + "/")
	if resp.StatusCode != 200 || count.n.Load() != 2 {
		t.Fatalf("status %d, token requests %d (want a new token for the new scopes)", resp.StatusCode, count.n.Load())
	}
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
		echo(w, r)
	})
	a := startAuthgress(t, config(idp.TokenURL(), up.Addr, "")) // shutdown_timeout = "5s"
	client := a.Client()
	var sigterm atomic.Int64 // unix nanos when SIGTERM was sent
	var inflightOK, failed atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr string
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				started := time.Now().UnixNano()
				if s := sigterm.Load(); s != 0 && started > s {
					return // after SIGTERM, nothing new is sent
				}
				resp, err := client.Get("http://" + up.Addr + "/")
				if err == nil {
					resp.Body.Close()
				}
				s := sigterm.Load()
				if err != nil || resp.StatusCode != 200 {
					if s != 0 && started > s && errors.Is(err, syscall.ECONNREFUSED) {
						return
					}
					failed.Add(1)
					mu.Lock()
					firstErr = fmt.Sprint(err, resp)
					mu.Unlock()
					return
				}
				if s != 0 && started < s {
					inflightOK.Add(1)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	sigterm.Store(time.Now().UnixNano())
	start := time.Now()
	if err := a.Terminate(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	wg.Wait()
	t.Logf("SIGTERM with 8 requests in flight: %d finished with 200, %d failed, exit after %s", inflightOK.Load(), failed.Load(), took.Round(time.Millisecond))
	if failed.Load() != 0 || inflightOK.Load() < 8 {
		t.Fatalf("in-flight requests: %d ok, %d failed (%s)", inflightOK.Load(), failed.Load(), firstErr)
	}
	if took > 4*time.Second {
		t.Fatalf("shutdown took %s with 1-second requests in flight", took)
	}
}
