package vault

import (
	"context"
	"errors"
	"os"
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
	entries map[string]Secret
}

// NewFile returns a file backend; the file is read on first lookup.
func NewFile(name, path string) *File { return &File{name: name, path: path} }

type fileEntry struct {
	ClientID     string `toml:"client_id"`
	ClientSecret string `toml:"client_secret"`
}

func (f *File) Lookup(_ context.Context, id string) (Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.reload(); err != nil {
		return Secret{}, &Error{Vault: f.name, ID: id, Kind: ErrUnavailable, Msg: "cannot read the vault file", Err: err}
	}
	s, ok := f.entries[id]
	if !ok {
		return Secret{}, &Error{Vault: f.name, ID: id, Kind: ErrNotFound, Msg: "no such entry in the vault file"}
	}
	if s.ClientSecret == "" {
		return Secret{}, &Error{Vault: f.name, ID: id, Kind: ErrNotFound, Msg: "the entry has an empty client_secret"}
	}
	return s, nil
}

func (f *File) reload() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return err
	}
	if f.entries != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return nil
	}
	var raw map[string]fileEntry
	if _, err := toml.DecodeFile(f.path, &raw); err != nil {
		// The parse error may quote a line of the file: do not pass it on.
		return errors.New("the vault file is not valid TOML")
	}
	entries := make(map[string]Secret, len(raw))
	for id, e := range raw {
		entries[id] = Secret{ClientID: e.ClientID, ClientSecret: e.ClientSecret}
	}
	f.entries, f.modTime, f.size = entries, st.ModTime(), st.Size()
	return nil
}
