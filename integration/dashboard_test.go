package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The dashboard tests drive a real headless Chromium (Debian's chromium,
// which scripts/test installs) against the real binary.

// updateScreenshot is the environment variable that makes
// TestDashboardInBrowser write its screenshot to docs/dashboard.png.
const updateScreenshot = "AUTHGRESS_UPDATE_SCREENSHOT"

// browser starts a headless Chromium with a fresh profile for the test and
// returns a tab's context. Chromium runs as root here, so without its
// sandbox; the background-networking flags keep it from calling home (the
// network is closed) and --no-proxy-server from using the test's proxy
// variables.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		needed(t, "Chromium is needed for the dashboard tests (apt-get install chromium)")
	}
	out := &testlog.Buffer{}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
		chromedp.CombinedOutput(out),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Do starts the browser and opens the tab; the browser lives as
	// long as the context of that call, so it gets no deadline of its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", path, err, out.String())
	}
	return ctx
}

// tab runs the browser steps of a test with a deadline, failing the test on
// the first error.
type tab struct {
	t   *testing.T
	ctx context.Context
}

func (b tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](b tab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true.
func (b tab) waitFor(what, expr string) {
	b.t.Helper()
	run(b, "waiting for "+what, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

func (b tab) visibleRows() []string {
	b.t.Helper()
	return run(b, "visible rows", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('tr.conn')).filter(r => !r.hidden).map(r => r.dataset.name)`))
}

// rowText is the visible text of a connection's row.
func (b tab) rowText(name string) string {
	b.t.Helper()
	return run(b, "row "+name, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('tr.conn[data-name=%q]').innerText.replace(/\s+/g, ' ')`, name)))
}

// search replaces the search box's text by typing.
func (b tab) search(text string) {
	b.t.Helper()
	b.do("clearing the search box", chromedp.Evaluate[chromedp.Void](`(s => { s.value = ''; s.dispatchEvent(new Event('input')); })(document.getElementById('search'))`))
	if text != "" {
		b.do("typing "+text, chromedp.SendKeys(chromedp.CSS("#search"), text))
	}
}

type stageResult struct {
	Stage, Class, Detail string
}

