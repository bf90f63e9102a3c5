package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ccpAccount is an account in the emulated CyberArk vault.
type ccpAccount struct {
	UserName string
	Contents []string // Content per read; the last one repeats (a rotation)
	Fail     string   // an error code to answer with instead
	Changing bool     // PasswordChangeInProcess
	reads    int
}

// CCPEmulator speaks CyberArk's Central Credential Provider REST API as
// documented (GET /AIMWebService/api/Accounts?AppID=&Safe=&Folder=&Object=
// [&PolicyID=]; {"Content","UserName","PasswordChangeInProcess"}; errors as
// {"ErrorCode","ErrorMsg"}), over TLS, checking the caller's client
// certificate against the AppID like the CCP's authentication check.
type CCPEmulator struct {
	Addr     string
	t        *testing.T
	mu       sync.Mutex
	apps     map[string][]string // AppID -> allowed client certificate CNs
	accounts map[string]*ccpAccount
	queries  []string
	requests atomic.Int64
	srv      *http.Server
}

// ccpErrors is CyberArk's documented error table: code -> status, message.
var ccpErrors = map[string]struct {
	status int
	msg    string
}{
	"AIMWS030E": {400, "Invalid query format"},
	"APPAP227E": {400, "Too many objects match the query"},
	"APPAP007E": {400, "Connection to the Vault has failed"},
	"APPAP081E": {400, "Request message content is invalid"},
	"CASVL010E": {400, "Invalid characters in User Name"},
	"AIMWS031E": {400, "AppID parameter is required"},
	"APPAP306E": {403, "App failed on authentication check"},
	"APPAP008E": {403, "ITATS982E User is not defined"},
	"APPAP004E": {404, "Password object matching query was not found"},
	"APPAP282E": {500, "Password is currently being changed by the CPM"},
}

func startCCP(t *testing.T) *CCPEmulator {
	t.Helper()
	c := &CCPEmulator{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), apps: map[string][]string{}, accounts: map[string]*ccpAccount{}}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

func ccpKey(safe, folder, object string) string { return safe + "/" + folder + "/" + object }

// Allow lets AppID be used by callers presenting a certificate with CN cn.
func (c *CCPEmulator) Allow(appID, cn string) {
	c.mu.Lock()
	c.apps[appID] = append(c.apps[appID], cn)
	c.mu.Unlock()
}

// Put adds an account.
func (c *CCPEmulator) Put(safe, object string, a *ccpAccount) {
	c.mu.Lock()
	c.accounts[ccpKey(safe, "Root", object)] = a
	c.mu.Unlock()
}

func (c *CCPEmulator) Start() {
	p := getPKI(c.t)
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	ln, err := net.Listen("tcp", c.Addr)
	for i := 0; err != nil && i < 50; i++ { // the port may still be closing after Stop
		time.Sleep(100 * time.Millisecond)
		ln, err = net.Listen("tcp", c.Addr)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ErrorLog: nil}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool})
	go func() { _ = c.srv.Serve(tln) }()
}

// Stop shuts the emulator down (the vault becomes unreachable).
func (c *CCPEmulator) Stop() {
	if c.srv != nil {
		_ = c.srv.Close()
	}
}

func (c *CCPEmulator) fail(w http.ResponseWriter, code string) {
	e := ccpErrors[code]
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"ErrorCode": code, "ErrorMsg": e.msg})
}

func (c *CCPEmulator) serve(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	if r.URL.Path != "/AIMWebService/api/Accounts" {
		w.WriteHeader(404)
		return
	}
	q := map[string]string{} // parameter names are case-insensitive
	for k, v := range r.URL.Query() {
		q[strings.ToLower(k)] = v[0]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, r.URL.RawQuery)
	appID := q["appid"]
	if appID == "" {
		c.fail(w, "AIMWS031E")
		return
	}
	allowed, ok := c.apps[appID]
	if !ok {
		c.fail(w, "APPAP008E")
		return
	}
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	permitted := false
	for _, a := range allowed {
		permitted = permitted || a == cn
	}
	if !permitted {
		c.fail(w, "APPAP306E")
		return
	}
	for _, v := range q {
		if strings.Contains(v, ";") {
			c.fail(w, "AIMWS030E")
			return
		}
	}
	if len(q) < 2 {
		c.fail(w, "AIMWS030E")
		return
	}
	folder := q["folder"]
	if folder == "" {
		folder = "Root"
	}
	a, ok := c.accounts[ccpKey(q["safe"], folder, q["object"])]
	if !ok {
		c.fail(w, "APPAP004E")
		return
	}
	if a.Fail != "" {
		c.fail(w, a.Fail)
		return
	}
	content := a.Contents[min(a.reads, len(a.Contents)-1)]
	a.reads++
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"Content": content, "UserName": a.UserName, "Address": "login.example.com",
		"Safe": q["safe"], "Folder": folder, "Name": q["object"], "PasswordChangeInProcess": a.Changing})
}

func (c *CCPEmulator) Queries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...)
}
