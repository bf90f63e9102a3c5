package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Ports of the peers (all on 127.0.0.1).
const (
	upPlain      = "127.0.0.1:18080" // nginx upstream, echoes auth=[...]
	upMTLS       = "127.0.0.1:18443" // nginx upstream, ssl_verify_client on
	nginxRev     = "127.0.0.1:18081" // nginx reverse proxy -> upPlain, static Authorization
	nginxRevMTLS = "127.0.0.1:18082" // nginx reverse proxy -> upMTLS with a client certificate
	squidAddr    = "127.0.0.1:13128" // squid forward proxy, static Authorization
	gpBare       = "127.0.0.1:18090" // goproxy-bare
	gpBareMTLS   = "127.0.0.1:18091" // goproxy-bare upgrading to https with mTLS
	agLog        = "127.0.0.1:18100" // authgress, access log on (the default)
	agNoLog      = "127.0.0.1:18101" // authgress, access log off
	agIntercept  = "127.0.0.1:18102" // authgress with [intercept], access log off
	agRevLog     = "127.0.0.1:18103" // authgress's reverse listener to upPlain, access log on
	agRevNoLog   = "127.0.0.1:18104" // the same, access log off
	revBare      = "127.0.0.1:18092" // httputil.ReverseProxy to upPlain with a buffer pool
	nethttpBare  = "127.0.0.1:18093" // net/http handler + http.Transport forward proxy
	gpChain1     = "127.0.0.1:18095" // goproxy-bare, no header, upstream proxy gpChain2 over mTLS
	gpChain2     = "127.0.0.1:18096" // goproxy-bare serving TLS with client certificates
	agGateway    = "127.0.0.1:18106" // authgress gateway: via cluster "bench" (agAgent), access log on
	agAgent      = "127.0.0.1:18107" // authgress agent ([server.tls], client_ca), access log on
	smokescreen  = "127.0.0.1:18097" // stripe/smokescreen (-smokescreen-bin), loopback egress allowed
	agAB         = "127.0.0.1:18105" // authgress, access log on, with -ab-env
	tokenAddr    = "127.0.0.1:18400" // token endpoint, 1 h tokens
)

// fixedPorts are every address the harness listens on (the sections'
// own included), checked free before anything starts.
var fixedPorts = []string{upPlain, upMTLS, nginxRev, nginxRevMTLS, squidAddr, gpBare, gpBareMTLS, agLog, agNoLog,
	agIntercept, agRevLog, agRevNoLog, revBare, agAB, tokenAddr, nethttpBare, gpChain1, gpChain2, agGateway, agAgent, smokescreen,
	"127.0.0.1:18120", "127.0.0.1:18121", "127.0.0.1:18122", "127.0.0.1:18130",
	"127.0.0.1:18410", "127.0.0.1:18411", "127.0.0.1:18412"}

// checkPortsFree fails when one of the harness's addresses is taken, most
// often by another benchmark run on this machine: the rows would measure
// that run's processes (and charge the CPU of this run's, which could not
// listen).
func checkPortsFree() error {
	for _, addr := range fixedPorts {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s is taken (another benchmark run on this machine?): %w", addr, err)
		}
		l.Close()
	}
	return nil
}

type pkiFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func makePKI(dir string) (pkiFiles, error) {
	p := pkiFiles{}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		_ = os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644)
		return path
	}
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	issue := func(name, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", kder)
	}
	p.serverCert, p.serverKey = issue("server", "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCert, p.clientKey = issue("client", "bench-client", x509.ExtKeyUsageClientAuth, nil)
	return p, nil
}

