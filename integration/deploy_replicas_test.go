package integration

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestKubernetesReplicasExample renders deploy/kubernetes/replicas (a
// gateway Deployment of several replicas sharing Redis) as the sidecar
// example is checked: kubectl kustomize, the Kubernetes API schemas, the
// pod's hardening, and its config through authgress check with the files
// the Secrets would mount.
func TestKubernetesReplicasExample(t *testing.T) {
	const dir = "../deploy/kubernetes/replicas"
	for _, f := range []string{"kustomization.yaml", "gateway.yaml", "redis.yaml"} {
		yamlLint(t, filepath.Join(dir, f))
	}
	var objs []kubeObject
	if err := json.Unmarshal(renderKustomization(t, dir), &objs); err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*kubeObject{}
	for i := range objs {
		byKind[objs[i].Kind+"/"+objs[i].Metadata.Name] = &objs[i]
	}
	gw, redis, svc := byKind["Deployment/authgress-gateway"], byKind["Deployment/authgress-redis"], byKind["Service/authgress-redis"]
	if gw == nil || redis == nil || svc == nil || byKind["Service/authgress-gateway"] == nil || byKind["NetworkPolicy/authgress-redis"] == nil {
		t.Fatalf("want the gateway Deployment and Service, Redis's Deployment, Service and NetworkPolicy; got %v", keys(byKind))
	}
	if gw.Spec.Replicas == nil || *gw.Spec.Replicas < 2 {
		t.Fatalf("the gateway runs %d replicas: the example is about several", replicasOf(gw))
	}
	var cm *kubeObject
	for i := range objs {
		if objs[i].Kind == "ConfigMap" && strings.HasPrefix(objs[i].Metadata.Name, "authgress-gateway-config-") {
			cm = &objs[i]
		}
	}
	if cm == nil {
		t.Fatal("no generated (content-hashed) ConfigMap authgress-gateway-config-…")
	}

	// The gateway pod: non-root, read-only, every Secret group-readable only.
	pod := gw.Spec.Template.Spec
	if p := pod.SecurityContext; p.RunAsNonRoot == nil || !*p.RunAsNonRoot || p.FSGroup == nil || *p.FSGroup != imageUID {
		t.Errorf("gateway pod securityContext: runAsNonRoot %v, fsGroup %v", p.RunAsNonRoot, p.FSGroup)
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; c.Name != "authgress" || sc.RunAsUser == nil || *sc.RunAsUser != imageUID || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("gateway container %q securityContext: %+v", c.Name, sc)
	}
	mounts := map[string]string{} // volume -> path
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	secretMounts := map[string]string{} // Secret -> path
	for _, v := range pod.Volumes {
		switch {
		case v.Secret != nil:
			secretMounts[v.Secret.SecretName] = mounts[v.Name]
			if m := v.Secret.DefaultMode; m == nil || *m&0o040 == 0 || *m&0o007 != 0 {
				t.Errorf("Secret %s defaultMode %v: want group-readable (0440) and nothing for others", v.Secret.SecretName, m)
			}
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != cm.Metadata.Name || mounts[v.Name] != "/etc/authgress" {
				t.Errorf("config volume: ConfigMap %q at %q", v.ConfigMap.Name, mounts[v.Name])
			}
		}
	}
	// Redis: a password from the Secret, not on a command line; no persistence.
	rc := redis.Spec.Template.Spec.Containers[0]
	script := strings.Join(append(rc.Command, rc.Args...), " ")
	if !strings.Contains(script, "requirepass $REDIS_PASSWORD") || strings.Contains(script, "--requirepass") || !strings.Contains(script, `--save ""`) {
		t.Errorf("redis command %q: want the password as config on stdin and no persistence", script)
	}

	// The config: [cache] points at Redis's Service, its key and password
	// files are where the Secret is mounted, and it passes check with
	// those files in place.
	text := cm.Data["authgress.toml"]
	var cfg struct {
		Cache struct {
			URL      string
			Password struct{ File string }
			Key      struct{ File string }
		}
		Vaults map[string]struct{ Path string }
		Server struct {
			Auth struct {
				Users []struct {
					Password struct{ File string }
				}
			}
		}
	}
	if _, err := toml.Decode(text, &cfg); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Cache.URL)
	if err != nil || u.Hostname() != svc.Metadata.Name || len(svc.Spec.Ports) != 1 || u.Port() != fmt.Sprint(svc.Spec.Ports[0].Port) {
		t.Errorf("cache.url %q does not name Redis's Service %s:%v", cfg.Cache.URL, svc.Metadata.Name, svc.Spec.Ports)
	}
	for _, f := range []string{cfg.Cache.Key.File, cfg.Cache.Password.File} {
		if filepath.Dir(f) != secretMounts["authgress-cache"] {
			t.Errorf("%s is not in the authgress-cache Secret's mount %q", f, secretMounts["authgress-cache"])
		}
	}
	tmp := t.TempDir()
	files := map[string]string{}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	files[cfg.Cache.Key.File] = base64.StdEncoding.EncodeToString(key)
	files[cfg.Cache.Password.File] = "redis-password"
	for _, v := range cfg.Vaults {
		files[v.Path] = "[billing]\nclient_id = \"a\"\nclient_secret = \"b\"\n"
	}
	for _, u := range cfg.Server.Auth.Users {
		files[u.Password.File] = "proxy-password"
	}
	r := []string{}
	for path, content := range files {
		if !strings.HasPrefix(path, "/run/secrets/") {
			t.Errorf("%s is not a mounted Secret", path)
		}
		local := filepath.Join(tmp, strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", "_"))
		_ = os.WriteFile(local, []byte(content+"\n"), 0o600)
		r = append(r, path, local)
	}
	// check resolves the key and password; Redis itself need not answer.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ln.Close()
	r = append(r, cfg.Cache.URL, "redis://"+ln.Addr().String()+"/0")
	path := filepath.Join(tmp, "authgress.toml")
	_ = os.WriteFile(path, []byte(strings.NewReplacer(r...).Replace(text)), 0o600)
	if code, out := runCheck(t, path); code != 0 {
		t.Fatalf("the gateway config: exit %d\n%s", code, out)
	}

	ops, _ := os.ReadFile("../docs/operations.md")
	if !strings.Contains(string(ops), "deploy/kubernetes/replicas") {
		t.Error("docs/operations.md does not describe deploy/kubernetes/replicas")
	}
}

func replicasOf(o *kubeObject) int {
	if o.Spec.Replicas == nil {
		return 1 // the Kubernetes default
	}
	return *o.Spec.Replicas
}
