// Package intercept holds the interception CA and the leaf certificates it
// mints for the hosts whose CONNECT tunnels authgress terminates: ECDSA P-256
// leaves in a bounded cache, renewed before they expire, one mint per host
// however many tunnels ask at once. It knows nothing about HTTP serving.
package intercept

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of [intercept].
const (
	DefaultCacheSize = 10000
	DefaultLeafTTL   = 24 * time.Hour
)

// Authority is a loaded interception CA with its leaf cache.
type Authority struct {
	cert   *x509.Certificate
	key    crypto.Signer
	ttl    time.Duration
	leaves *lru.Cache[string, *leaf]
	now    func() time.Time

	mu       sync.Mutex
	inflight map[string]*mint
	mints    atomic.Int64
}

type leaf struct {
	cert    *tls.Certificate
	renewAt time.Time
}

type mint struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// Load parses the CA certificate and key (PEM) and checks that they belong
// together and may sign certificates. size bounds the leaf cache; ttl is a
// leaf's lifetime.
func Load(certPEM, keyPEM []byte, size int, ttl time.Duration) (*Authority, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca_cert: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca_key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("ca_key does not belong to ca_cert")
	}
	if !cert.IsCA || (cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, errors.New("ca_cert is not a CA certificate (it needs basicConstraints CA:TRUE and keyUsage keyCertSign): create one with `authgress ca init`")
	}
	now := time.Now()
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("ca_cert is valid from %s to %s, not now", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	if ttl <= 0 {
		ttl = DefaultLeafTTL
	}
	cache, err := lru.New[string, *leaf](size)
	if err != nil {
		return nil, err
	}
	return &Authority{cert: cert, key: key, ttl: ttl, leaves: cache, now: time.Now, inflight: map[string]*mint{}}, nil
}

// Certificate returns the CA certificate.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// Mints counts the leaves minted so far.
func (a *Authority) Mints() int64 { return a.mints.Load() }

// Cached is the number of leaves in the cache.
func (a *Authority) Cached() int { return a.leaves.Len() }

// Leaf returns the certificate for host (a normalised host name or IP
// literal, without port). The caller has decided that host may be
// intercepted: the authority mints for any name it is given. Concurrent
// calls for one host share one mint; a cached leaf is renewed once most of
// its lifetime has passed.
func (a *Authority) Leaf(host string) (*tls.Certificate, error) {
	if l, ok := a.leaves.Get(host); ok && a.now().Before(l.renewAt) {
		return l.cert, nil
	}
	a.mu.Lock()
	if m, ok := a.inflight[host]; ok {
		a.mu.Unlock()
		<-m.done
		return m.cert, m.err
	}
	m := &mint{done: make(chan struct{})}
	a.inflight[host] = m
	a.mu.Unlock()

	m.cert, m.err = a.mint(host)
	if m.err == nil {
		lifetime := m.cert.Leaf.NotAfter.Sub(a.now())
		a.leaves.Add(host, &leaf{cert: m.cert, renewAt: a.now().Add(lifetime * 3 / 4)})
	}
	a.mu.Lock()
	delete(a.inflight, host)
	a.mu.Unlock()
	close(m.done)
	return m.cert, m.err
}

func (a *Authority) mint(host string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := a.now()
	notAfter := now.Add(a.ttl)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"authgress interception"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("minting a certificate for %s: %w", host, err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	a.mints.Add(1)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}, nil
}

// NewCA creates a new ECDSA P-256 interception CA valid for validity and
// returns its certificate and PKCS#8 key as PEM.
func NewCA(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	ski := sha1.Sum(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"authgress"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
	}
}

// parseKey reads a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) private key. The
// errors never quote the key material.
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
		}
		if x509.IsEncryptedPEMBlock(blk) { //nolint:staticcheck // detecting, not decrypting
			return nil, errors.New("the key is encrypted: authgress needs an unencrypted key (protect the file, or pass it as a secret reference)")
		}
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, errors.New("the private key cannot be parsed")
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("unsupported private key type")
		}
		return s, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