func findBinary(name string, more ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range more {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (bench/run.sh installs it)", name)
}

func (h *harness) nginx(name, body string) (*exec.Cmd, error) {
	bin, err := findBinary("nginx", "/usr/sbin/nginx")
	if err != nil {
		return nil, err
	}
	d := filepath.Join(h.dir, name)
	_ = os.MkdirAll(filepath.Join(d, "tmp"), 0o777)
	conf := fmt.Sprintf(`daemon off; worker_processes 2; pid %[1]s/nginx.pid; error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  keepalive_requests 1000000;
  %[2]s
}
`, d, body)
	path := filepath.Join(d, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return h.start(name, []string{bin, "-p", d, "-e", filepath.Join(d, "error.log"), "-c", path})
}

func (h *harness) squid() (int, error) {
	bin, err := findBinary("squid", "/usr/sbin/squid")
	if err != nil {
		return 0, err
	}
	d := filepath.Join(h.dir, "squid")
	_ = os.MkdirAll(d, 0o777)
	_ = os.Chmod(d, 0o777)
	conf := fmt.Sprintf(`http_port %s
acl all_src src all
http_access allow all_src
request_header_add Authorization "Bearer static-token" all
cache deny all
cache_mem 8 MB
access_log none
cache_log %[2]s/cache.log
pid_filename %[2]s/squid.pid
coredump_dir %[2]s
shutdown_lifetime 1 seconds
`, squidAddr, d)
	path := filepath.Join(d, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return 0, err
	}
	cmd, err := h.start("squid", []string{bin, "-N", "-f", path})
	if err != nil {
		return 0, err
	}
	return cmd.Process.Pid, nil
}

// authgressConfig has the plain and the mTLS upstream as connections.
func authgressConfig(listen, tokenURL string, p pkiFiles, access bool, extra string) string {
	return fmt.Sprintf(`[server]
listen = %q

[log]
access = %v

[vaults.bench]
type = "env"

[credentials.api]
vault = "bench"
id = "BENCH"
token_url = %q
scopes = ["api.read"]

[profiles.mtls]
ca = %q
cert = %q
key = %q

[connections.plain]
hosts = [%q]
credential = "api"
allow_insecure = true

[connections.mtls]
hosts = [%q]
credential = "api"
profile = "mtls"
%s`, listen, access, tokenURL, p.ca, p.clientCert, p.clientKey, upPlain, upMTLS, extra)
}

// reverseConn is a connection with a reverse listener on listen to the
// plain upstream.
func reverseConn(listen string) string {
	return fmt.Sprintf("\n[connections.rev]\nlisten = %q\nurl = \"http://%s/\"\ncredential = \"api\"\nallow_insecure = true\n", listen, upPlain)
}

// authgress starts an authgress process with config; it returns its pid.
// With -profile, each serves pprof on a port of its own (18600 and up).
func (h *harness) authgress(name, config string, extraEnv ...string) (int, error) {
	path := filepath.Join(h.dir, name+".toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return 0, err
	}
	env := append([]string{"BENCH_CLIENT_ID=bench", "BENCH_CLIENT_SECRET=bench-secret"}, extraEnv...)
	addr := ""
	if *profile != "" {
		addr = fmt.Sprintf("127.0.0.1:%d", 18600+len(pprofAddr))
		env = append(env, "AUTHGRESS_PPROF="+addr)
	}
	cmd, err := h.start(name, []string{h.bins["authgress"], "run", "--config", path}, env...)
	if err != nil {
		return 0, err
	}
	if addr != "" {
		pprofAddr[cmd.Process.Pid] = addr
	}
	return cmd.Process.Pid, nil
}

var pids = map[string]int{}

func (h *harness) startPeers(p pkiFiles) error {
	if err := checkPortsFree(); err != nil {
		return err
	}
	tls := fmt.Sprintf("ssl_certificate %s; ssl_certificate_key %s;", p.serverCert, p.serverKey)
	if _, err := h.nginx("upstream", fmt.Sprintf(`
  server { listen %s; location / { default_type text/plain; return 200 "ok auth=[$http_authorization]\n"; } }
  server { listen %s ssl; %s ssl_client_certificate %s; ssl_verify_client on;
    location / { default_type text/plain; return 200 "ok dn=[$ssl_client_s_dn] auth=[$http_authorization]\n"; } }`,
		upPlain, upMTLS, tls, p.ca)); err != nil {
		return err
	}
	rev, err := h.nginx("reverse", fmt.Sprintf(`
  upstream plain { server %s; keepalive 128; }
  upstream mtls { server %s; keepalive 128; }
  server { listen %s; location / { proxy_pass http://plain; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Authorization "Bearer static-token"; } }
  server { listen %s; location / { proxy_pass https://mtls; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Authorization "Bearer static-token";
    proxy_ssl_certificate %s; proxy_ssl_certificate_key %s; proxy_ssl_trusted_certificate %s; proxy_ssl_verify on;
    proxy_ssl_name 127.0.0.1; proxy_ssl_session_reuse on; } }`,
		upPlain, upMTLS, nginxRev, nginxRevMTLS, p.clientCert, p.clientKey, p.ca))
	if err != nil {
		return err
	}
	pids["nginx-reverse"] = rev.Process.Pid
	if cmd, err := h.start("tokenserver", []string{h.bins["tokenserver"], "-listen", tokenAddr, "-ttl", "3600"}); err != nil {
		return err
	} else {
		pids["tokenserver"] = cmd.Process.Pid
	}
	for name, args := range map[string][]string{
		"goproxy-bare":      {h.bins["goproxy-bare"], "-listen", gpBare},
		"goproxy-bare-mtls": {h.bins["goproxy-bare"], "-listen", gpBareMTLS, "-cert", p.clientCert, "-key", p.clientKey, "-ca", p.ca},
		"reverse-bare":      {h.bins["reverse-bare"], "-listen", revBare, "-upstream", "http://" + upPlain},
		"nethttp-bare":      {h.bins["nethttp-bare"], "-listen", nethttpBare},
	} {
		cmd, err := h.start(name, args)
		if err != nil {
			return err
		}
		pids[name] = cmd.Process.Pid
	}
	if pids["authgress"], err = h.authgress("authgress", authgressConfig(agLog, "http://"+tokenAddr+"/token", p, true, reverseConn(agRevLog))); err != nil {
		return err
	}
	if pids["authgress-nolog"], err = h.authgress("authgress-nolog", authgressConfig(agNoLog, "http://"+tokenAddr+"/token", p, false, reverseConn(agRevNoLog))); err != nil {
		return err
	}
	if *abEnv != "" || *abBin != "" {
		bin := h.bins["authgress"]
		if *abBin != "" {
			h.bins["authgress"] = *abBin
		}
		pids["authgress-ab"], err = h.authgress("authgress-ab", authgressConfig(agAB, "http://"+tokenAddr+"/token", p, true, ""), strings.Fields(*abEnv)...)
		h.bins["authgress"] = bin
		if err != nil {
			return err
		}
	}
	if pids["squid"], err = h.squid(); err != nil {
		return err
	}
	if *smokeBin != "" {
		// Its defaults, except the listener and an allowed range for the
		// upstream: smokescreen refuses loopback and private destinations.
		// No egress ACL file: every host is allowed. It logs a JSON line per
		// request (to its log file here) and sends statsd metrics to
		// 127.0.0.1:8200, where nothing listens.
		host, port, _ := net.SplitHostPort(smokescreen)
		cmd, err := h.start("smokescreen", []string{*smokeBin, "--listen-ip", host, "--listen-port", port, "--allow-range", "127.0.0.1/32"})
		if err != nil {
			return err
		}
		pids["smokescreen"] = cmd.Process.Pid
	}
	time.Sleep(500 * time.Millisecond)
	checks := []struct{ target, proxy string }{
		{"http://" + upPlain + "/", ""},
		{"http://" + nginxRev + "/", ""},
		{"http://" + nginxRevMTLS + "/", ""},
		{"http://" + upPlain + "/", "http://" + gpBare},
		{"http://" + upPlain + "/", "http://" + nethttpBare},
		{"http://" + upMTLS + "/", "http://" + gpBareMTLS},
		{"http://" + upPlain + "/", "http://" + agLog},
		{"http://" + upMTLS + "/", "http://" + agLog},
		{"http://" + upPlain + "/", "http://" + agNoLog},
		{"http://" + upPlain + "/", "http://" + squidAddr},
		{"http://" + revBare + "/", ""},
		{"http://" + agRevLog + "/", ""},
		{"http://" + agRevNoLog + "/", ""},
	}
	if *smokeBin != "" {
		if err := waitFor("http://"+upPlain+"/", "http://"+smokescreen, false); err != nil {
			return fmt.Errorf("smokescreen: %w", err)
		}
	}
	for _, c := range checks {
		if err := waitHTTP(c.target, c.proxy); err != nil {
			if c.proxy == "" && strings.Contains(c.target, upPlain) {
				return err
			}
			if err2 := waitHTTP(c.target, c.proxy); err2 != nil {
				return err
			}
		}
	}
	return nil
}
