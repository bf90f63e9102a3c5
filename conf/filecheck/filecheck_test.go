package filecheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
)

// selfSigned writes a certificate and its key (PEM) valid from notBefore to
// notAfter, and returns the files.
func selfSigned(t *testing.T, dir, name string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEveryProfileProblemReported: profile, CA and keystore problems used to
// stop check at the first one, without a line number.
func TestEveryProfileProblemReported(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	selfSigned(t, dir, "good", now.Add(-time.Hour), now.Add(time.Hour))
	selfSigned(t, dir, "other", now.Add(-time.Hour), now.Add(time.Hour))
	selfSigned(t, dir, "old", now.Add(-2*time.Hour), now.Add(-time.Hour))
	write(t, filepath.Join(dir, "garbage.pem"), []byte("not a certificate\n"))
	write(t, filepath.Join(dir, "garbage.p12"), []byte("not a keystore"))
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	text := `[profiles.badca]
ca = "garbage.pem"

[profiles.mismatch]
cert = "good.pem"
key = "other-key.pem"

[profiles.expired]
cert = "old.pem"
key = "old-key.pem"

[profiles.nopass]
keystore = "garbage.p12"
password = { env = "AUTHGRESS_FILECHECK_UNSET" }

[profiles.notp12]
keystore = "garbage.p12"
password = { env = "AUTHGRESS_FILECHECK_SET" }

[profiles.dirca]
ca = "adir"

[profiles.fine]
cert = "good.pem"
key = "good-key.pem"
ca = "good.pem"
`
	t.Setenv("AUTHGRESS_FILECHECK_SET", "pw")
	path := filepath.Join(dir, "authgress.toml")
	write(t, path, []byte(text))
	cfg, probs := conf.Load(path)
	if cfg == nil {
		t.Fatalf("config not decoded:\n%v", probs)
	}
	probs = append(probs, Profiles(context.Background(), cfg)...).Sorted()
	out := probs.Error()
	for _, want := range []string{
		`:2:1: error: profiles.badca.ca: ca file ` + filepath.Join(dir, "garbage.pem") + ` holds no PEM certificate`,
		`:6:1: error: profiles.mismatch.key: the private key in ` + filepath.Join(dir, "other-key.pem") + ` does not match`,
		`:9:1: error: profiles.expired.cert: the certificate in ` + filepath.Join(dir, "old.pem") + ` (CN=old) expired`,
		`:14:1: error: profiles.nopass.password: keystore password (env:AUTHGRESS_FILECHECK_UNSET): environment variable AUTHGRESS_FILECHECK_UNSET is not set`,
		`:17:1: error: profiles.notp12.keystore: cannot read keystore ` + filepath.Join(dir, "garbage.p12") + ` as PKCS#12`,
		`:21:1: error: profiles.dirca.ca: "` + filepath.Join(dir, "adir") + `" is a directory, not a file`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, "profiles.fine") || strings.Count(out, "\n")+1 != 6 {
		t.Errorf("want exactly the six problems above")
	}
	if t.Failed() {
		t.Log("\n" + out)
	}
}

func TestListenerAndInterceptFileProblemsReported(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	selfSigned(t, dir, "good", now.Add(-time.Hour), now.Add(time.Hour))
	selfSigned(t, dir, "other", now.Add(-time.Hour), now.Add(time.Hour))
	write(t, filepath.Join(dir, "garbage.pem"), []byte("not a certificate\n"))
	text := `[server.tls]
cert = "good.pem"
key = "good-key.pem"
client_ca = "garbage.pem"

[intercept]
ca_cert = "good.pem"
ca_key = "other-key.pem"
`
	path := filepath.Join(dir, "authgress.toml")
	write(t, path, []byte(text))
	cfg, probs := conf.Load(path)
	if cfg == nil || probs.HasErrors() {
		t.Fatalf("config:\n%v", probs)
	}
	out := Listeners(context.Background(), cfg).Error()
	for _, want := range []string{
		`:4:1: error: server.tls.client_ca: ` + filepath.Join(dir, "garbage.pem") + ` holds no PEM certificate`,
		`:8:1: error: intercept.ca_key: ca_key does not belong to ca_cert`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
}
