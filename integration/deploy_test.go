package integration

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// These machines cannot run Docker or Kubernetes: the deployment files are
// checked with what can run here (systemd-analyze, kubectl kustomize, the
// Kubernetes API schemas from npm kubernetes-models) and by running the
// commands they hold against the real binary.

const (
	unitFile      = "../deploy/systemd/authgress.service"
	unitBinary    = "/usr/local/bin/authgress"
	unitConfig    = "/etc/authgress/authgress.toml"
	imageUID      = 65532
	imageConfig   = "/etc/authgress/authgress.toml"
	kubeModelsVer = "5.1.0"
	npmYAMLVer    = "2.9.1"
)

func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is needed to verify deploy/systemd/authgress.service (apt-get install systemd)")
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart binaries exist: point them at the one under test.
	path := filepath.Join(t.TempDir(), "authgress.service")
	_ = os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), unitBinary, binary)), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lost its hardening: no %q", strings.TrimSpace(want))
		}
	}
}

// unitDirectives returns the values of a directive of the unit, in order.
func unitDirectives(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+"="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// TestSystemdReloadRunsCheckFirst runs the unit's ExecReload= commands in
// order, as systemd does (the first failure fails the reload and skips the
// rest), against a running authgress: a config with errors must fail the
// reload and never reach the process.
func TestSystemdReloadRunsCheckFirst(t *testing.T) {
	reload := unitDirectives(t, "ExecReload")
	if len(reload) == 0 {
		t.Fatal("the unit has no ExecReload=")
	}
	up := startUpstream(t)
	a := startAuthgress(t, config("http://127.0.0.1:1/token", up.Addr, ""))
	path := filepath.Join(a.Dir, "authgress.toml")
	systemctlReload := func() error {
		for _, line := range reload {
			line = strings.NewReplacer(unitBinary, binary, unitConfig, path, "$MAINPID", fmt.Sprint(a.cmd.Process.Pid)).Replace(line)
			f := strings.Fields(line)
			if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", line, err, out)
			}
		}
		return nil
	}

	if err := systemctlReload(); err != nil {
		t.Fatalf("reload of a valid config failed: %v", err)
	}
	a.WaitLog(func(l map[string]any) bool { return l["msg"] == "config reloaded" })

	good, _ := os.ReadFile(path)
	_ = os.WriteFile(path, append(good, "\n[connections.broken]\nhosts = 42\n"...), 0o600)
	err := systemctlReload()
	if err == nil || !strings.Contains(err.Error(), "hosts") {
		t.Fatalf("reload of a broken config: %v, want the check's failure naming the problem", err)
	}
	time.Sleep(300 * time.Millisecond) // log output is flushed every 100ms
	hups := 0
	for _, l := range a.logLines() {
		if msg, _ := l["msg"].(string); msg == "SIGHUP: reloading" {
			hups++
		} else if strings.HasPrefix(msg, "reload rejected") {
			t.Fatalf("the broken config reached the process (%q): the check did not stop the SIGHUP", msg)
		}
	}
	if hups != 1 {
		t.Fatalf("%d SIGHUPs reached the process, want only the first reload's", hups)
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

// kubeObject is the part of a Kubernetes object the tests look at.
type kubeObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec struct {
		Replicas *int                 `json:"replicas"`
		Selector map[string]any       `json:"selector"`
		Ports    []struct{ Port int } `json:"ports"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				SecurityContext securityContext `json:"securityContext"`
				Containers      []struct {
					Name            string          `json:"name"`
					Image           string          `json:"image"`
					Args            []string        `json:"args"`
					Command         []string        `json:"command"`
					SecurityContext securityContext `json:"securityContext"`
					Env             []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"env"`
					VolumeMounts []struct {
						Name      string `json:"name"`
						MountPath string `json:"mountPath"`
					} `json:"volumeMounts"`
				} `json:"containers"`
				Volumes []struct {
					Name      string `json:"name"`
					ConfigMap *struct {
						Name string `json:"name"`
					} `json:"configMap"`
					Secret *struct {
						SecretName  string `json:"secretName"`
						DefaultMode *int   `json:"defaultMode"`
					} `json:"secret"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type securityContext struct {
	RunAsUser                *int  `json:"runAsUser"`
	RunAsGroup               *int  `json:"runAsGroup"`
	RunAsNonRoot             *bool `json:"runAsNonRoot"`
	FSGroup                  *int  `json:"fsGroup"`
	ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
}

// renderKubernetes renders deploy/kubernetes with kubectl kustomize and
// validates every object against the Kubernetes API schemas.
func renderKubernetes(t *testing.T) []kubeObject {
	t.Helper()
	var objs []kubeObject
	if err := json.Unmarshal(renderKustomization(t, "../deploy/kubernetes"), &objs); err != nil {
		t.Fatal(err)
	}
	return objs
}

// renderKustomization renders a kustomization directory with kubectl
// kustomize, validates every object against the Kubernetes API schemas,
// and returns them as a JSON array.
func renderKustomization(t *testing.T, dir string) []byte {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("kubectl is needed to render " + dir + " (apt-get install kubernetes-client)")
	}
	rendered, err := exec.Command("kubectl", "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v %s", dir, err, stderrOf(err))
	}
	npmDir, err := npmInstall("kubernetes-models-"+kubeModelsVer, "kubernetes-models@"+kubeModelsVer, "yaml@"+npmYAMLVer)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := os.ReadFile("testdata/k8s-validate.mjs")
	_ = os.WriteFile(filepath.Join(npmDir, "k8s-validate.mjs"), script, 0o644)
	validate := exec.Command("node", filepath.Join(npmDir, "k8s-validate.mjs"))
	validate.Stdin = strings.NewReader(string(rendered))
	out, err := validate.Output()
	if err != nil {
		t.Fatalf("the manifests of %s do not validate against the Kubernetes API schemas: %v\n%s", dir, err, stderrOf(err))
	}
	return out
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func TestKubernetesSidecarExample(t *testing.T) {
	for _, f := range []string{"../deploy/kubernetes/kustomization.yaml", "../deploy/kubernetes/deployment.yaml"} {
		yamlLint(t, f)
	}
	objs := renderKubernetes(t)
	var dep, cm *kubeObject
	for i := range objs {
		switch objs[i].Kind {
		case "Deployment":
			dep = &objs[i]
		case "ConfigMap":
			cm = &objs[i]
		}
	}
	if dep == nil || cm == nil {
		t.Fatalf("want a Deployment and a ConfigMap, got %d objects", len(objs))
	}
	pod := dep.Spec.Template.Spec

	// Non-root, numeric, and the image's user.
	if p := pod.SecurityContext; p.RunAsNonRoot == nil || !*p.RunAsNonRoot || p.FSGroup == nil || *p.FSGroup != imageUID {
		t.Errorf("pod securityContext: runAsNonRoot %v, fsGroup %v; want true and %d", p.RunAsNonRoot, p.FSGroup, imageUID)
	}
	byName := map[string]int{}
	for i, c := range pod.Containers {
		byName[c.Name] = i
	}
	ag := pod.Containers[byName["authgress"]]
	if ag.Name != "authgress" {
		t.Fatal("no authgress container")
	}
	sc := ag.SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != imageUID || sc.RunAsGroup == nil || *sc.RunAsGroup != imageUID || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("authgress securityContext: runAsUser %v runAsGroup %v runAsNonRoot %v; want %d, %d, true", sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot, imageUID, imageUID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("authgress securityContext: want readOnlyRootFilesystem and no privilege escalation")
	}

	// The Secret is readable by the authgress group (fsGroup), by nobody else.
	mounts := map[string]string{}
	for _, m := range ag.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range pod.Volumes {
		switch {
		case v.Secret != nil:
			if mounts[v.Name] != "/run/secrets/oauth" {
				t.Errorf("secret volume %q mounted at %q", v.Name, mounts[v.Name])
			}
			if m := v.Secret.DefaultMode; m == nil || *m&0o040 == 0 || *m&0o007 != 0 {
				t.Errorf("secret defaultMode %v: want group-readable (0440) and nothing for others", m)
			}
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != cm.Metadata.Name || mounts[v.Name] != "/etc/authgress" {
				t.Errorf("config volume: ConfigMap %q at %q, want %q at /etc/authgress", v.ConfigMap.Name, mounts[v.Name], cm.Metadata.Name)
			}
		}
	}
	// The generated name carries a content hash: a config change rolls the pods,
	// and the docs must say that (rather than give SIGHUP advice).
	if !strings.HasPrefix(cm.Metadata.Name, "authgress-config-") {
		t.Errorf("ConfigMap %q has no content hash: then the docs must explain the SIGHUP reload", cm.Metadata.Name)
	}
	ops, _ := os.ReadFile("../docs/operations.md")
	if !strings.Contains(string(ops), "A config change rolls the pods") {
		t.Error("docs/operations.md does not say that a config change rolls the pods")
	}

	// The app reaches the proxy with both spellings (curl reads only lowercase).
	app := pod.Containers[byName["app"]]
	env := map[string]string{}
	for _, e := range app.Env {
		env[e.Name] = e.Value
	}
	for _, k := range []string{"http_proxy", "HTTP_PROXY"} {
		if env[k] != "http://127.0.0.1:3128" {
			t.Errorf("app env %s = %q, want http://127.0.0.1:3128", k, env[k])
		}
	}
	if env["no_proxy"] == "" || env["no_proxy"] != env["NO_PROXY"] || !strings.Contains(env["no_proxy"], "localhost") {
		t.Errorf("app env no_proxy %q / NO_PROXY %q: want both, equal, with localhost", env["no_proxy"], env["NO_PROXY"])
	}

	// The rendered sidecar config passes check once its secret file exists,
	// and listens where the app's proxy variables point.
	text := cm.Data["authgress.toml"]
	if !strings.Contains(text, `listen = "127.0.0.1:3128"`) {
		t.Error("the sidecar config does not listen on 127.0.0.1:3128")
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "clients.toml")
	_ = os.WriteFile(secrets, []byte("[billing]\nclient_id = \"a\"\nclient_secret = \"b\"\n"), 0o600)
	path := filepath.Join(dir, "authgress.toml")
	_ = os.WriteFile(path, []byte(strings.ReplaceAll(text, "/run/secrets/oauth/clients.toml", secrets)), 0o600)
	if code, out := runCheck(t, path); code != 0 {
		t.Fatalf("sidecar config: exit %d\n%s", code, out)
	}
}

// dockerfile returns the Dockerfile and its final stage.
func dockerfile(t *testing.T) (text, final string) {
	t.Helper()
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text = string(df)
	return text, text[strings.LastIndex(text, "\nFROM "):]
}

func TestDockerfileBuildsAStaticNonRootImage(t *testing.T) {
	text, final := dockerfile(t)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) != 2 || !strings.Contains(froms[1][1], "distroless/static") || !strings.HasSuffix(froms[1][1], ":nonroot") {
		t.Fatalf("want a build stage and a distroless/static:nonroot final stage, got %v", froms)
	}
	// Kubernetes runAsNonRoot can only verify a numeric user.
	if u := regexp.MustCompile(`(?m)^USER (.*)$`).FindStringSubmatch(final); u == nil || u[1] != fmt.Sprintf("%d:%d", imageUID, imageUID) {
		t.Errorf("final stage USER %v, want %d:%d (numeric)", u, imageUID, imageUID)
	}
	for _, want := range []string{`ENTRYPOINT ["/usr/local/bin/authgress"]`, `CMD ["run", "--config", "` + imageConfig + `"]`, "COPY --from=build"} {
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

// dockerRunLine is the documented `docker run` command (continuation lines
// joined, the leading "#" of Dockerfile comments removed).
func dockerRunLine(t *testing.T, text, prefix string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), prefix))
		if b.Len() == 0 && !strings.HasPrefix(l, "docker run ") {
			continue
		}
		cont := strings.HasSuffix(l, `\`)
		b.WriteString(strings.TrimSpace(strings.TrimSuffix(l, `\`)) + " ")
		if !cont {
			break
		}
	}
	return strings.TrimSpace(b.String())
}

// TestDockerRunLineWorks checks the documented docker run: the config it
// mounts listens on a non-loopback address (the published port cannot reach
// the container's loopback) on the published port, with proxy
// authentication, and passes check with the environment the line passes.
func TestDockerRunLineWorks(t *testing.T) {
	text, _ := dockerfile(t)
	run := dockerRunLine(t, text, "#")
	ops, _ := os.ReadFile("../docs/operations.md")
	if doc := dockerRunLine(t, string(ops), ""); doc != run {
		t.Errorf("docs/operations.md and the Dockerfile show different docker run lines:\n%s\n%s", doc, run)
	}
	mounts := map[string]string{}
	for _, m := range regexp.MustCompile(`-v "\$PWD/(\S+?):(\S+?)(:ro)?"`).FindAllStringSubmatch(run, -1) {
		mounts[m[2]] = m[1]
	}
	cfgFile := mounts[imageConfig]
	if cfgFile == "" {
		t.Fatalf("docker run does not mount a config at %s: %s", imageConfig, run)
	}
	var cfg struct {
		Server struct {
			Listen string
			Auth   *struct{ Users []struct{ Name string } }
		}
		Vaults map[string]struct{ Path string }
	}
	if _, err := toml.DecodeFile("../"+cfgFile, &cfg); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(cfg.Server.Listen)
	if err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsLoopback() {
		t.Fatalf("%s: listen %q: a container needs a non-loopback listen address for -p", cfgFile, cfg.Server.Listen)
	}
	if !strings.Contains(run, "-p "+port+":"+port) {
		t.Errorf("docker run does not publish the listen port %s: %s", port, run)
	}
	if cfg.Server.Auth == nil || len(cfg.Server.Auth.Users) == 0 {
		t.Errorf("%s listens on %s without [server.auth]", cfgFile, cfg.Server.Listen)
	}
	// check it as the container would run it: the mounted secrets file and the passed environment.
	dir := t.TempDir()
	body, _ := os.ReadFile("../" + cfgFile)
	conf := string(body)
	for _, v := range cfg.Vaults {
		if v.Path == "" {
			continue
		}
		if mounts[v.Path] == "" {
			t.Errorf("vault file %s is not mounted by docker run", v.Path)
		}
		local := filepath.Join(dir, filepath.Base(v.Path))
		_ = os.WriteFile(local, []byte("[billing]\nclient_id = \"a\"\nclient_secret = \"b\"\n"), 0o600)
		conf = strings.ReplaceAll(conf, v.Path, local)
	}
	path := filepath.Join(dir, "authgress.toml")
	_ = os.WriteFile(path, []byte(conf), 0o600)
	check := exec.Command(binary, "check", "--config", path)
	check.Env = os.Environ()
	for _, e := range regexp.MustCompile(`-e (\w+)`).FindAllStringSubmatch(run, -1) {
		check.Env = append(check.Env, e[1]+"=from-the-host")
	}
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("%s as docker run passes it: %v\n%s", cfgFile, err, out)
	}
}
