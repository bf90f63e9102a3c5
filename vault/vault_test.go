package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/authgress/authgress/conf"
)

func TestFileBackendReloads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[\"Safe:graph\"]\nclient_id = \"id1\"\nclient_secret = \"s1\"\n")
	f := NewFile("local", p)
	s, err := f.Lookup(context.Background(), "Safe:graph")
	if err != nil || s.ClientID != "id1" || s.ClientSecret != "s1" {
		t.Fatalf("lookup = %+v, %v", s, err)
	}
	write("[\"Safe:graph\"]\nclient_id = \"id1\"\nclient_secret = \"s2-rotated\"\n")
	s, err = f.Lookup(context.Background(), "Safe:graph")
	if err != nil || s.ClientSecret != "s2-rotated" {
		t.Fatalf("after rotation = %v", err)
	}
	if _, err := f.Lookup(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	write("not = toml = at all s3cret")
	_, err = f.Lookup(context.Background(), "Safe:graph")
	if !errors.Is(err, ErrUnavailable) || containsStr(err.Error(), "s3cret") {
		t.Fatalf("broken file: %v", err)
	}
}

func containsStr(s, sub string) bool { return stringIndex(s, sub) >= 0 }
func stringIndex(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestEnvBackendNamesMissingVariables: with only X_CLIENT_SECRET set, the
// lookup used to return an empty client id (the IdP then said
// invalid_client). Each missing or empty variable is an error naming it.
func TestEnvBackendNamesMissingVariables(t *testing.T) {
	env := map[string]string{
		"ONLYSECRET_CLIENT_SECRET": "s3cret-value",
		"EMPTYID_CLIENT_ID":        "", "EMPTYID_CLIENT_SECRET": "s3cret-value",
		"EMPTYSECRET_CLIENT_ID": "cid", "EMPTYSECRET_CLIENT_SECRET": "",
		"NOSECRET_CLIENT_ID": "cid",
	}
	e := &Env{name: "e", lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	for id, want := range map[string]string{
		"onlysecret": "environment variable ONLYSECRET_CLIENT_ID is not set",
		"emptyid":    "environment variable EMPTYID_CLIENT_ID is empty",
	} {
		s, err := e.Lookup(context.Background(), id)
		if err != nil || s.ClientSecret != "s3cret-value" {
			t.Fatalf("%s: the secret alone is usable (a secret reference): %v", id, err)
		}
		err = s.CheckClientID()
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: CheckClientID = %v, want %q", id, err, want)
		}
	}
	for id, want := range map[string]string{
		"emptysecret": "environment variable EMPTYSECRET_CLIENT_SECRET is empty",
		"nosecret":    "environment variable NOSECRET_CLIENT_SECRET is not set",
	} {
		if _, err := e.Lookup(context.Background(), id); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", id, err, want)
		}
	}
}

// TestFileBackendEntryErrors: an entry without client_id, or with a
// misspelt key, used to give an empty client id. Missing, empty and unknown
// keys are errors naming the key and the file.
func TestFileBackendEntryErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.toml")
	text := `
notatable = "s3cret-value"

[good]
client_id = "cid"
client_secret = "s3cret-value"

[noid]
client_secret = "s3cret-value"

[emptyid]
client_id = ""
client_secret = "s3cret-value"

[misspelt]
clientid = "cid"
client_secret = "s3cret-value"

[typo_secret]
client_id = "cid"
Client_Secret = "s3cret-value"

[other]
client_id = "cid"
client_secret = "s3cret-value"
note = "s3cret-value"

[nosecret]
client_id = "cid"

[emptysecret]
client_id = "cid"
client_secret = ""

[number]
client_id = 17
client_secret = "s3cret-value"

["Safe:with space"]
client_secret = "s3cret-value"
`
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	f := NewFile("local", p)
	if s, err := f.Lookup(context.Background(), "good"); err != nil || s.CheckClientID() != nil || s.ClientID != "cid" {
		t.Fatalf("good: %v", err)
	}
	for id, want := range map[string]string{
		"noid":            "the entry [noid] in " + p + " has no client_id",
		"emptyid":         "the entry [emptyid] in " + p + " has an empty client_id",
		"Safe:with space": `the entry ["Safe:with space"] in ` + p + " has no client_id",
	} {
		s, err := f.Lookup(context.Background(), id)
		if err != nil || s.ClientSecret != "s3cret-value" {
			t.Fatalf("%s: the secret alone is usable (a secret reference): %v", id, err)
		}
		if err := s.CheckClientID(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: CheckClientID = %v, want %q", id, err, want)
		}
	}
	for id, want := range map[string]string{
		"misspelt":    `the entry [misspelt] in ` + p + ` has the unknown key "clientid" (did you mean "client_id"?)`,
		"typo_secret": `the entry [typo_secret] in ` + p + ` has the unknown key "Client_Secret" (did you mean "client_secret"?)`,
		"other":       `the entry [other] in ` + p + ` has the unknown key "note" (the keys are client_id and client_secret)`,
		"nosecret":    "the entry [nosecret] in " + p + " has no client_secret",
		"emptysecret": "the entry [emptysecret] in " + p + " has an empty client_secret",
		"number":      "the entry [number] in " + p + ": client_id must be a string",
		"notatable":   "the entry [notatable] in " + p + " is not a table",
		"absent":      "no entry [absent] in " + p,
	} {
		_, err := f.Lookup(context.Background(), id)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", id, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows a value: %v", id, err)
		}
	}
}

