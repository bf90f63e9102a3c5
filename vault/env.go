package vault

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/authgress/authgress/conf"
)

// Env is the env backend: id "GRAPH" reads GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET.
type Env struct {
	name   string
	lookup func(string) (string, bool)
}

// NewEnv returns an env backend reading the process environment.
func NewEnv(name string) *Env { return &Env{name: name, lookup: os.LookupEnv} }

// envNames returns the variables the env backend reads for id.
func envNames(id string) (clientID, clientSecret string) {
	prefix := strings.ToUpper(id)
	return prefix + "_CLIENT_ID", prefix + "_CLIENT_SECRET"
}

// envMissing says what is wrong with variable name, or "" when it is set and
// not empty.
func envMissing(lookup func(string) (string, bool), name string) string {
	v, ok := lookup(name)
	switch {
	case !ok:
		return "environment variable " + name + " is not set"
	case v == "":
		return "environment variable " + name + " is empty"
	}
	return ""
}

func (e *Env) Lookup(_ context.Context, id string) (Secret, error) {
	idVar, secretVar := envNames(id)
	if why := envMissing(e.lookup, secretVar); why != "" {
		return Secret{}, &Error{Vault: e.name, ID: id, Kind: ErrNotFound, Msg: why}
	}
	secret, _ := e.lookup(secretVar)
	s := Secret{ClientSecret: secret}
	if why := envMissing(e.lookup, idVar); why != "" {
		s.noClientID = &Error{Vault: e.name, ID: id, Kind: ErrNotFound, Msg: why}
	} else {
		s.ClientID, _ = e.lookup(idVar)
	}
	return s, nil
}

// CheckEnv reports, for each credential of cfg read from an env vault, every
// environment variable it needs that is not set or is empty in this
// process's environment: one error per variable, naming the credential.
// (At run time a token fetch for it fails.)
func CheckEnv(cfg *conf.Config) conf.Problems {
	var probs conf.Problems
	for _, name := range slices.Sorted(maps.Keys(cfg.Credentials)) {
		c := cfg.Credentials[name]
		if v, ok := cfg.Vaults[c.Vault]; !ok || v.Type != "env" {
			continue
		}
		idVar, secretVar := envNames(c.ID)
		for _, env := range []string{idVar, secretVar} {
			if why := envMissing(os.LookupEnv, env); why != "" {
				probs = append(probs, conf.Problem{File: cfg.Path, Path: "credentials." + name + ".id",
					Msg: fmt.Sprintf("credential %q (env vault %q): %s", name, c.Vault, why)})
			}
		}
	}
	return probs
}
