package vault

import (
	"context"
	"os"
	"strings"
)

// Env is the env backend: id "GRAPH" reads GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET.
type Env struct {
	name   string
	lookup func(string) (string, bool)
}

// NewEnv returns an env backend reading the process environment.
func NewEnv(name string) *Env { return &Env{name: name, lookup: os.LookupEnv} }

func (e *Env) Lookup(_ context.Context, id string) (Secret, error) {
	prefix := strings.ToUpper(id)
	secret, ok := e.lookup(prefix + "_CLIENT_SECRET")
	if !ok || secret == "" {
		return Secret{}, &Error{Vault: e.name, ID: id, Kind: ErrNotFound, Msg: "environment variable " + prefix + "_CLIENT_SECRET is not set"}
	}
	clientID, _ := e.lookup(prefix + "_CLIENT_ID")
	return Secret{ClientID: clientID, ClientSecret: secret}, nil
}
