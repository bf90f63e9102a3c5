package tokencache

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionLifetime is how long a client assertion is valid (exp - iat).
const AssertionLifetime = 2 * time.Minute

// AssertionType is the client_assertion_type of a private_key_jwt request.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Signer signs private_key_jwt client assertions (RFC 7523). It is safe for
// concurrent use; its key never prints.
type Signer struct {
	KeyID string
	Alg   string

	key    crypto.Signer
	signer jose.Signer
}

func (*Signer) String() string   { return "tokencache.Signer{[redacted]}" }
func (*Signer) GoString() string { return "tokencache.Signer{[redacted]}" }

// Public returns the public half of the signing key (to publish it, or to
// verify an assertion).
func (s *Signer) Public() crypto.PublicKey { return s.key.Public() }

// NewSigner parses a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for alg
// (RS256 and PS256: RSA of at least 2048 bits; ES256: EC P-256; "" is
// RS256). keyID, if set, is the kid header. Errors never quote the key.
func NewSigner(pemKey []byte, keyID, alg string) (*Signer, error) {
	if alg == "" {
		alg = "RS256"
	}
	key, err := parsePrivateKey(pemKey)
	if err != nil {
		return nil, err
	}
	if err := checkKey(key, alg); err != nil {
		return nil, err
	}
	var jk any = key
	if keyID != "" {
		jk = jose.JSONWebKey{Key: key, KeyID: keyID, Algorithm: alg}
	}
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("signing key: cannot sign with %s: %v", alg, err)
	}
	return &Signer{KeyID: keyID, Alg: alg, key: key, signer: js}, nil
}

// parsePrivateKey returns the first private key among the PEM blocks.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	sawPEM := false
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		sawPEM = true
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("signing key: the PEM private key is encrypted; give it unencrypted (PKCS#8, PKCS#1 or SEC1)")
		default:
			continue // a certificate beside the key, parameters, ...
		}
		if err != nil {
			// x509 errors name the structure, never key bytes.
			return nil, fmt.Errorf("signing key: the PEM block %q does not parse (%v)", blk.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("signing key: unsupported key type %T", k)
		}
		return s, nil
	}
	if !sawPEM {
		return nil, errors.New("signing key: not PEM (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)")
	}
	return nil, errors.New("signing key: the PEM holds no private key block (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
}

func describeKey(k crypto.Signer) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("an RSA %d-bit key", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "an EC " + k.Curve.Params().Name + " key"
	case ed25519.PrivateKey:
		return "an Ed25519 key"
	}
	return fmt.Sprintf("a %T key", k)
}

func checkKey(k crypto.Signer, alg string) error {
	switch alg {
	case "RS256", "PS256":
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return fmt.Errorf("signing key: alg %s needs an RSA key (at least 2048 bits), but the key is %s", alg, describeKey(k))
		}
		if rk.N.BitLen() < 2048 {
			return fmt.Errorf("signing key: alg %s needs an RSA key of at least 2048 bits, but the key is %s", alg, describeKey(k))
		}
	case "ES256":
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return fmt.Errorf("signing key: alg ES256 needs an EC P-256 key, but the key is %s", describeKey(k))
		}
	default:
		return fmt.Errorf("signing key: alg must be RS256, PS256 or ES256, got %q", alg)
	}
	return nil
}

// Assertion returns a signed client assertion: iss = sub = clientID, aud =
// audience (the token URL), a random jti (128+ bits) unique per call, iat =
// nbf = now, exp = now + AssertionLifetime.
func (s *Signer) Assertion(clientID, audience string, now time.Time) (string, error) {
	if s == nil || s.signer == nil {
		return "", errors.New("private_key_jwt: no signing key")
	}
	now = now.Truncate(time.Second)
	c := jwt.Claims{
		Issuer:    clientID,
		Subject:   clientID,
		Audience:  jwt.Audience{audience},
		ID:        rand.Text(), // 26 base32 characters: 130 random bits
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(AssertionLifetime)),
	}
	out, err := jwt.Signed(s.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("private_key_jwt: cannot sign the client assertion: %v", err)
	}
	return out, nil
}
