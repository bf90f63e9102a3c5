package tokencache

// Signer signs private_key_jwt client assertions (RFC 7523).
type Signer struct {
	KeyID string
	Alg   string
}
