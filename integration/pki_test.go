package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pki is a test CA, a server certificate for 127.0.0.1 and localhost, and a
// way to issue client certificates.
type pki struct {
	caFile         string
	ca             *x509.Certificate
	caKey          *ecdsa.PrivateKey
	server         tls.Certificate
	serverCertFile string
	serverKeyFile  string
}

var (
	pkiOnce sync.Once
	testPKI pki
	serial  atomic.Int64
)

func newKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

func writePEMFile(path, typ string, der []byte) {
	_ = os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key := newKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func getPKI(t *testing.T) pki {
	pkiOnce.Do(func() {
		testPKI.ca, testPKI.caKey = newCA("authgress-it-ca")
		key := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, testPKI.ca, &key.PublicKey, testPKI.caKey)
		testPKI.server = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		testPKI.caFile = filepath.Join(workDir, "ca.pem")
		writePEMFile(testPKI.caFile, "CERTIFICATE", testPKI.ca.Raw)
		testPKI.serverCertFile = filepath.Join(workDir, "server.pem")
		writePEMFile(testPKI.serverCertFile, "CERTIFICATE", der)
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		testPKI.serverKeyFile = filepath.Join(workDir, "server-key.pem")
		writePEMFile(testPKI.serverKeyFile, "PRIVATE KEY", kder)
	})
	if testPKI.caFile == "" {
		t.Fatal("no test PKI")
	}
	return testPKI
}

// issueClient writes a client certificate (CN=cn) and its key as PEM files
// in dir; signer nil means the test CA.
func issueClient(t *testing.T, dir, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	if ca == nil {
		p := getPKI(t)
		ca, caKey = p.ca, p.caKey
	}
	key := newKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn, Organization: []string{"authgress-it"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEMFile(certFile, "CERTIFICATE", der)
	writePEMFile(keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

// issueKeystore writes a PKCS#12 keystore with OpenSSL itself: its defaults
// (AES-256-CBC, PBKDF2, SHA-256 MAC), or -legacy.
func issueKeystore(t *testing.T, dir, cn, password string, legacy bool) string {
	t.Helper()
	cert, key := issueClient(t, dir, cn, nil, nil)
	out := filepath.Join(dir, cn+".p12")
	args := []string{"pkcs12", "-export", "-in", cert, "-inkey", key, "-out", out, "-passout", "pass:" + password}
	if legacy {
		args = append(args, "-legacy")
	}
	if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, b)
	}
	return out
}
