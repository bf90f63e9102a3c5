// Package filecheck loads what a validated config's protocol profiles point
// at (trust anchors, PEM certificate and key, PKCS#12 keystores) the way the
// running proxy will, and reports every problem as a conf.Problem with the
// line and key path of the key that names the file. It lives outside conf
// because loading a profile is tlsprofiles' job, and tlsprofiles imports conf.
package filecheck

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/intercept"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/vault"
)

// Profiles loads each profile's CA file and client identity separately, so
// that all of their problems are reported in one run, not only the first.
// Files conf.Load already found unreadable are skipped (it reported them),
// and so is a keystore whose password comes from a vault: that needs the
// vault, which building the runtime checks.
func Profiles(ctx context.Context, cfg *conf.Config) conf.Problems {
	var out conf.Problems
	for _, name := range slices.Sorted(maps.Keys(cfg.Profiles)) {
		p := cfg.Profiles[name]
		key := "profiles." + name
		report := func(at string, err error) {
			msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("profile %q: ", name))
			out = append(out, cfg.ProblemAt(key+"."+at, msg))
		}
		if p.CA != "" && conf.Readable(p.CA) == nil {
			if _, err := tlsprofiles.Load(ctx, name, &conf.Profile{CA: p.CA}, nil); err != nil {
				report("ca", err)
			}
		}
		switch {
		case p.Cert != "" && p.Key != "" && p.Keystore == "":
			if conf.Readable(p.Cert) != nil || conf.Readable(p.Key) != nil {
				break
			}
			if _, err := tlsprofiles.Load(ctx, name, &conf.Profile{Cert: p.Cert, Key: p.Key}, nil); err != nil {
				at := "cert"
				if strings.Contains(err.Error(), "private key") {
					at = "key"
				}
				report(at, err)
			}
		case p.Keystore != "" && p.Cert == "" && p.Key == "" && (p.Password.IsLiteral() || p.Password.Env != "" || p.Password.File != ""):
			if conf.Readable(p.Keystore) != nil || (p.Password.File != "" && conf.Readable(p.Password.File) != nil) {
				break
			}
			ks := &conf.Profile{Keystore: p.Keystore, Password: p.Password}
			if _, err := tlsprofiles.Load(ctx, name, ks, vault.Set{}.Resolve); err != nil {
				at := "keystore"
				if strings.Contains(err.Error(), "password") {
					at = "password"
				}
				report(at, err)
			}
		}
	}
	return out
}

// Listeners loads [server.tls] (certificate, key, client CA) and the
// interception CA the way the running proxy will, reporting each problem at
// the key that names the file.
func Listeners(ctx context.Context, cfg *conf.Config) conf.Problems {
	var out conf.Problems
	if t := cfg.Server.TLS; t != nil && t.Cert != "" && t.Key != "" && conf.Readable(t.Cert) == nil && conf.Readable(t.Key) == nil &&
		(t.ClientCA == "" || conf.Readable(t.ClientCA) == nil) {
		if _, err := tlsprofiles.NewServer(t); err != nil {
			msg := strings.TrimPrefix(err.Error(), "server.tls: ")
			at := "server.tls.cert"
			switch {
			case strings.HasPrefix(msg, "server.tls.client_ca: "):
				at, msg = "server.tls.client_ca", strings.TrimPrefix(msg, "server.tls.client_ca: ")
			case strings.Contains(msg, "private key"):
				at = "server.tls.key"
			}
			out = append(out, cfg.ProblemAt(at, msg))
		}
	}
	if ic := cfg.Intercept; ic != nil && ic.CACert != "" && conf.Readable(ic.CACert) == nil && ic.CAKey.File != "" && conf.Readable(ic.CAKey.File) == nil {
		certPEM, _ := os.ReadFile(ic.CACert)
		keyPEM, _ := os.ReadFile(ic.CAKey.File)
		if _, err := intercept.Load(certPEM, keyPEM, 1, 0); err != nil {
			at, msg := "intercept.ca_cert", err.Error()
			if strings.HasPrefix(msg, "ca_key") {
				at = "intercept.ca_key"
			}
			out = append(out, cfg.ProblemAt(at, strings.TrimPrefix(strings.TrimPrefix(msg, "ca_cert: "), "ca_key: ")))
		}
	}
	return out
}
