package intercept

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func newAuthority(t testing.TB, size int, ttl time.Duration) *Authority {
	t.Helper()
	certPEM, keyPEM, err := NewCA("test CA", 24*time.Hour*365)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Load(certPEM, keyPEM, size, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLeafIsP256ForTheHostAndChainsToTheCA(t *testing.T) {
	a := newAuthority(t, 10, time.Hour*24)
	for _, host := range []string{"api.example.com", "127.0.0.1", "::1"} {
		c, err := a.Leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		k, ok := c.PrivateKey.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P256() {
			t.Fatalf("%s: leaf key is %T, want ECDSA P-256", host, c.PrivateKey)
		}
		roots := x509.NewCertPool()
		roots.AddCert(a.Certificate())
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if c.Leaf.IsCA {
			t.Fatalf("%s: a leaf must not be a CA", host)
		}
	}
}

func TestConcurrentRequestsForOneHostMintOnce(t *testing.T) {
	a := newAuthority(t, 10, 24*time.Hour)
	var wg sync.WaitGroup
	certs := make(chan any, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.Leaf("api.example.com")
			if err != nil {
				t.Error(err)
				return
			}
			certs <- c
		}()
	}
	wg.Wait()
	close(certs)
	first := <-certs
	for c := range certs {
		if c != first {
			t.Fatal("concurrent callers got different leaves")
		}
	}
	if n := a.Mints(); n != 1 {
		t.Fatalf("64 concurrent requests for one host minted %d leaves, want 1", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	a := newAuthority(t, 100, 24*time.Hour)
	for i := range 1000 {
		if _, err := a.Leaf(fmt.Sprintf("h%d.example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Cached(); n != 100 {
		t.Fatalf("cache holds %d leaves, want its bound 100", n)
	}
	// The most recent hosts are cached; the oldest were evicted.
	before := a.Mints()
	if _, err := a.Leaf("h999.example.com"); err != nil || a.Mints() != before {
		t.Fatal("a recent host was minted again")
	}
	if _, err := a.Leaf("h0.example.com"); err != nil || a.Mints() != before+1 {
		t.Fatal("an evicted host was not minted again")
	}
}

func TestLeafIsRenewedBeforeItExpires(t *testing.T) {
	a := newAuthority(t, 10, 4*time.Hour)
	now := time.Now()
	a.now = func() time.Time { return now }
	first, _ := a.Leaf("api.example.com")
	if got := first.Leaf.NotAfter.Sub(now); got < 4*time.Hour-time.Second || got > 4*time.Hour {
		t.Fatalf("leaf lifetime %s, want leaf_ttl 4h", got)
	}
	now = now.Add(2 * time.Hour)
	if c, _ := a.Leaf("api.example.com"); c != first {
		t.Fatal("renewed at half its lifetime")
	}
	now = now.Add(90 * time.Minute) // 3h30 of 4h
	if c, _ := a.Leaf("api.example.com"); c == first {
		t.Fatal("a leaf past 3/4 of its lifetime was served instead of renewed")
	}
}

func TestLoadRefusesMismatchedOrNonCA(t *testing.T) {
	certPEM, _, _ := NewCA("a", time.Hour*48)
	_, otherKey, _ := NewCA("b", time.Hour*48)
	if _, err := Load(certPEM, otherKey, 0, 0); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched key: %v", err)
	}
	a := newAuthority(t, 1, 24*time.Hour)
	leaf, _ := a.Leaf("x.example")
	leafPEM := pemCert(leaf.Certificate[0])
	leafKey := pemKey(t, leaf.PrivateKey.(*ecdsa.PrivateKey))
	if _, err := Load(leafPEM, leafKey, 0, 0); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf as CA: %v", err)
	}
	if _, err := Load(certPEM, []byte("garbage"), 0, 0); err == nil || strings.Contains(err.Error(), "garbage") {
		t.Fatalf("garbage key: %v", err)
	}
}

func TestLeafCacheHitDoesNotAllocate(t *testing.T) {
	a := newAuthority(t, 10, 24*time.Hour)
	if _, err := a.Leaf("api.example.com"); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = a.Leaf("api.example.com") }); n != 0 {
		t.Fatalf("cache hit allocates %v times", n)
	}
}

func BenchmarkLeafCacheHit(b *testing.B) {
	a := newAuthority(b, 10, 24*time.Hour)
	_, _ = a.Leaf("api.example.com")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.Leaf("api.example.com")
	}
}

func BenchmarkLeafMint(b *testing.B) {
	a := newAuthority(b, 10, 24*time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.mint("api.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}
