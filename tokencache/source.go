package tokencache

import (
	"context"
	"errors"

	"github.com/authgress/authgress/vault"
)

// Secrets is the vault side of a credential: a cached lookup that can be
// told to forget an entry.
type Secrets interface {
	Get(ctx context.Context, id string) (vault.Secret, error)
	Invalidate(id string)
}

// ClientIdentity returns req with the client's identity filled in:
//   - vaultID == "": the credential itself gives the client id (req.ClientID,
//     which must be set); the vault is not used (secrets may be nil);
//   - a method with a shared secret (client_secret_basic/post): the vault
//     entry's client id and secret (both must be there);
//   - a method without one (private_key_jwt, tls_client_auth, none): only the
//     vault entry's client id; ClientSecret is cleared.
func ClientIdentity(ctx context.Context, secrets Secrets, vaultID string, req Request) (Request, error) {
	if vaultID == "" {
		if req.ClientID == "" {
			return req, errors.New("the credential has no client id (set client_id, or vault and id)")
		}
		if NeedsSecret(req.Method()) && req.ClientSecret == "" {
			return req, errors.New("client_auth = " + req.Method() + " needs a client secret from a vault (vault and id)")
		}
		return req, nil
	}
	if secrets == nil {
		return req, errors.New("the credential's vault is not configured")
	}
	sec, err := secrets.Get(ctx, vaultID)
	if err == nil {
		err = sec.CheckClientID()
	}
	if err != nil {
		return req, err
	}
	return withSecret(req, sec), nil
}

// ClientCredentials is a Source: resolve the client identity (ClientIdentity),
// request a token. For the shared-secret methods, if the endpoint answers
// invalid_client, the cached secret is dropped and read again, and if it
// changed (a rotation), the request is sent once more.
func ClientCredentials(c *Client, secrets Secrets, id string, req Request) Source {
	return func(ctx context.Context) (*Token, error) {
		r, err := ClientIdentity(ctx, secrets, id, req)
		if err != nil {
			return nil, err
		}
		tok, err := c.Fetch(ctx, r)
		var te *Error
		if id == "" || !NeedsSecret(r.Method()) || !errors.As(err, &te) || te.Code != "invalid_client" {
			return tok, err
		}
		secrets.Invalidate(id)
		fresh, verr := ClientIdentity(ctx, secrets, id, req)
		if verr != nil || fresh.ClientID == r.ClientID && fresh.ClientSecret == r.ClientSecret {
			return nil, err
		}
		return c.Fetch(ctx, fresh)
	}
}

func withSecret(r Request, s vault.Secret) Request {
	r.ClientID, r.ClientSecret = s.ClientID, ""
	if NeedsSecret(r.Method()) {
		r.ClientSecret = s.ClientSecret
	}
	return r
}
