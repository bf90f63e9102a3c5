package conf

import (
	"strings"
	"testing"
)

// TestAdminAuth: [server.admin_auth] takes users like [server.auth], and
// check warns about an admin listener off loopback without it.
func TestAdminAuth(t *testing.T) {
	const offLoopback = "server.admin: the admin listener"
	cases := []struct {
		name, text string
		errors     []string // substrings of error lines
		warn       bool     // the off-loopback warning
	}{
		{"loopback, open", "[server]\nadmin='127.0.0.1:9464'\n", nil, false},
		{"localhost, open", "[server]\nadmin='localhost:9464'\n", nil, false},
		{"ipv6 loopback, open", "[server]\nadmin='[::1]:9464'\n", nil, false},
		{"all interfaces, open", "[server]\nadmin='0.0.0.0:9464'\n", nil, true},
		{"no host, open", "[server]\nadmin=':9464'\n", nil, true},
		{"all interfaces, authenticated", "[server]\nadmin='0.0.0.0:9464'\n[server.admin_auth]\nusers=[{name='ops', password={env='ADMIN_PW'}}]\n", nil, false},
		{"no users", "[server]\nadmin='0.0.0.0:9464'\n[server.admin_auth]\nusers=[]\n", []string{"server.admin_auth.users: [server.admin_auth] needs at least one user"}, false},
		{"bad users", "[server.admin_auth]\nusers=[{name='a:b', password={env='X'}}, {name='ops'}, {name='ops', password={env='Y'}}]\n",
			[]string{"server.admin_auth.users[0].name: a user name cannot contain ':'", "server.admin_auth.users[1].password: is required", `server.admin_auth.users[2].name: user "ops" is listed twice`}, false},
		{"unknown key", "[server.admin_auth]\nuser=[]\n", []string{`server.admin_auth.user`}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, probs := Load(writeConfig(t, tc.text))
			var errs, warns []string
			for _, p := range probs {
				if p.Warning {
					warns = append(warns, p.String())
				} else {
					errs = append(errs, p.String())
				}
			}
			for _, want := range tc.errors {
				if !strings.Contains(strings.Join(errs, "\n"), want) {
					t.Errorf("want error %q in:\n%v", want, probs)
				}
			}
			if len(tc.errors) == 0 && len(errs) > 0 {
				t.Errorf("unexpected errors:\n%v", probs)
			}
			if got := strings.Contains(strings.Join(warns, "\n"), offLoopback); got != tc.warn {
				t.Errorf("off-loopback warning: %v, want %v:\n%v", got, tc.warn, probs)
			}
			if tc.name == "all interfaces, authenticated" && (cfg.Server.AdminAuth == nil || cfg.Server.AdminAuth.Users[0].Password.Env != "ADMIN_PW") {
				t.Errorf("admin_auth not decoded: %+v", cfg.Server.AdminAuth)
			}
		})
	}
}
