package tokencache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// userSep separates a delegated credential's cache key from a user name in
// the key of that user's slot.
const userSep = "\x00user\x00"

// DelegatedConfig is what a delegated (authorization_code) credential needs
// to log users in and keep their tokens fresh.
type DelegatedConfig struct {
	Client       *Client
	Secrets      Secrets // nil when the client id is in Base
	VaultID      string
	Base         Request // TokenURL, Scopes, Params, ClientAuth, Signer, ClientID, DefaultTTL
	AuthorizeURL string
	Prompt       string
	Timeout      time.Duration // bounds each token request
	RefreshTTL   time.Duration // refresh token lifetime when the server does not say (0: DelegatedKeep)
	MinRefresh   time.Duration
}

// Delegated holds the users' tokens of one authorization_code credential:
// one slot per user, refreshed ahead with the refresh token (single
// flight, like every slot), rotated refresh tokens replacing old ones, and
// a refused refresh token (invalid_grant) dropping the user's tokens.
type Delegated struct {
	Name  string
	key   string
	cache *Cache
	cfg   DelegatedConfig
}

// Delegated returns the delegated credential of key (its cache key). The
// newest configuration serves every user slot of key, including those
// created before a reload.
func (c *Cache) Delegated(key, name string, cfg DelegatedConfig) *Delegated {
	d := &Delegated{Name: name, key: key, cache: c, cfg: cfg}
	c.mu.Lock()
	if c.delegated == nil {
		c.delegated = map[string]*Delegated{}
	}
	c.delegated[key] = d
	c.mu.Unlock()
	return d
}

func (c *Cache) currentDelegated(key string) *Delegated {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delegated[key]
}

// Key is the credential's cache key (its users' slots are under it).
func (d *Delegated) Key() string { return d.key }

// userSlot returns user's slot; create says whether to make one when
// there is none.
func (d *Delegated) userSlot(user string, create bool) *Slot {
	k := d.key + userSep + user
	c := d.cache
	s := c.Lookup(k)
	if s != nil || !create {
		return s
	}
	key := d.key
	// The source finds its slot and the credential's newest configuration
	// when it runs: a slot outlives reloads, and two first requests of a
	// user may race to create it.
	src := func(ctx context.Context) (*Token, error) {
		cur, s := c.currentDelegated(key), c.Lookup(k)
		if cur == nil || s == nil {
			return nil, fmt.Errorf("%w: credential no longer configured", ErrLoginRequired)
		}
		return cur.refresh(ctx, s)
	}
	slot := c.slot(k, d.Name, strings.Join(d.cfg.Base.Scopes, " "), user, src, d.cfg.Timeout)
	if d.cfg.MinRefresh > 0 {
		slot.SetMinRefreshInterval(d.cfg.MinRefresh)
	}
	return slot
}

// UserSlot is user's slot, for injecting on the proxy path; nil when the
// user has none here and there is no shared level where another replica
// could have stored one (so unknown identities create nothing).
func (d *Delegated) UserSlot(user string) *Slot {
	if s := d.cache.Lookup(d.key + userSep + user); s != nil {
		return s // the hit path: one lock
	}
	return d.userSlot(user, d.cache.HasShared())
}

// Token returns user's access token (refreshed ahead of expiry), or an
// error wrapping ErrLoginRequired when the user has none.
func (d *Delegated) Token(ctx context.Context, user string) (*Token, error) {
	s := d.UserSlot(user)
	if s == nil {
		return nil, ErrLoginRequired
	}
	return s.Get(ctx)
}

// identity fills the client id (and secret, for the secret methods) from
// the vault.
func (d *Delegated) identity(ctx context.Context) (Request, error) {
	return ClientIdentity(ctx, d.cfg.Secrets, d.cfg.VaultID, d.cfg.Base)
}

