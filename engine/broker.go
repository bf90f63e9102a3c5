package engine

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/authgress/authgress/broker"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tokencache"
)

// buildBroker builds the generation's broker API ([broker]). Logins the
// previous generation's broker started stay pending: Reload moves them to
// this one once it serves (not here: a reload may still fail).
func (e *Engine) buildBroker(ctx context.Context, g *generation) error {
	b := g.cfg.Broker
	if b == nil {
		return nil
	}
	bc := broker.Config{PublicURL: b.Public, AllowedRedirects: b.AllowedRedirects, LoginTimeout: b.LoginTimeout.D, Log: e.log}
	for i, c := range b.Clients {
		key, err := g.vaults.Resolve(ctx, c.Key)
		if err != nil {
			return fmt.Errorf("broker.clients[%d] (%s): key: %w", i, c.Name, err)
		}
		bc.Clients = append(bc.Clients, broker.Client{Name: c.Name, Key: key, Credentials: c.Credentials})
	}
	g.broker = broker.New(bc, brokerBackend{e})
	return nil
}

// serveBroker serves the broker listener with the current generation's
// broker.
func (e *Engine) serveBroker(w http.ResponseWriter, r *http.Request) {
	b := e.cur.Load().broker
	if b == nil {
		http.NotFound(w, r)
		return
	}
	b.ServeHTTP(w, r)
}

// brokerBackend is the broker's view of the runtime: always the current
// generation's credentials, over the one token cache the proxy uses.
type brokerBackend struct{ e *Engine }

func (b brokerBackend) Credential(name string) (exists, delegated bool) {
	c, ok := b.e.cur.Load().cfg.Credentials[name]
	return ok, ok && c.Delegated()
}

// ServerToken draws from the slot the proxy injects from (same cache key),
// so the broker and the proxy share one token.
func (b brokerBackend) ServerToken(ctx context.Context, name string, scopes []string) (*tokencache.Token, error) {
	g := b.e.cur.Load()
	cred, ok := g.cfg.Credentials[name]
	if !ok {
		return nil, fmt.Errorf("credential %q is not defined", name)
	}
	if scopes == nil {
		scopes = cred.Scopes
	}
	if slot := b.e.tokens.Lookup(proxy.CredentialKey(g.cfg, name, scopes)); slot != nil {
		return slot.Get(ctx) // the proxy's (or an earlier call's) slot: nothing to build
	}
	key, src, err := proxy.CredentialSource(ctx, g.cfg, name, scopes, g.vaults, g.profiles)
	if err != nil {
		return nil, err
	}
	slot := b.e.tokens.Slot(key, name, strings.Join(scopes, " "), src, cred.Timeout.D)
	return slot.Get(ctx)
}

func (b brokerBackend) delegated(name string) (*tokencache.Delegated, error) {
	d := b.e.cur.Load().proxy.Delegated[name]
	if d == nil {
		return nil, fmt.Errorf("credential %q is not an authorization_code credential", name)
	}
	return d, nil
}

func (b brokerBackend) AuthorizeURL(ctx context.Context, name, state, verifier, redirectURI string) (string, error) {
	d, err := b.delegated(name)
	if err != nil {
		return "", err
	}
	return d.AuthorizeURL(ctx, state, verifier, redirectURI)
}

func (b brokerBackend) CompleteLogin(ctx context.Context, name, user, code, verifier, redirectURI string) (*tokencache.Token, error) {
	d, err := b.delegated(name)
	if err != nil {
		return nil, err
	}
	return d.Complete(ctx, user, code, verifier, redirectURI)
}

func (b brokerBackend) UserToken(ctx context.Context, name, user string) (*tokencache.Token, error) {
	d, err := b.delegated(name)
	if err != nil {
		return nil, err
	}
	return d.Token(ctx, user)
}

func (b brokerBackend) Refresh(ctx context.Context, name, refreshToken string) (*tokencache.Token, error) {
	d, err := b.delegated(name)
	if err != nil {
		return nil, err
	}
	return d.Refresh(ctx, refreshToken)
}
