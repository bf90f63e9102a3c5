package vault

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// File is the file backend: a TOML file of [<id>] tables with client_id and
// client_secret. The file is re-read when its modification time or size changes.
type File struct {
	name string
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	entries map[string]fileEntry
}

// NewFile returns a file backend; the file is read on first lookup.
func NewFile(name, path string) *File { return &File{name: name, path: path} }

// fileEntry is one [<id>] table: its values, and what is wrong with it (a
// message naming the key and the file; "" when nothing is).
type fileEntry struct {
	clientID, clientSecret string
	hasID, hasSecret       bool
	problem                string
}

func (f *File) Lookup(_ context.Context, id string) (Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reload(); err != nil {
		return Secret{}, &Error{Vault: f.name, ID: id, Kind: ErrUnavailable, Msg: err.Error()}
	}
	e, ok := f.entries[id]
	notFound := func(msg string) (Secret, error) {
		return Secret{}, &Error{Vault: f.name, ID: id, Kind: ErrNotFound, Msg: msg}
	}
	switch {
	case !ok:
		return notFound(fmt.Sprintf("no entry [%s] in %s", tomlKey(id), f.path))
	case e.problem != "":
		return notFound(e.problem)
	case !e.hasSecret:
		return notFound(fmt.Sprintf("the entry [%s] in %s has no client_secret", tomlKey(id), f.path))
	case e.clientSecret == "":
		return notFound(fmt.Sprintf("the entry [%s] in %s has an empty client_secret", tomlKey(id), f.path))
	}
	s := Secret{ClientID: e.clientID, ClientSecret: e.clientSecret}
	switch {
	case !e.hasID:
		s.noClientID = &Error{Vault: f.name, ID: id, Kind: ErrNotFound, Msg: fmt.Sprintf("the entry [%s] in %s has no client_id", tomlKey(id), f.path)}
	case e.clientID == "":
		s.noClientID = &Error{Vault: f.name, ID: id, Kind: ErrNotFound, Msg: fmt.Sprintf("the entry [%s] in %s has an empty client_id", tomlKey(id), f.path)}
	}
	return s, nil
}

// reload reads the file if it changed. Its errors name the file, never a line
// of it.
func (f *File) reload() error {
	st, err := os.Stat(f.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the vault file %s does not exist", f.path)
		}
		return fmt.Errorf("the vault file %s cannot be read", f.path)
	}
	if f.entries != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return nil
	}
	var raw map[string]any
	if _, err := toml.DecodeFile(f.path, &raw); err != nil {
		// The parse error may quote a line of the file: do not pass it on.
		return fmt.Errorf("the vault file %s is not valid TOML", f.path)
	}
	entries := make(map[string]fileEntry, len(raw))
	for id, v := range raw {
		entries[id] = f.entry(id, v)
	}
	f.entries, f.modTime, f.size = entries, st.ModTime(), st.Size()
	return nil
}

// entry checks one top-level value of the file: a table whose only keys are
// client_id and client_secret, both strings. Messages name the key and the
// file, never a value.
func (f *File) entry(id string, v any) fileEntry {
	where := fmt.Sprintf("the entry [%s] in %s", tomlKey(id), f.path)
	tbl, ok := v.(map[string]any)
	if !ok {
		return fileEntry{problem: fmt.Sprintf("%s is not a table (write [%s] with client_id and client_secret below it)", where, tomlKey(id))}
	}
	var e fileEntry
	for _, k := range slices.Sorted(maps.Keys(tbl)) {
		s, isString := tbl[k].(string)
		switch {
		case k != "client_id" && k != "client_secret":
			msg := fmt.Sprintf("%s has the unknown key %q (the keys are client_id and client_secret)", where, k)
			if want := suggestKey(k); want != "" {
				msg = fmt.Sprintf("%s has the unknown key %q (did you mean %q?)", where, k, want)
			}
			return fileEntry{problem: msg}
		case !isString:
			return fileEntry{problem: fmt.Sprintf("%s: %s must be a string", where, k)}
		case k == "client_id":
			e.clientID, e.hasID = s, true
		default:
			e.clientSecret, e.hasSecret = s, true
		}
	}
	return e
}

// suggestKey returns the key k was probably meant to be (clientid,
// Client_ID, client-secret, …), or "".
func suggestKey(k string) string {
	norm := strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(k))
	switch norm {
	case "clientid", "id":
		return "client_id"
	case "clientsecret", "secret":
		return "client_secret"
	}
	return ""
}

// tomlKey writes id as a TOML table key: bare when it can be, else quoted.
func tomlKey(id string) string {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Sprintf("%q", id)
		}
	}
	if id == "" {
		return `""`
	}
	return id
}
