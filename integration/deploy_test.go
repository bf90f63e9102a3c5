package integration

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// These machines cannot run Docker or Kubernetes: the deployment files are
// checked by construction and linted with what can run here.

func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is needed to verify deploy/systemd/authgress.service (apt-get install systemd)")
	}
	unit, err := os.ReadFile("../deploy/systemd/authgress.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart binaries exist: point them at the one under test.
	path := filepath.Join(t.TempDir(), "authgress.service")
	_ = os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/authgress", binary)), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// yamlLint parses every YAML document of a file with yamllint, or PyYAML.
func yamlLint(t *testing.T, file string) {
	t.Helper()
	var cmd *exec.Cmd
	if _, err := exec.LookPath("yamllint"); err == nil {
		cmd = exec.Command("yamllint", "-d", "{extends: relaxed, rules: {line-length: {max: 160}}}", "-s", file)
	} else if exec.Command("python3", "-c", "import yaml").Run() == nil {
		cmd = exec.Command("python3", "-c", "import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))", file)
	} else {
		t.Fatal("yamllint or python3 with PyYAML is needed to lint the Kubernetes manifests (apt-get install yamllint)")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, out)
	}
}

func TestKubernetesSidecarExample(t *testing.T) {
	for _, f := range []string{"../deploy/kubernetes/kustomization.yaml", "../deploy/kubernetes/deployment.yaml"} {
		yamlLint(t, f)
	}
	dep, _ := os.ReadFile("../deploy/kubernetes/deployment.yaml")
	for _, want := range []string{"HTTP_PROXY", "value: http://127.0.0.1:3128", "path: /readyz", "path: /healthz",
		"mountPath: /etc/authgress", "mountPath: /run/secrets/oauth", "readOnlyRootFilesystem: true", "runAsNonRoot: true"} {
		if !strings.Contains(string(dep), want) {
			t.Errorf("deployment.yaml lacks %q", want)
		}
	}
	// The sidecar config passes check once its secret file exists.
	dir := t.TempDir()
	cfg, _ := os.ReadFile("../deploy/kubernetes/authgress.toml")
	secrets := filepath.Join(dir, "clients.toml")
	_ = os.WriteFile(secrets, []byte("[billing]\nclient_id = \"a\"\nclient_secret = \"b\"\n"), 0o600)
	path := filepath.Join(dir, "authgress.toml")
	_ = os.WriteFile(path, []byte(strings.ReplaceAll(string(cfg), "/run/secrets/oauth/clients.toml", secrets)), 0o600)
	if code, out := runCheck(t, path); code != 0 {
		t.Fatalf("sidecar config: exit %d\n%s", code, out)
	}
}

func TestDockerfileBuildsAStaticNonRootImage(t *testing.T) {
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) != 2 || !strings.Contains(froms[1][1], "distroless/static") || !strings.HasSuffix(froms[1][1], ":nonroot") {
		t.Fatalf("want a build stage and a distroless/static:nonroot final stage, got %v", froms)
	}
	final := text[strings.LastIndex(text, "\nFROM "):]
	for _, want := range []string{"USER nonroot", `ENTRYPOINT ["/usr/local/bin/authgress"]`, "COPY --from=build"} {
		if !strings.Contains(final, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	if strings.Contains(final, "RUN ") {
		t.Error("the final stage runs commands: it has no shell")
	}
	// Run the Dockerfile's own build line and check the binary is static.
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("no 'RUN CGO_ENABLED=0 go build' line")
	}
	out := filepath.Join(t.TempDir(), "authgress")
	line := strings.NewReplacer("${VERSION}", "test", "/out/authgress", out).Replace(m[1])
	build := exec.Command("sh", "-c", line)
	build.Dir = ".."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the image binary is dynamically linked (has an ELF interpreter)")
		}
	}
	if v, err := exec.Command(out, "version").Output(); err != nil || !strings.HasPrefix(string(v), "authgress test") {
		t.Fatalf("version: %v %s", err, v)
	}
}