// testConnection clicks a row's Test connection button and returns the
// inline status and the stages the details view shows.
func (b tab) testConnection(name string) (string, []stageResult) {
	b.t.Helper()
	row := fmt.Sprintf(`tr.conn[data-name=%q]`, name)
	b.do("clicking Test on "+name, chromedp.Click(chromedp.CSS(row+" button.test")))
	b.waitFor("the test of "+name, fmt.Sprintf(`(() => { const s = document.querySelector('%s .test-status'); return s.classList.contains('ok') || s.classList.contains('fail'); })()`, row))
	status := run(b, "test status", chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('%s .test-status').className + ' ' + document.querySelector('%s .test-status').textContent`, row, row)))
	stages := run(b, "test stages", chromedp.Evaluate[[]stageResult](fmt.Sprintf(`Array.from(document.querySelectorAll('tr.details[data-name=%q] li.stage')).map(li => ({Stage: li.dataset.stage, Class: li.className, Detail: li.querySelector('.stage-detail').textContent}))`, name)))
	return status, stages
}

var countdownText = regexp.MustCompile(`^(?:(\d+)h )?(?:(\d+)m )?(\d+)s$`)

func parseCountdown(t *testing.T, s string) int {
	t.Helper()
	m := countdownText.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		t.Fatalf("time left %q is not a countdown", s)
	}
	h, _ := strconv.Atoi(m[1])
	min, _ := strconv.Atoi(m[2])
	sec, _ := strconv.Atoi(m[3])
	return h*3600 + min*60 + sec
}

// dashboardConfig has a connection that works (orders, over mTLS), one
// reached only by its reverse listener (billing), one whose vault lookup
// fails (inventory), one whose token endpoint refuses the client (crm),
// one whose upstream is down (legacy), and one via a cluster with a
// healthy and a dead node (partner).
func dashboardConfig(t *testing.T, tokenURL, upstream string) string {
	dir := t.TempDir()
	cert, key := issueClient(t, dir, "authgress-gateway", nil, nil)
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	return fmt.Sprintf(`[server]
admin = "127.0.0.1:0"

[vaults.local]
type = "file"
path = "{{SECRETS}}"

[profiles.upstream]
ca = "{{CA}}"

[profiles.partner_mtls]
ca = "{{CA}}"
cert = %[4]q
key = %[5]q

[credentials.app]
vault = "local"
id = "app"
token_url = %[1]q
scopes = ["api:read"]

[credentials.inventory]
vault = "local"
id = "absent"
token_url = %[1]q
scopes = ["api:read"]

[credentials.crm]
vault = "local"
id = "wrong"
token_url = %[1]q
scopes = ["api:read"]

[clusters.dmz]
mode = "failover"
profile = "upstream"
health_interval = "500ms"
health_timeout = "400ms"
eject_after = 1
nodes = [ { name = "a1", url = "https://%[2]s" }, { name = "a2", url = "https://%[3]s" } ]

[connections.orders]
hosts = [%[2]q]
credential = "app"
profile = "partner_mtls"

[connections.billing]
listen = "127.0.0.1:0"
url = "https://%[2]s/billing"
credential = "app"
profile = "upstream"

[connections.inventory]
hosts = ["inventory.example"]
credential = "inventory"

[connections.crm]
hosts = ["crm.example"]
credential = "crm"

[connections.legacy]
hosts = [%[3]q]
credential = "app"
profile = "upstream"
timeout = "3s"

[connections.partner]
hosts = ["partner.example"]
via = "dmz"
`, tokenURL, upstream, closed, cert, key)
}

// adminStatus reads /status.
func adminStatus(t *testing.T, admin string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(adminGet(t, admin, "/status")), &doc); err != nil {
		t.Fatalf("/status: %v", err)
	}
	return doc
}

// pageTraffic records what the page loaded: every response, and its body
// once it finished loading.
type pageTraffic struct {
	mu       sync.Mutex
	urls     map[network.RequestID]string
	status   map[network.RequestID]int64
	finished []network.RequestID
}

func recordTraffic(t *testing.T, ctx context.Context) *pageTraffic {
	p := &pageTraffic{urls: map[network.RequestID]string{}, status: map[network.RequestID]int64{}}
	err := chromedp.Listen(ctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			p.urls[ev.RequestID], p.status[ev.RequestID] = ev.Response.URL, ev.Response.Status
		case *network.EventLoadingFinished:
			p.finished = append(p.finished, ev.RequestID)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bodies adds to out (URL → bodies) every response the page has finished
// loading since the last call. (Call it before the page navigates away.)
func (p *pageTraffic) bodies(t *testing.T, b tab, out map[string][]string) {
	t.Helper()
	p.mu.Lock()
	ids := slices.Clone(p.finished)
	p.finished = nil
	urls := map[network.RequestID]string{}
	for k, v := range p.urls {
		urls[k] = v
	}
	p.mu.Unlock()
	for _, id := range ids {
		u, ok := urls[id]
		if !ok || strings.HasPrefix(u, "data:") {
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		res, err := chromedp.Call(ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
		cancel()
		if err != nil {
			t.Fatalf("body of %s: %v", u, err)
		}
		out[u] = append(out[u], string(res.Body))
	}
}

// TestDashboardInBrowser drives the dashboard in Chromium: every connection
// is listed with what the page promises, the search box filters rows, the
// Test connection button shows each stage for a working connection and for
// each kind of broken one, the token's time left counts down in the page,
// the page has no console error, it holds no token or secret (DOM and every
// response it loaded), and it is readable on a narrow screen.
func TestDashboardInBrowser(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	a := startAuthgress(t, dashboardConfig(t, idp.TokenURL(), up.Addr))
	admin := a.adminAddr()

	// Traffic, so that the counters and the last error have something.
	for range 3 {
		if resp, _ := a.Get("http://" + up.Addr + "/orders/1"); resp.StatusCode != 200 {
			t.Fatalf("orders: %d", resp.StatusCode)
		}
	}
	if resp, _ := a.Get("http://crm.example/contacts"); resp.StatusCode != 502 {
		t.Fatalf("crm: %d, want 502", resp.StatusCode)
	}
	// Both nodes checked: a1 is a TLS server, a2 refuses connections.
	waitState(t, a, "dmz/a1", "healthy", 15*time.Second)
	waitState(t, a, "dmz/a2", "down", 15*time.Second)

	ctx := browser(t)
	b := tab{t, ctx}
	var consoleMu sync.Mutex
	var console []chromedp.ConsoleMessage
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, m)
			consoleMu.Unlock()
		}
	}()
	traffic := recordTraffic(t, ctx)

	// refresh=600: no refresh from /status while the test watches the
	// countdown, so the page itself must count.
	b.do("opening the dashboard", chromedp.EmulateViewport(1400, 900), chromedp.Navigate("http://"+admin+"/?refresh=600"))
	names := []string{"billing", "crm", "inventory", "legacy", "orders", "partner"}
	b.waitFor("every connection", fmt.Sprintf(`document.querySelectorAll('tr.conn').length === %d`, len(names)))
	if got := b.visibleRows(); !slices.Equal(got, names) {
		t.Fatalf("rows %v, want %v", got, names)
	}
	title := run(b, "title", chromedp.Title())
	if !strings.Contains(title, "authgress") {
		t.Errorf("title %q", title)
	}

	// What each row shows.
	orders := b.rowText("orders")
	for _, want := range []string{up.Addr, "forward", "app", "client_credentials", "local", "partner_mtls", "expires in", "valid", "3", "0 err"} {
		if !strings.Contains(orders, want) {
			t.Errorf("orders row lacks %q:\n%s", want, orders)
		}
	}
	billingListen := ""
	for _, c := range adminStatus(t, admin)["connections"].([]any) {
		if cm := c.(map[string]any); cm["name"] == "billing" {
			billingListen, _ = cm["listen"].(string)
		}
	}
	if billing := b.rowText("billing"); billingListen == "" || !strings.Contains(billing, "reverse "+billingListen+" ") || strings.Contains(billing, "forward") {
		t.Errorf("billing row (listener %q):\n%s", billingListen, billing)
	}
	if crm := b.rowText("crm"); !strings.Contains(crm, "token_rejected") || !strings.Contains(crm, "1 err") || !strings.Contains(crm, "none") {
		t.Errorf("crm row:\n%s", crm)
	}
	if partner := b.rowText("partner"); !strings.Contains(partner, "via dmz") || !strings.Contains(partner, "dmz/a1 healthy") || !strings.Contains(partner, "dmz/a2 down") {
		t.Errorf("partner row:\n%s", partner)
	}

	// The search box filters rows as the user types.
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"crm", []string{"crm"}},
		{"reverse", []string{"billing"}},
		{"dmz/a2", []string{"partner"}},
		{"APP LOCAL", []string{"billing", "legacy", "orders"}}, // every word, any case
		{"partner_mtls", []string{"orders"}},
		{"no-such-connection", nil},
		{"", names},
	} {
		b.search(c.query)
		if got := b.visibleRows(); !slices.Equal(got, c.want) {
			t.Errorf("search %q: rows %v, want %v", c.query, got, c.want)
		}
	}
	if empty := run(b, "empty note", chromedp.Evaluate[bool](`document.getElementById('empty').hidden`)); !empty {
		t.Error("the no-match note shows while every row does")
	}

	// The token's time left counts down in the page (no refresh happens).
	left := func() int {
		return parseCountdown(t, run(b, "time left", chromedp.Evaluate[string](`document.querySelector('tr.conn[data-name="orders"] .token-left').textContent`)))
	}
	// It must go down by whole seconds as time passes, never faster than
	// the clock (a busy machine may delay the page's timer, so it is
	// polled rather than read once after a fixed sleep).
	first, began := left(), time.Now()
	for {
		second := left()
		elapsed := time.Since(began)
		if first < 200 || second > first || float64(first-second) > elapsed.Seconds()+1.5 {
			t.Fatalf("time left went from %ds to %ds in %s", first, second, elapsed.Round(100*time.Millisecond))
		}
		if first-second >= 2 {
			break
		}
		if elapsed > 10*time.Second {
			t.Fatalf("time left did not count down: %ds to %ds in %s", first, second, elapsed.Round(100*time.Millisecond))
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Test connection: a working connection, each broken stage, and a
	// connection only its reverse listener reaches.
	stagesOf := func(ss []stageResult) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Stage+":"+strings.TrimPrefix(s.Class, "stage "))
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		name, status, stages, detail string
	}{
		{"orders", "ok ✓ ok (200)", "vault:ok token:ok upstream:ok", "200 OK"},
		{"billing", "ok ✓ ok (200)", "vault:ok token:ok upstream:ok", "200 OK"},
		{"inventory", "fail ✗ failed at vault", "vault:fail", "credential_not_found"},
		{"crm", "fail ✗ failed at token", "vault:ok token:fail", "invalid_client"},
		{"legacy", "fail ✗ failed at upstream", "vault:ok token:ok upstream:fail", "upstream_unreachable"},
		{"partner", "ok ✓ ok (200)", "vault:skipped token:skipped upstream:ok", "200 OK"},
	} {
		status, stages := b.testConnection(c.name)
		last := ""
		if len(stages) > 0 {
			last = stages[len(stages)-1].Detail
		}
		if status != "test-status "+c.status || stagesOf(stages) != c.stages || !strings.Contains(last, c.detail) {
			t.Errorf("test %s: status %q, stages %q, last detail %q; want %q, %q, %q", c.name, status, stagesOf(stages), last, c.status, c.stages, c.detail)
		}
	}
	if n := up.count.Load(); n < 5 { // 3 requests, and the tests of orders, billing (and partner through the node)
		t.Errorf("the upstream saw %d requests", n)
	}

	// The page refreshes itself from /status: new traffic shows up without
	// a reload.
	bodies := map[string][]string{}
	traffic.bodies(t, b, bodies)
	b.do("opening with refresh=1", chromedp.Navigate("http://"+admin+"/?refresh=1"))
	b.waitFor("the rows", `document.querySelectorAll('tr.conn').length === 6`)
	a.Get("http://" + up.Addr + "/orders/2")
	b.waitFor("the fourth request of orders", `document.querySelector('tr.conn[data-name="orders"] .requests').textContent === '4'`)
	// A keyboard user keeps the focus across refreshes.
	b.do("focusing a button", chromedp.Focus(chromedp.CSS(`tr.conn[data-name="legacy"] button.test`)))
	time.Sleep(2200 * time.Millisecond)
	if f := run(b, "focus", chromedp.Evaluate[string](`(e => e.closest('tr') ? e.closest('tr').dataset.name + ' ' + e.className : e.tagName)(document.activeElement)`)); f != "legacy test" {
		t.Errorf("after two refreshes the focus is on %q, want the Test button of legacy", f)
	}

	// The screenshot of the docs: two tests shown, wide screen.
	b.do("showing two results", chromedp.Click(chromedp.CSS(`tr.conn[data-name="orders"] button.test`)), chromedp.Click(chromedp.CSS(`tr.conn[data-name="crm"] button.test`)))
	b.waitFor("the two results", `document.querySelectorAll('.test-status.ok, .test-status.fail').length === 2`)
	time.Sleep(300 * time.Millisecond) // let the fonts settle
	if w := run(b, "table width", chromedp.Evaluate[[]int](`[document.querySelector('main').scrollWidth, document.querySelector('main').clientWidth]`)); w[0] > w[1] {
		cols := run(b, "column widths", chromedp.Evaluate[[]int](`Array.from(document.querySelectorAll('thead th')).map(th => th.offsetWidth)`))
		t.Errorf("wide screen: the table is %dpx wide in %dpx (columns %v)", w[0], w[1], cols)
	}
	shot := run(b, "screenshot", chromedp.FullScreenshot(100))
	if !bytes.HasPrefix(shot, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatal("the screenshot is not a PNG")
	}
	dest := t.TempDir() + "/dashboard.png"
	if os.Getenv(updateScreenshot) != "" {
		dest = "../docs/dashboard.png"
	}
	if err := os.WriteFile(dest, shot, 0o644); err != nil {
		t.Fatal(err)
	}

	// Narrow screen: no sideways scrolling, each row a card with labels.
	b.do("narrow screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.waitFor("the narrow layout", `getComputedStyle(document.querySelector('thead')).display === 'none'`)
	if w := run(b, "page width", chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); w[0] > w[1] {
		t.Errorf("narrow screen: the page is %dpx wide in a %dpx window", w[0], w[1])
	}
	if label := run(b, "cell label", chromedp.Evaluate[string](`getComputedStyle(document.querySelector('tr.conn td[data-label="Token"]'), '::before').content`)); label != `"Token"` {
		t.Errorf("narrow screen: a cell's label is %s", label)
	}
	if os.Getenv(updateScreenshot) != "" {
		narrow := run(b, "narrow screenshot", chromedp.CaptureScreenshot())
		_ = os.WriteFile("../docs/dashboard-narrow.png", narrow, 0o644)
	}

	// Nothing the page shows or loaded holds a token or a secret.
	dom := run(b, "DOM", chromedp.OuterHTML(chromedp.CSS("html")))
	assertNoCanary(t, "the dashboard's DOM", dom)
	traffic.bodies(t, b, bodies)
	for _, path := range []string{"/?refresh=600", "/?refresh=1", "/assets/dashboard.js", "/assets/dashboard.css", "/status", "/api/test/orders", "/api/test/crm"} {
		if len(bodies["http://"+admin+path]) == 0 {
			t.Errorf("the page did not load %s (loaded: %v)", path, keys(bodies))
		}
	}
	for u, bs := range bodies {
		for _, body := range bs {
			assertNoCanary(t, "response "+u, body)
		}
	}
	if !strings.Contains(strings.Join(bodies["http://"+admin+"/api/test/crm"], ""), "invalid_client") {
		t.Error("the crm test report does not name the refusal")
	}

	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, m := range console {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			t.Errorf("console %s (%s:%d)", m, m.URL, m.Line+1)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDashboardAdminAuth: with [server.admin_auth], the page, /status and
// the test API need a user (probes and /metrics do not), and a POST needs
// the page's CSRF token and a same-origin Origin — the page itself has
// both, a script without the token and a foreign origin are refused.
func TestDashboardAdminAuth(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	password := "admin-canary-" + randomHex(8)
	extraCanaries.Store("the admin password", password)
	cfg := config(idp.TokenURL(), up.Addr, "")
	a := startAuthgress(t, "[server]\nadmin = \"127.0.0.1:0\"\n[server.admin_auth]\nusers = [{ name = \"ops\", password = { env = \"ADMIN_PASSWORD\" } }]\n"+cfg,
		"ADMIN_PASSWORD="+password)
	admin := "http://" + a.adminAddr()

	send := func(method, path, user, pass string, header map[string]string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, admin+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		assertNoCanary(t, method+" "+path, string(body))
		return resp.StatusCode, resp.Header, string(body)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, _ := send("GET", p, "", "", nil); code != 200 {
			t.Errorf("GET %s without credentials: %d, want 200", p, code)
		}
	}
	for _, c := range []struct{ method, path, user, pass string }{
		{"GET", "/", "", ""}, {"GET", "/status", "", ""}, {"GET", "/assets/dashboard.js", "", ""}, {"POST", "/api/test/api", "", ""},
		{"GET", "/", "ops", "wrong"}, {"GET", "/status", "nobody", password}, {"GET", "//status", "", ""}, {"GET", "/nope", "", ""},
	} {
		code, h, _ := send(c.method, c.path, c.user, c.pass, nil)
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s %s as %q: %d %q, want 401 with a Basic challenge", c.method, c.path, c.user, code, h.Get("WWW-Authenticate"))
		}
	}
	code, _, page := send("GET", "/", "ops", password, nil)
	m := regexp.MustCompile(`<meta name="authgress-csrf" content="([^"]+)">`).FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("GET / as ops: %d, CSRF token found: %v", code, m != nil)
	}
	csrf := m[1]
	if code, _, _ := send("GET", "/status", "ops", password, nil); code != 200 {
		t.Fatalf("GET /status as ops: %d", code)
	}
	for _, c := range []struct {
		what   string
		header map[string]string
		want   int
	}{
		{"no CSRF token, same origin", map[string]string{"Origin": admin}, 403},
		{"a wrong CSRF token", map[string]string{"Origin": admin, "X-CSRF-Token": csrf + "x"}, 403},
		{"the CSRF token, no Origin", map[string]string{"X-CSRF-Token": csrf}, 403},
		{"the CSRF token, a foreign Origin", map[string]string{"X-CSRF-Token": csrf, "Origin": "http://evil.example"}, 403},
		{"the CSRF token, another port", map[string]string{"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:1"}, 403},
		{"the CSRF token, cross-site fetch", map[string]string{"X-CSRF-Token": csrf, "Origin": admin, "Sec-Fetch-Site": "cross-site"}, 403},
		{"the CSRF token and the same origin", map[string]string{"X-CSRF-Token": csrf, "Origin": admin}, 200},
	} {
		code, _, body := send("POST", "/api/test/api", "ops", password, c.header)
		if code != c.want {
			t.Errorf("POST /api/test/api with %s: %d, want %d\n%s", c.what, code, c.want, body)
		}
		if code == 200 && !strings.Contains(body, `"ok": true`) {
			t.Errorf("test report: %s", body)
		}
	}
	if code, _, _ := send("POST", "/api/test/nope", "ops", password, map[string]string{"X-CSRF-Token": csrf, "Origin": admin}); code != 404 {
		t.Errorf("POST /api/test/nope: %d, want 404", code)
	}

	// In the browser: without credentials the page is refused; with them it
	// works, and its own POST carries the token and the origin. A script
	// without the token is refused.
	ctx := browser(t)
	b := tab{t, ctx}
	// Headless Chromium has no login dialog: it ends a navigation that gets
	// a Basic challenge with ERR_INVALID_AUTH_CREDENTIALS (or shows the 401).
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := chromedp.Run(nctx, chromedp.NavigateResponse(admin+"/"))
	cancel()
	if (err == nil && resp.Status != 401) || (err != nil && !strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS")) {
		t.Fatalf("the page without credentials: %v %v, want 401", resp, err)
	}
	if n := run(b, "rows", chromedp.Evaluate[int](`document.querySelectorAll('tr.conn').length`)); n != 0 {
		t.Fatalf("%d rows without credentials", n)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+password))
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
	resp = run(b, "opening with credentials", chromedp.NavigateResponse(admin+"/"))
	if resp.Status != 200 {
		t.Fatalf("the page with credentials: %d", resp.Status)
	}
	b.waitFor("the connection", `document.querySelectorAll('tr.conn').length === 1`)
	if status, stages := b.testConnection("api"); status != "test-status ok ✓ ok (200)" || len(stages) != 3 {
		t.Fatalf("Test connection in the page: %q %v", status, stages)
	}
	a.WaitLog(func(l map[string]any) bool {
		return l["msg"] == "connection test" && l["connection"] == "api" && l["ok"] == true && l["admin_user"] == "ops"
	})
	forged := run(b, "a POST without the token", chromedp.Evaluate[int](`fetch('/api/test/api', {method: 'POST'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if forged != 403 {
		t.Errorf("a script's POST without the CSRF token: %d, want 403", forged)
	}
}
