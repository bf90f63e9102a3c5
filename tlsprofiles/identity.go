package tlsprofiles

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// loadPEMPair reads a PEM certificate (chain) and an unencrypted PEM key and
// checks that they belong together and that the certificate is valid now.
func loadPEMPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read cert file %s", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read key file %s", keyFile)
	}
	if encryptedPEM(keyPEM) {
		return nil, fmt.Errorf("the private key in %s is encrypted: PEM keys must be unencrypted; for a password-protected identity use a PKCS#12 keystore (keystore + password)", keyFile)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		switch msg := err.Error(); {
		case strings.Contains(msg, "does not match"):
			return nil, fmt.Errorf("the private key in %s does not match the certificate in %s", keyFile, certFile)
		case strings.Contains(msg, "certificate input"):
			return nil, fmt.Errorf("%s holds no PEM certificate", certFile)
		case strings.Contains(msg, "key input"), strings.Contains(msg, "private key"):
			return nil, fmt.Errorf("%s holds no usable private key (PEM PKCS#1, PKCS#8 or SEC 1)", keyFile)
		default:
			return nil, fmt.Errorf("cannot load %s and %s: %v", certFile, keyFile, err)
		}
	}
	if err := checkValidity(c.Leaf, certFile, now); err != nil {
		return nil, err
	}
	return &c, nil
}

func encryptedPEM(b []byte) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return true
		}
	}
}

// loadPKCS12 reads a PKCS#12 keystore: OpenSSL 3 defaults (PBES2,
// AES-256-CBC, PBKDF2, SHA-256 MAC) as well as legacy (-legacy: RC2/3DES,
// SHA-1) files.
func loadPKCS12(file, password string, now time.Time) (*tls.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read keystore %s", file)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return nil, fmt.Errorf("wrong password for keystore %s", file)
		}
		return nil, fmt.Errorf("cannot read keystore %s as PKCS#12: %s", file, strings.TrimPrefix(err.Error(), "pkcs12: "))
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keystore %s holds an unsupported private key type", file)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("the private key in keystore %s does not match its certificate", file)
	}
	if err := checkValidity(leaf, file, now); err != nil {
		return nil, err
	}
	chain := [][]byte{leaf.Raw}
	for _, ca := range cas {
		if !bytes.Equal(ca.Raw, leaf.Raw) {
			chain = append(chain, ca.Raw)
		}
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func checkValidity(leaf *x509.Certificate, file string, now time.Time) error {
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("the certificate in %s (%s) expired on %s", file, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("the certificate in %s (%s) is not valid before %s", file, leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}