// AuthorizeURL is the authorization request that starts a login: client
// id, redirect URI, scopes, prompt, state and the PKCE S256 challenge of
// verifier.
func (d *Delegated) AuthorizeURL(ctx context.Context, state, verifier, redirectURI string) (string, error) {
	req, err := d.identity(ctx)
	if err != nil {
		return "", err
	}
	oc := oauth2.Config{ClientID: req.ClientID, Endpoint: oauth2.Endpoint{AuthURL: d.cfg.AuthorizeURL}, RedirectURL: redirectURI, Scopes: d.cfg.Base.Scopes}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if d.cfg.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", d.cfg.Prompt))
	}
	return oc.AuthCodeURL(state, opts...), nil
}

// Complete exchanges a login's code and makes the tokens user's.
func (d *Delegated) Complete(ctx context.Context, user, code, verifier, redirectURI string) (*Token, error) {
	req, err := d.identity(ctx)
	if err != nil {
		return nil, err
	}
	req.Grant, req.Code, req.CodeVerifier, req.RedirectURI = GrantAuthorizationCode, code, verifier, redirectURI
	req.Scopes = nil
	tok, err := d.fetch(ctx, req)
	if err != nil {
		return nil, err
	}
	d.userSlot(user, true).Set(ctx, tok)
	return tok, nil
}

// Refresh is the stateless refresh-token grant: nothing is stored.
func (d *Delegated) Refresh(ctx context.Context, refreshToken string) (*Token, error) {
	req, err := d.identity(ctx)
	if err != nil {
		return nil, err
	}
	req.Grant, req.RefreshToken, req.Scopes = GrantRefreshToken, refreshToken, nil
	return d.fetch(ctx, req)
}

func (d *Delegated) fetch(ctx context.Context, req Request) (*Token, error) {
	fctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	tok, err := d.cfg.Client.Fetch(fctx, req)
	if err == nil && tok.Refresh != "" && tok.RefreshExpiresAt.IsZero() && d.cfg.RefreshTTL > 0 {
		tok.RefreshExpiresAt = tok.FetchedAt.Add(d.cfg.RefreshTTL)
	}
	return tok, err
}

// refresh is a user slot's source: the refresh-token grant with the
// newest refresh token the slot holds. A server that does not rotate keeps
// the old one valid; a refused one (invalid_grant) logs the user out.
func (d *Delegated) refresh(ctx context.Context, s *Slot) (*Token, error) {
	rt := s.refreshToken()
	if rt == "" {
		return nil, fmt.Errorf("%w: %w", ErrLoginRequired, errNoRefreshToken)
	}
	prev := s.last.Load()
	req, err := d.identity(ctx)
	if err != nil {
		return nil, err
	}
	req.Grant, req.RefreshToken, req.Scopes = GrantRefreshToken, rt, nil
	tok, err := d.cfg.Client.Fetch(ctx, req)
	if err != nil {
		if IsInvalidGrant(err) {
			s.forget(rt)
			return nil, fmt.Errorf("%w: the identity provider refused the refresh token (%w)", ErrLoginRequired, err)
		}
		return nil, err
	}
	if tok.Refresh == "" {
		tok.Refresh = rt
		if prev != nil {
			tok.RefreshExpiresAt = prev.RefreshExpiresAt
		}
	} else if tok.RefreshExpiresAt.IsZero() && d.cfg.RefreshTTL > 0 {
		tok.RefreshExpiresAt = tok.FetchedAt.Add(d.cfg.RefreshTTL)
	}
	return tok, nil
}

// Users lists the users that hold a token here (for status pages).
func (d *Delegated) Users() []string {
	var out []string
	for _, s := range d.cache.Slots() {
		if strings.HasPrefix(s.Key, d.key+userSep) && s.last.Load() != nil {
			out = append(out, s.User)
		}
	}
	return out
}

// IsLoginRequired reports whether err means the user must log in.
func IsLoginRequired(err error) bool { return errors.Is(err, ErrLoginRequired) }
