package integration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// otlpReceiver accepts OTLP/HTTP trace exports and keeps their bodies.
type otlpReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v1/traces" {
			b, _ := io.ReadAll(req.Body)
			r.mu.Lock()
			r.bodies = append(r.bodies, b)
			r.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *otlpReceiver) all() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Join(r.bodies, nil)
}

func TestTracesExportedOnlyWhenConfigured(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	var traceparents []string
	var mu sync.Mutex
	up.Handle(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("Traceparent"))
		mu.Unlock()
		echo(w, r)
	})
	port := up.Addr[strings.LastIndex(up.Addr, ":")+1:]
	cfg := config(idp.TokenURL(), up.Addr, "") + "\n[connections.traced]\nhosts = [\"localhost:" + port + "\"]\ncredential = \"app\"\nprofile = \"upstream\"\npropagate_trace = true\n"

	// Without OTEL_* variables: nothing is exported, nothing propagated.
	quiet := startOTLPReceiver(t)
	a := startAuthgress(t, cfg, "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_TRACES_EXPORTER=")
	a.Get("http://" + up.Addr + "/")
	if err := a.Terminate(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if len(quiet.all()) != 0 {
		t.Fatal("spans exported without OTEL_* configuration")
	}

	recv := startOTLPReceiver(t)
	a = startAuthgress(t, cfg, "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	req := mustRequest(t, "GET", "http://"+up.Addr+"/plain", nil)
	req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") // the app's own
	a.Do(req)
	a.Get("http://localhost:" + port + "/traced")
	if err := a.Terminate(10 * time.Second); err != nil { // flushes the exporter
		t.Fatal(err)
	}
	spans := recv.all()
	for _, name := range []string{"proxy GET", "token fetch", "vault lookup", "authgress.connection"} {
		if !bytes.Contains(spans, []byte(name)) {
			t.Errorf("no %q in the exported spans", name)
		}
	}
	if !bytes.Contains(spans, []byte{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd}) {
		t.Error("the request span is not a child of the client's trace")
	}
	mu.Lock()
	defer mu.Unlock()
	// traceparents: [first run /, /plain, /traced]
	if len(traceparents) != 3 {
		t.Fatalf("upstream saw %d requests", len(traceparents))
	}
	if traceparents[0] != "" {
		t.Errorf("authgress sent a traceparent with tracing off: %q", traceparents[0])
	}
	if traceparents[1] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("the client's own traceparent was changed on a connection without propagate_trace: %q", traceparents[1])
	}
	if tp := traceparents[2]; tp == "" || strings.Contains(tp, "b7ad6b7169203331") {
		t.Errorf("propagate_trace: upstream got traceparent %q, want authgress's span", tp)
	}
}
