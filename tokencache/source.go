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

// ClientCredentials is a Source: read the client id and secret from the
// vault (both must be there), request a token. If the endpoint answers invalid_client, the cached
// secret is dropped and read again, and if it changed (a rotation), the
// request is sent once more.
func ClientCredentials(c *Client, secrets Secrets, id string, req Request) Source {
	return func(ctx context.Context) (*Token, error) {
		sec, err := secrets.Get(ctx, id)
		if err == nil {
			err = sec.CheckClientID()
		}
		if err != nil {
			return nil, err
		}
		tok, err := c.Fetch(ctx, withSecret(req, sec))
		var te *Error
		if !errors.As(err, &te) || te.Code != "invalid_client" {
			return tok, err
		}
		secrets.Invalidate(id)
		fresh, verr := secrets.Get(ctx, id)
		if verr != nil || fresh.CheckClientID() != nil || fresh.ClientID == sec.ClientID && fresh.ClientSecret == sec.ClientSecret {
			return nil, err
		}
		return c.Fetch(ctx, withSecret(req, fresh))
	}
}

func withSecret(r Request, s vault.Secret) Request {
	r.ClientID, r.ClientSecret = s.ClientID, s.ClientSecret
	return r
}
