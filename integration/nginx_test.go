package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

// Nginx is a real nginx (Debian package) serving HTTPS upstreams that
// require client certificates (ssl_verify_client on) and report the client
// DN they saw.
type Nginx struct {
	MTLS     string // 127.0.0.1:port: reports "dn=[...] auth=[...]"
	TokenEP  string // 127.0.0.1:port: mTLS in front of a token endpoint, if asked for
	dir      string
	cmd      *exec.Cmd
	errorLog string
}

// startNginx starts nginx; tokenBackend ("" for none) is the plain-http
// address of an OAuth server to put behind an mTLS listener.
func startNginx(t *testing.T, tokenBackend string) *Nginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("nginx is needed for the mTLS tests (apt-get install nginx-light or nginx)")
		}
	}
	p := getPKI(t)
	n := &Nginx{dir: t.TempDir(), MTLS: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	_ = os.MkdirAll(filepath.Join(n.dir, "tmp"), 0o777)
	n.errorLog = filepath.Join(n.dir, "error.log")
	tls := fmt.Sprintf(`ssl_certificate %s; ssl_certificate_key %s; ssl_client_certificate %s; ssl_verify_client on;`,
		p.serverCertFile, p.serverKeyFile, p.caFile)
	token := ""
	if tokenBackend != "" {
		n.TokenEP = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		token = fmt.Sprintf(`server { listen %s ssl; %s
			location / { proxy_pass http://%s; proxy_set_header X-Client-DN $ssl_client_s_dn; } }`, n.TokenEP, tls, tokenBackend)
	}
	conf := fmt.Sprintf(`daemon off; master_process off; worker_processes 1;
pid %[1]s/nginx.pid; error_log %[2]s warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  keepalive_requests 100000;
  server { listen %[3]s ssl; %[4]s
    location / { default_type text/plain; return 200 "dn=[$ssl_client_s_dn] auth=[$http_authorization]\n"; } }
  %[5]s
}
`, n.dir, n.errorLog, n.MTLS, tls, token)
	path := filepath.Join(n.dir, "nginx.conf")
	_ = os.WriteFile(path, []byte(conf), 0o644)
	n.cmd = exec.Command(bin, "-p", n.dir, "-e", n.errorLog, "-c", path)
	out := &testlog.Buffer{}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		_ = n.cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", n.MTLS)
		if err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(n.errorLog)
			t.Fatalf("nginx did not start: %s\n%s", out.String(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
