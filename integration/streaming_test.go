package integration

import (
	"bufio"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNDJSONStreamReachesClientAsWritten(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	release := make(chan struct{})
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, "{\"event\":1}\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "{\"event\":2}\n")
	})
	a := startAuthgress(t, config(idp.TokenURL(), up.Addr, ""))
	resp, err := a.Client().Get("http://" + up.Addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != `{"event":1}` {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first NDJSON line was held back while the upstream kept the stream open")
	}
	close(release)
	if l := <-lines; l != `{"event":2}` {
		t.Fatalf("second line %q", l)
	}
}

// peakRSS reads the peak resident set size of a process, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func TestLargeBodiesStreamBothWays(t *testing.T) {
	const size = 256 << 20
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = io.CopyN(w, rand.Reader, size)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
	})
	a := startAuthgress(t, config(idp.TokenURL(), up.Addr, ""))
	before := peakRSS(t, a.cmd.Process.Pid)

	req := mustRequest(t, "PUT", "http://"+up.Addr+"/upload", io.LimitReader(rand.Reader, size)) // chunked: unknown length
	resp, body := a.Do(req)
	if resp.StatusCode != 200 || body != strconv.Itoa(size) {
		t.Fatalf("upload: %d %q", resp.StatusCode, body)
	}
	resp2, err := a.Client().Get("http://" + up.Addr + "/download")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp2.Body)
	resp2.Body.Close()
	if n != size {
		t.Fatalf("download: %d of %d bytes", n, size)
	}
	after := peakRSS(t, a.cmd.Process.Pid)
	t.Logf("peak RSS %d MiB before, %d MiB after moving 2 x %d MiB", before>>20, after>>20, size>>20)
	if after-before > 64<<20 {
		t.Fatalf("peak RSS grew by %d MiB moving %d MiB bodies: bodies are being held in memory", (after-before)>>20, size>>20)
	}
}
