// Command demo shows authgress injecting a token end to end, with nothing to
// install: it starts a small OAuth 2.0 token endpoint and an HTTPS API on
// loopback, builds and runs authgress with examples/demo/authgress.toml, and
// sends requests through it as an app with HTTP_PROXY would.
//
//	go run ./examples/demo          # three requests, then stop
//	go run ./examples/demo -keep    # keep running; try it with curl
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	tokenAddr = "127.0.0.1:18400"
	apiAddr   = "127.0.0.1:18443"
	proxyAddr = "127.0.0.1:18080"
)

func main() {
	keep := flag.Bool("keep", false, "keep running after the demo requests (stop with Ctrl-C)")
	flag.Parse()
	if err := run(*keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// idp is the demo token endpoint: client_secret_basic, 60-second tokens.
type idp struct {
	mu      sync.Mutex
	issued  map[string]time.Time
	fetches int
}

func (i *idp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, secret, _ := r.BasicAuth()
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPost || r.FormValue("grant_type") != "client_credentials" {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
		return
	}
	if id != "demo-client" || secret != "demo-secret-not-for-production" {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":"invalid_client"}`)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "demo_at_" + hex.EncodeToString(b)
	i.mu.Lock()
	i.issued[tok] = time.Now().Add(60 * time.Second)
	i.fetches++
	i.mu.Unlock()
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":60,"scope":%q}`, tok, r.FormValue("scope"))
}

func (i *idp) valid(tok string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	exp, ok := i.issued[tok]
	return ok && time.Now().Before(exp)
}

func run(keep bool) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "examples", "demo")
	tokens := &idp{issued: map[string]time.Time{}}
	if err := serve(tokenAddr, tokens, nil); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki", "server.pem"), filepath.Join(dir, "pki", "server-key.pem"))
	if err != nil {
		return err
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !tokens.valid(tok) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":"invalid_token"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.Path, "over_tls": r.TLS != nil,
			"authorization_seen": "Bearer " + tok[:12] + "…",
			"orders":             []string{"A-1001", "A-1002"},
		})
	})
	if err := serve(apiAddr, api, &tls.Config{Certificates: []tls.Certificate{cert}}); err != nil {
		return err
	}

	bin := filepath.Join(os.TempDir(), "authgress-demo")
	fmt.Println("building authgress …")
	build := exec.Command("go", "build", "-o", bin, "./cmd/authgress")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "authgress.toml"))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitFor(proxyAddr); err != nil {
		return err
	}

	proxyURL, _ := url.Parse("http://" + proxyAddr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	fmt.Printf("\nThe app calls http://localhost:18443/orders with HTTP_PROXY=http://%s and no credentials.\n", proxyAddr)
	fmt.Println("authgress reads the client secret from the vault, gets a token, and calls the API over https:")
	for n := 1; n <= 3; n++ {
		resp, err := client.Get("http://localhost:18443/orders")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("  request %d: %s  %s", n, resp.Status, body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("request %d failed", n)
		}
	}
	resp, err := client.Get("http://elsewhere.example/")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("  unmatched host: %s  %s", resp.Status, body)
	tokens.mu.Lock()
	fetched := tokens.fetches
	tokens.mu.Unlock()
	fmt.Printf("\nToken requests made to the token endpoint: %d (the token is cached and refreshed ahead of expiry).\n", fetched)

	if !keep {
		return nil
	}
	fmt.Printf("\nStill running. Try:\n  curl -x http://%s http://localhost:18443/orders\nStop with Ctrl-C.\n", proxyAddr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func serve(addr string, h http.Handler, tlsCfg *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s (is another demo running?): %w", addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	go func() { _ = http.Serve(ln, h) }()
	return nil
}

func waitFor(addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("authgress did not start listening on %s", addr)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run the demo from inside the authgress repository")
		}
		dir = parent
	}
}
