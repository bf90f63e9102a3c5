package proxy

import (
	"context"
	"fmt"

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
	key, secrets, base, err := credentialRequest(ctx, cfg, name, cred.Scopes, vaults)
	if err != nil {
		return nil, err
	}
	return tokens.Delegated(key, name, tokencache.DelegatedConfig{
		Client: tokencache.NewClient(profiles.Transport(cred.Profile)), Secrets: secrets, VaultID: cred.ID, Base: base,
		AuthorizeURL: cred.AuthorizeURL, Prompt: cred.Prompt, Timeout: cred.Timeout.D, RefreshTTL: cred.RefreshTokenTTL.D,
		MinRefresh: cred.MinRefreshInterval.D,
	}), nil
}

// brokerBase is the broker's public URL, or "" without a broker.
func brokerBase(cfg *conf.Config) string {
	if cfg.Broker == nil || cfg.Broker.Public == nil {
		return ""
	}
	return cfg.Broker.Public.String()
}
