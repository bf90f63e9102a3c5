package tlsprofiles

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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgress/authgress/conf"
	"software.sslmate.com/src/go-pkcs12"
)

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t *testing.T, cn string, notBefore, notAfter time.Time) keyPair {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return keyPair{c, key}
}

func valid(t *testing.T, cn string) keyPair {
	return newCert(t, cn, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

func (k keyPair) writePEM(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	der, _ := x509.MarshalPKCS8PrivateKey(k.key)
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.cert.Raw}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	return
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPEMIdentities(t *testing.T) {
	dir := t.TempDir()
	good := valid(t, "client-a")
	cert, key := good.writePEM(t, dir, "a")
	c, err := loadPEMPair(cert, key, time.Now())
	if err != nil || c.Leaf.Subject.CommonName != "client-a" {
		t.Fatalf("valid pair: %v", err)
	}
	other := valid(t, "client-b")
	_, otherKey := other.writePEM(t, dir, "b")
	expiredCert, expiredKey := newCert(t, "old", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)).writePEM(t, dir, "old")
	futureCert, futureKey := newCert(t, "new", time.Now().Add(time.Hour), time.Now().Add(48*time.Hour)).writePEM(t, dir, "new")
	encKey := filepath.Join(dir, "enc-key.pem")
	must(t, os.WriteFile(encKey, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600))
	legacyEnc := filepath.Join(dir, "legacy-enc-key.pem")
	must(t, os.WriteFile(legacyEnc, []byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600))
	cases := []struct{ name, cert, key, want string }{
		{"mismatch", cert, otherKey, "does not match the certificate"},
		{"expired", expiredCert, expiredKey, "expired on"},
		{"not yet valid", futureCert, futureKey, "not valid before"},
		{"encrypted PKCS#8", cert, encKey, "is encrypted"},
		{"encrypted legacy PEM", cert, legacyEnc, "PKCS#12"},
		{"missing", filepath.Join(dir, "nope.pem"), key, "cannot read cert file"},
		{"key as cert", key, key, "holds no PEM certificate"},
	}
	for _, tc := range cases {
		if _, err := loadPEMPair(tc.cert, tc.key, time.Now()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestPKCS12Identities(t *testing.T) {
	dir := t.TempDir()
	kp := valid(t, "p12-client")
	for name, enc := range map[string]*pkcs12.Encoder{"modern2023": pkcs12.Modern2023, "legacy-rc2": pkcs12.LegacyRC2, "legacy-des": pkcs12.LegacyDES} {
		data, err := enc.Encode(kp.key, kp.cert, nil, "s3cret-pass")
		must(t, err)
		f := filepath.Join(dir, name+".p12")
		must(t, os.WriteFile(f, data, 0o600))
		c, err := loadPKCS12(f, "s3cret-pass", time.Now())
		if err != nil || c.Leaf.Subject.CommonName != "p12-client" {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := loadPKCS12(f, "wrong", time.Now()); err == nil || !strings.Contains(err.Error(), "wrong password") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s wrong password: %v", name, err)
		}
	}
	// Files written by OpenSSL 3 itself: its defaults (PBES2/AES-256-CBC, PBKDF2,
	// SHA-256 MAC) and -legacy.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed to write PKCS#12 test files (apt-get install openssl)")
	}
	cert, key := kp.writePEM(t, dir, "ossl")
	for _, mode := range [][]string{nil, {"-legacy"}} {
		f := filepath.Join(dir, "openssl"+strings.Join(mode, "")+".p12")
		args := append([]string{"pkcs12", "-export", "-in", cert, "-inkey", key, "-out", f, "-passout", "pass:ossl-pass"}, mode...)
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", mode, err, out)
		}
		if c, err := loadPKCS12(f, "ossl-pass", time.Now()); err != nil || c.Leaf.Subject.CommonName != "p12-client" {
			t.Errorf("openssl %v: %v", mode, err)
		}
	}
}

func TestRotationKeepsOldPairWhenNewIsBad(t *testing.T) {
	dir := t.TempDir()
	cert, key := valid(t, "first").writePEM(t, dir, "id")
	prof, err := Load(context.Background(), "p", &conf.Profile{Cert: cert, Key: key, WatchInterval: conf.Duration{D: time.Second}}, nil)
	must(t, err)
	id := prof.Identity
	if rotated, err := id.check(time.Now()); rotated || err != nil {
		t.Fatalf("unchanged files: rotated=%v err=%v", rotated, err)
	}
	// A cert whose key does not follow (half-finished rotation): rejected.
	next := valid(t, "second")
	must(t, os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: next.cert.Raw}), 0o600))
	if rotated, err := id.check(time.Now()); rotated || err == nil {
		t.Fatal("mismatched pair accepted")
	}
	if cn := id.Certificate().Leaf.Subject.CommonName; cn != "first" || id.State().Rejected == "" {
		t.Fatalf("current certificate %q, rejected %q", cn, id.State().Rejected)
	}
	// The key arrives: the pair is swapped in.
	next.writePEM(t, dir, "id")
	if rotated, err := id.check(time.Now()); !rotated || err != nil {
		t.Fatalf("rotation: rotated=%v err=%v", rotated, err)
	}
	got, _ := prof.ClientConfig().GetClientCertificate(nil)
	if got.Leaf.Subject.CommonName != "second" || id.State().Rejected != "" {
		t.Fatalf("after rotation the handshake would send %q", got.Leaf.Subject.CommonName)
	}
}
