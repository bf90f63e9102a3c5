package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/safetext"
)

// Set is the configured vaults by name.
type Set map[string]*Cached

// Add creates the vault name. rt is the transport of its profile (remote
// vaults); secret-valued settings (a Vault token, AppRole IDs) are resolved
// through the set itself when first needed, so they may come from another
// vault added later. The config must be validated.
func (s Set) Add(name string, v *conf.Vault, rt http.RoundTripper, log *slog.Logger) error {
	var b Backend
	switch v.Type {
	case "file":
		b = NewFile(name, v.Path)
	case "env":
		b = NewEnv(name)
	case "cyberark-ccp":
		b = NewCCP(CCPConfig{Name: name, URL: v.URL, AppID: v.AppID, Safe: v.Safe, Folder: v.Folder, PolicyID: v.PolicyID, Transport: rt})
	case "hashicorp-kv":
		b = NewKV(KVConfig{Name: name, Vault: v, Transport: rt, Resolve: s.Resolve})
	default:
		return fmt.Errorf("vault %q: unknown type %q", name, v.Type)
	}
	c := NewCached(name, b, v.CacheTTL.D, v.MaxStale.D, v.Timeout.D)
	c.Type = v.Type
	if log != nil {
		c.Log = log
	}
	s[name] = c
	return nil
}

// Resolve returns the value of a secret-valued key: a literal, an environment
// variable, a file's content (one trailing newline trimmed) or a vault entry's
// secret. Errors name the source, never the value. The value is registered
// for redaction (safetext) from any text a server sends back.
func (s Set) Resolve(ctx context.Context, ref conf.Secret) (string, error) {
	v, err := s.resolve(ctx, ref)
	if err == nil {
		safetext.Pin(v)
	}
	return v, err
}

func (s Set) resolve(ctx context.Context, ref conf.Secret) (string, error) {
	switch {
	case ref.IsLiteral():
		return ref.Literal, nil
	case ref.Env != "":
		v, ok := os.LookupEnv(ref.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", ref.Env)
		}
		return v, nil
	case ref.File != "":
		b, err := os.ReadFile(ref.File)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("secret file %s does not exist", ref.File)
			}
			return "", fmt.Errorf("cannot read secret file %s", ref.File)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", ref.File)
		}
		return v, nil
	case ref.Vault != "":
		c, ok := s[ref.Vault]
		if !ok {
			return "", fmt.Errorf("vault %q is not configured", ref.Vault)
		}
		sec, err := c.Get(ctx, ref.ID)
		if err != nil {
			return "", err
		}
		return sec.ClientSecret, nil
	}
	return "", errors.New("secret is not set")
}
