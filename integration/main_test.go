package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const oidcProviderVersion = "9.13.3"

var (
	binary    string // the authgress binary under test
	idpDir    string // where oidc-provider is installed
	idpScript string // testdata/oidc-provider-server.mjs, copied into idpDir
	workDir   string
)

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	_ = os.RemoveAll(workDir)
	os.Exit(code)
}

func setup() (int, error) {
	var err error
	workDir, err = os.MkdirTemp("", "authgress-it-")
	if err != nil {
		return 1, err
	}
	binary = filepath.Join(workDir, "authgress")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/authgress")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 1, fmt.Errorf("building authgress: %w", err)
	}
	idpDir, err = installOIDCProvider()
	return 0, err
}

// installOIDCProvider installs oidc-provider from npm into a cache directory
// shared by later runs ($AUTHGRESS_IT_CACHE, default ~/.cache/authgress-it),
// and copies the server script there (node finds oidc-provider from the
// script's directory) under a name holding its content hash, so that runs of
// different versions of the script sharing the cache do not overwrite
// each other's.
func installOIDCProvider() (string, error) {
	dir, err := npmInstall("oidc-provider-"+oidcProviderVersion, "oidc-provider@"+oidcProviderVersion)
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile("testdata/oidc-provider-server.mjs")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(src)
	idpScript = filepath.Join(dir, "server-"+hex.EncodeToString(sum[:8])+".mjs")
	if _, err := os.Stat(idpScript); err == nil {
		return dir, nil
	}
	tmp, err := os.CreateTemp(dir, "server-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dir, os.Rename(tmp.Name(), idpScript)
}

// testCache is the directory shared by later runs for what the tests install
// ($AUTHGRESS_IT_CACHE, default ~/.cache/authgress-it).
func testCache() (string, error) {
	if cache := os.Getenv("AUTHGRESS_IT_CACHE"); cache != "" {
		return cache, nil
	}
	home, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, "authgress-it"), nil
}

// npmInstall installs npm packages (exact versions, name@version) into
// the directory name of the test cache, unless they are there, and returns
// that directory. name should hold the versions.
func npmInstall(name string, pkgs ...string) (string, error) {
	cache, err := testCache()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, name)
	installed := true
	for _, p := range pkgs {
		pkg := p[:strings.LastIndex(p, "@")]
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			installed = false
		}
	}
	if installed {
		return dir, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("npm is needed to install %v for the integration tests (apt-get install nodejs npm): %w", pkgs, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "installing %v into %s\n", pkgs, dir)
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"authgress-it-`+name+`","private":true,"type":"module"}`), 0o644); err != nil {
		return "", err
	}
	npm := exec.Command("npm", append([]string{"install", "--no-audit", "--no-fund", "--save-exact"}, pkgs...)...)
	npm.Dir, npm.Stdout, npm.Stderr = dir, os.Stderr, os.Stderr
	if err := npm.Run(); err != nil {
		return "", fmt.Errorf("npm install %v: %w", pkgs, err)
	}
	return dir, nil
}

// requireAll is the environment variable that makes a missing test tool an
// error instead of a reason to skip: scripts/test (and so CI) sets it.
const requireAll = "AUTHGRESS_IT_REQUIRE_ALL"

// needed ends a test that cannot run because something it needs is not
// installed: it is skipped with the reason, or fails when requireAll is set.
func needed(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(requireAll) != "" {
		t.Fatalf("%s (%s is set: the full suite must run)", reason, requireAll)
		return
	}
	t.Skipf("skipped: %s (set %s=1 to make this a failure)", reason, requireAll)
}