func TestCheckEnvReportsEachMissingVariable(t *testing.T) {
	t.Setenv("AGT_FULL_CLIENT_ID", "cid")
	t.Setenv("AGT_FULL_CLIENT_SECRET", "s3cret-value")
	t.Setenv("AGT_HALF_CLIENT_SECRET", "s3cret-value")
	t.Setenv("AGT_EMPTY_CLIENT_ID", "")
	cfg := &conf.Config{Path: "a.toml",
		Vaults: map[string]*conf.Vault{"environment": {Type: "env"}, "files": {Type: "file"}},
		Credentials: map[string]*conf.Credential{
			"full":  {Vault: "environment", ID: "AGT_FULL"},
			"half":  {Vault: "environment", ID: "agt_half"},
			"empty": {Vault: "environment", ID: "AGT_EMPTY"},
			"file":  {Vault: "files", ID: "AGT_NONE"},
		}}
	var got []string
	for _, p := range CheckEnv(cfg) {
		if p.Warning {
			t.Errorf("a warning: %s", p)
		}
		got = append(got, p.String())
	}
	want := []string{
		`a.toml: error: credentials.empty.id: credential "empty" (env vault "environment"): environment variable AGT_EMPTY_CLIENT_ID is empty`,
		`a.toml: error: credentials.empty.id: credential "empty" (env vault "environment"): environment variable AGT_EMPTY_CLIENT_SECRET is not set`,
		`a.toml: error: credentials.half.id: credential "half" (env vault "environment"): environment variable AGT_HALF_CLIENT_ID is not set`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEnvBackend(t *testing.T) {
	env := map[string]string{"GRAPH_CLIENT_ID": "gid", "GRAPH_CLIENT_SECRET": "gsec"}
	e := &Env{name: "e", lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	s, err := e.Lookup(context.Background(), "graph")
	if err != nil || s.ClientID != "gid" || s.ClientSecret != "gsec" {
		t.Fatalf("got %+v %v", s, err)
	}
	if _, err := e.Lookup(context.Background(), "other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

type countingBackend struct {
	calls atomic.Int64
	fail  atomic.Bool
	gate  chan struct{} // if set, a lookup waits until it is closed
}

func (b *countingBackend) Lookup(ctx context.Context, id string) (Secret, error) {
	b.calls.Add(1)
	if b.gate != nil {
		<-b.gate
	}
	if b.fail.Load() {
		return Secret{}, &Error{Vault: "v", ID: id, Kind: ErrUnavailable, Msg: "down"}
	}
	return Secret{ClientID: "id", ClientSecret: fmt.Sprint("secret-", b.calls.Load())}, nil
}

// TestCacheSharesLookupsAndExpires: the backend lookup does not finish until
// all 50 callers are provably waiting on it (synctest.Wait).
func TestCacheSharesLookupsAndExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &countingBackend{gate: make(chan struct{})}
		c := NewCached("v", b, time.Minute, 0, time.Second)
		var wg sync.WaitGroup
		var done atomic.Int64
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = c.Get(context.Background(), "x"); done.Add(1) }()
		}
		synctest.Wait()
		if n := b.calls.Load(); n != 1 || done.Load() != 0 {
			t.Fatalf("50 concurrent lookups made %d backend calls (%d returned before it ended)", n, done.Load())
		}
		close(b.gate)
		wg.Wait()
		time.Sleep(2 * time.Minute) // the bubble's clock: past cache_ttl
		if s, _ := c.Get(context.Background(), "x"); s.ClientSecret != "secret-2" || b.calls.Load() != 2 {
			t.Fatalf("expired entry not refetched: %d", b.calls.Load())
		}
		c.Invalidate("x")
		if _, _ = c.Get(context.Background(), "x"); b.calls.Load() != 3 {
			t.Fatalf("invalidate did not force a lookup")
		}
	})
}

func TestCacheMaxStale(t *testing.T) {
	b := &countingBackend{}
	c := NewCached("v", b, time.Minute, 10*time.Minute, time.Second)
	now := time.Now()
	c.now = func() time.Time { return now }
	if _, err := c.Get(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	b.fail.Store(true)
	now = now.Add(5 * time.Minute)
	if _, err := c.Get(context.Background(), "x"); err != nil {
		t.Fatalf("within max_stale: %v", err)
	}
	now = now.Add(10 * time.Minute)
	if _, err := c.Get(context.Background(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("past max_stale: %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	_ = os.WriteFile(f, []byte("file-pass\n"), 0o600)
	t.Setenv("AG_TEST_PASS", "env-pass")
	t.Setenv("AG_TEST_P12_CLIENT_SECRET", "env-vault-pass") // no _CLIENT_ID: a secret reference needs none
	set := Set{"v": NewCached("v", &countingBackend{}, time.Minute, 0, time.Second), "e": NewCached("e", NewEnv("e"), time.Minute, 0, time.Second)}
	cases := []struct {
		ref  conf.Secret
		want string
	}{
		{conf.Secret{Env: "AG_TEST_PASS", Set: true}, "env-pass"},
		{conf.Secret{File: f, Set: true}, "file-pass"},
		{conf.Secret{Vault: "v", ID: "x", Set: true}, "secret-1"},
		{conf.Secret{Vault: "e", ID: "AG_TEST_P12", Set: true}, "env-vault-pass"},
	}
	for _, tc := range cases {
		got, err := set.Resolve(context.Background(), tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%v) = %q, %v", tc.ref, got, err)
		}
	}
	if _, err := set.Resolve(context.Background(), conf.Secret{Env: "AG_TEST_UNSET", Set: true}); err == nil {
		t.Error("unset env accepted")
	}
}

func TestSecretIsRedacted(t *testing.T) {
	s := Secret{ClientID: "id", ClientSecret: "canary-vault-secret"}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if stringIndex(out, "canary") >= 0 {
			t.Fatalf("secret printed: %s", out)
		}
	}
}
