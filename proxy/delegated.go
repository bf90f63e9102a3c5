package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// DelegatedCredential returns the user-token store of an
// authorization_code credential. Its cache key covers the credential's,
// vault's and profile's definitions, so a reload that changes none of them
// keeps every user's tokens.
func DelegatedCredential(ctx context.Context, cfg *conf.Config, name string, vaults vault.Set, profiles *tlsprofiles.Set, tokens *tokencache.Cache) (*tokencache.Delegated, error) {
	cred, ok := cfg.Credentials[name]
	if !ok || !cred.Delegated() {
		return nil, fmt.Errorf("credential %q is not an authorization_code credential", name)
	}
	var secrets tokencache.Secrets
	if cred.Vault != "" {
		s, ok := vaults[cred.Vault]
		if !ok {
			return nil, fmt.Errorf("credential %q: vault %q is not defined", name, cred.Vault)
		}
		secrets = s
	}
	params := sortedParams(cred.Params)
	def := fmt.Sprintf("%+v|%+v|%+v", *cred, cfg.Vaults[cred.Vault], cfg.Profiles[cred.Profile])
	sum := sha256.Sum256([]byte(def))
	key := tokencache.Key(name, hex.EncodeToString(sum[:]), cred.Scopes, params)
	base := tokencache.Request{TokenURL: cred.TokenURL, Scopes: cred.Scopes, Params: params, ClientAuth: cred.ClientAuth,
		ClientID: cred.ClientID, DefaultTTL: cred.DefaultTTL.D}
	if cred.ClientAuth == conf.AuthPrivateKeyJWT {
		signer, err := credentialSigner(ctx, vaults, cred)
		if err != nil {
			return nil, fmt.Errorf("credentials.%s.signing_key: %w", name, err)
		}
		base.Signer = signer
	}
	return tokens.Delegated(key, name, tokencache.DelegatedConfig{
		Client: tokencache.NewClient(profiles.Transport(cred.Profile)), Secrets: secrets, VaultID: cred.ID, Base: base,
		AuthorizeURL: cred.AuthorizeURL, Prompt: cred.Prompt, Timeout: cred.Timeout.D, RefreshTTL: cred.RefreshTokenTTL.D,
		MinRefresh: cred.MinRefreshInterval.D,
	}), nil
}

// LoginURL is the broker's login endpoint for credential name (without
// the user), or "" without a broker.
func LoginURL(cfg *conf.Config, name string) string {
	if cfg.Broker == nil || cfg.Broker.Public == nil {
		return ""
	}
	return cfg.Broker.Public.String() + "/v1/credentials/" + url.PathEscape(name) + "/login"
}
