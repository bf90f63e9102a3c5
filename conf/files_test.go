package conf

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUnreadableFilesReported: a file vault's path (and other files the
// config names) is checked by opening it as the running user; os.Stat let a
// directory or an unreadable file pass.
func TestUnreadableFilesReported(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	text := `[vaults.dir]
type = "file"
path = "secrets.d"

[vaults.missing]
type = "file"
path = "missing.toml"

[profiles.p]
ca = "secrets.d"
keystore = "nope.p12"
password = { file = "nope-pass" }
`
	path := filepath.Join(dir, "authgress.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, probs := Load(path)
	out := probs.Error()
	for _, want := range []string{
		`:3:1: error: vaults.dir.path: "` + filepath.Join(dir, "secrets.d") + `" is a directory, not a file`,
		`:7:1: error: vaults.missing.path: file "` + filepath.Join(dir, "missing.toml") + `" does not exist`,
		`:10:1: error: profiles.p.ca: "` + filepath.Join(dir, "secrets.d") + `" is a directory`,
		`:11:1: error: profiles.p.keystore: file "` + filepath.Join(dir, "nope.p12") + `" does not exist`,
		`:12:1: error: profiles.p.password: secret file "` + filepath.Join(dir, "nope-pass") + `" does not exist`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Log("\n" + out)
	}
}

func TestUnreadableByMode(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file: the directory and missing-file cases cover this")
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets.toml")
	if err := os.WriteFile(secrets, []byte("[x]\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	_, probs := Parse(filepath.Join(dir, "authgress.toml"), []byte("[vaults.v]\ntype = 'file'\npath = 'secrets.toml'\n"))
	if !strings.Contains(probs.Error(), ":3:1: error: vaults.v.path: file \""+secrets+"\" cannot be read by this user (permission denied)") {
		t.Fatalf("got:\n%v", probs)
	}
}

// TestReadableFIFO: opening a FIFO for reading blocks until a writer comes;
// a config naming one must not hang check.
func TestReadableFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	done := make(chan error, 1)
	go func() { done <- Readable(fifo) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Readable(fifo) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Readable blocked on a FIFO")
	}
}
