package conf

import (
	"sort"
	"strings"
)

// cycles reports vaults and profiles that depend on each other in a loop:
// a vault uses a profile (client certificate) and may take its own secrets
// (token, AppRole IDs) from another vault; a profile may take its keystore
// password from a vault. Such a loop could never be resolved.
func (v *validator) cycles() {
	deps := map[string][]string{}
	for name, vt := range v.cfg.Vaults {
		node := "vaults." + name
		if vt.Profile != "" {
			deps[node] = append(deps[node], "profiles."+vt.Profile)
		}
		for _, s := range []Secret{vt.Token, vt.RoleID, vt.SecretID} {
			if s.Vault != "" {
				deps[node] = append(deps[node], "vaults."+s.Vault)
			}
		}
	}
	for name, p := range v.cfg.Profiles {
		if p.Password.Vault != "" {
			node := "profiles." + name
			deps[node] = append(deps[node], "vaults."+p.Password.Vault)
		}
	}
	nodes := make([]string, 0, len(deps))
	for n := range deps {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(n string) bool
	visit = func(n string) bool {
		switch state[n] {
		case onPath:
			i := 0
			for path[i] != n {
				i++
			}
			loop := append(append([]string{}, path[i:]...), n)
			v.r.errorf(n, "depends on itself: %s (a vault's client certificate or token cannot come from a vault that needs it)", strings.Join(loop, " -> "))
			return true
		case done:
			return false
		}
		state[n] = onPath
		path = append(path, n)
		for _, d := range deps[n] {
			if visit(d) {
				return true
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return false
	}
	for _, n := range nodes {
		if state[n] == unseen && visit(n) {
			return
		}
	}
}
