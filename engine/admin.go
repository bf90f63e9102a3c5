package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/dashboard"
	"github.com/authgress/authgress/proxy"
	"github.com/authgress/authgress/tlsprofiles"
	"github.com/authgress/authgress/upstream"
)

// adminServer serves /healthz (alive), /readyz (config loaded and every
// prefetch credential holds a token), /metrics (Prometheus), /status
// (JSON, never a token or secret value) and the connections dashboard (/
// and POST /api/test/{connection}). With [server.admin_auth], every path
// but /healthz, /readyz and /metrics needs one of its users.
func (e *Engine) adminServer() *http.Server {
	metrics := e.opts.Metrics
	mux := http.NewServeMux()
	e.dashboard.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, s := range e.cur.Load().prefetch {
			if !s.Ready() {
				w.WriteHeader(http.StatusServiceUnavailable)
				why := "the first fetch has not finished"
				if st := s.State(); st.LastError != "" {
					why = "the last fetch failed: " + st.LastError
				}
				fmt.Fprintf(w, "waiting for a token for credential %q: %s\n", s.Name, why)
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(e.Status())
	})
	return &http.Server{Handler: e.adminAuth(mux), ReadHeaderTimeout: conf.DefaultReadHeaderTimeout, IdleTimeout: conf.DefaultIdleTimeout}
}

// adminAuth lets /healthz, /readyz and /metrics through (probes and
// Prometheus) and asks every other request for a user of the current
// configuration's [server.admin_auth], if it has one.
func (e *Engine) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		if users := e.cur.Load().adminUsers; users != nil {
			user, ok := users.Check(r)
			if !ok {
				dashboard.Challenge(w)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), adminUserKey{}, user))
		}
		next.ServeHTTP(w, r)
	})
}

// adminUserKey carries the [server.admin_auth] user of an admin request.
type adminUserKey struct{}

// testForDashboard is the dashboard's connection test: TestConnection
// with the connection's defaults, bounded like `authgress test`. Each test
// is logged (with the admin user, if any), since it sends a real request.
func (e *Engine) testForDashboard(ctx context.Context, name string) (any, error) {
	c := e.Config().Connections[name]
	if c == nil {
		return nil, dashboard.ErrNotFound
	}
	user, _ := ctx.Value(adminUserKey{}).(string)
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.D+30*time.Second)
	defer cancel()
	rep, err := e.TestConnection(ctx, name, TestOptions{})
	switch {
	case errors.Is(err, ErrUnknownConnection):
		return nil, dashboard.ErrNotFound
	case errors.Is(err, ErrNeedHost):
		rep, err = &TestReport{Connection: name, Method: http.MethodGet, Result: "this connection has only wildcard hosts: test it with authgress test " + name + " --host HOST",
			Stages: []TestStage{{Stage: StageUpstream, Detail: "no host to call: every host of this connection is a wildcard"}}}, nil
	case err != nil:
		return nil, err
	}
	attrs := []any{"connection", name, "ok", rep.OK, "status", rep.Status, "result", rep.Result}
	if n := len(rep.Stages); n > 0 && !rep.Stages[n-1].OK {
		attrs = append(attrs, "failed_stage", rep.Stages[n-1].Stage)
	}
	if user != "" {
		attrs = append(attrs, "admin_user", user)
	}
	e.log.Info("connection test", attrs...)
	return rep, nil
}

// StatusDoc is the /status document.
type StatusDoc struct {
	Version     string             `json:"version"`
	Config      string             `json:"config"`
	LoadedAt    time.Time          `json:"loaded_at"`
	Connections []connectionStatus `json:"connections"`
	Credentials []credentialStatus `json:"credentials"`
	Vaults      []vaultStatus      `json:"vaults"`
	Profiles    []profileStatus    `json:"profiles"`
	Intercept   *interceptStatus   `json:"intercept,omitempty"`
	ServerTLS   *clientCertDoc     `json:"server_tls,omitempty"` // the agent listener's certificate
	Clusters    []clusterStatus    `json:"clusters,omitempty"`
	Cache       *cacheStatus       `json:"cache"`
	Broker      *brokerStatus      `json:"broker,omitempty"`
}

type brokerStatus struct {
	Listen        string   `json:"listen"`
	PublicURL     string   `json:"public_url"`
	Clients       []string `json:"clients"` // names only, never keys
	PendingLogins int      `json:"pending_logins"`
}

type clusterStatus struct {
	Name  string       `json:"name"`
	Mode  string       `json:"mode"`
	Nodes []nodeStatus `json:"nodes"`
}

type nodeStatus struct {
	Name      string     `json:"name"`
	URL       string     `json:"url"`
	State     string     `json:"state"` // healthy | unknown | down
	Since     *time.Time `json:"since,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

type interceptStatus struct {
	CASubject     string    `json:"ca_subject"`
	CANotAfter    time.Time `json:"ca_not_after"`
	LeavesCached  int       `json:"leaves_cached"`
	LeavesMinted  int64     `json:"leaves_minted"`
	ActiveTunnels int       `json:"active_tunnels"`
}

type profileStatus struct {
	Name              string         `json:"name"`
	ClientCertificate *clientCertDoc `json:"client_certificate,omitempty"`
}

type clientCertDoc struct {
	Subject   string     `json:"subject"`
	Issuer    string     `json:"issuer"`
	Serial    string     `json:"serial"`
	NotAfter  time.Time  `json:"not_after"`
	ExpiresIn float64    `json:"expires_in_seconds"`
	Rotated   *time.Time `json:"rotated_at,omitempty"`
	Rejected  string     `json:"last_change_rejected,omitempty"`
}

type connectionStatus struct {
	Name       string   `json:"name"`
	Hosts      []string `json:"hosts"`
	Paths      []string `json:"paths,omitempty"`
	Credential string   `json:"credential,omitempty"`
	Grant      string   `json:"grant,omitempty"` // the credential's grant
	Vault      string   `json:"vault,omitempty"` // the credential's vault
	Scopes     string   `json:"scopes,omitempty"`
	Profile    string   `json:"profile,omitempty"`
	URL        string   `json:"url,omitempty"`
	Listen     string   `json:"listen,omitempty"` // the reverse listener's bound address
	Clients    []string `json:"clients,omitempty"`
	// Ways are the ways in that reach the connection: "forward" (plain
	// http:// through the proxy), "intercept" (CONNECT, intercepted),
	// "reverse" (its own listener, at Listen).
	Ways  []string         `json:"ways"`
	Via   string           `json:"via,omitempty"`
	Nodes []connectionNode `json:"nodes,omitempty"` // the nodes via may pick
	// Token is the state of the token this connection injects (its
	// credential with its scopes); nil without a credential.
	Token *connectionToken `json:"token,omitempty"`
	// Requests and Errors count since the process started (a reload keeps
	// them): Errors are requests authgress answered with an error code, or
	// that the upstream answered with a 5xx; LastError is the latest.
	Requests  int64            `json:"requests"`
	Errors    int64            `json:"errors"`
	LastError *proxy.LastError `json:"last_error,omitempty"`
}

type connectionNode struct {
	Cluster string `json:"cluster"`
	Name    string `json:"name"`
	State   string `json:"state"` // healthy | unknown | down
}

type connectionToken struct {
	State      string     `json:"state"`           // valid | none | per_user (a delegated credential)
	Users      int        `json:"users,omitempty"` // per_user: users holding a token
	ExpiresIn  float64    `json:"expires_in_seconds"`
	LastFetch  *time.Time `json:"last_fetch,omitempty"`
	LastResult string     `json:"last_result,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
}

type credentialStatus struct {
	Name       string     `json:"name"`
	User       string     `json:"user,omitempty"` // a delegated credential's user
	Scopes     string     `json:"scopes"`
	TokenState string     `json:"token_state"` // valid | none
	ExpiresIn  float64    `json:"expires_in_seconds"`
	LastFetch  *time.Time `json:"last_fetch,omitempty"`
	LastResult string     `json:"last_result,omitempty"` // ok | unavailable | rejected | …
	LastError  string     `json:"last_error,omitempty"`
	Fetches    int64      `json:"fetches"`
}

type vaultStatus struct {
	Name          string     `json:"name"`
	Type          string     `json:"type"`
	CachedEntries int        `json:"cached_entries"`
	LastLookup    *time.Time `json:"last_lookup,omitempty"`
	LastResult    string     `json:"last_result,omitempty"` // ok | not_found | unavailable
	LastError     string     `json:"last_error,omitempty"`
}

// Status is what /status serves: per connection, credential, vault,
// profile and the interception CA — never a token or secret value.
func (e *Engine) Status() StatusDoc {
	rt := e.cur.Load()
	doc := StatusDoc{Version: e.opts.Version, Config: rt.cfg.Path, LoadedAt: rt.loadedAt, Cache: e.cacheStatus()}
	for _, r := range rt.proxy.Routes {
		c := connectionStatus{Name: r.Name, Paths: r.Paths, Credential: r.Credential, Profile: rt.cfg.Connections[r.Name].Profile,
			Clients: r.Clients}
		if r.Upstream != nil {
			c.URL = r.Upstream.String()
		}
		if r.Listen != "" {
			c.Listen = e.ReverseAddr(r.Name)
		}
		for _, p := range r.Patterns {
			c.Hosts = append(c.Hosts, p.String())
		}
		if r.Token != nil {
			c.Scopes = r.Token.Scopes
			cred := rt.cfg.Credentials[r.Credential]
			c.Grant, c.Vault = cred.Grant, cred.Vault
			st := r.Token.State()
			c.Token = &connectionToken{State: "none", LastResult: st.LastResult, LastError: st.LastError}
			if st.HasToken {
				c.Token.State, c.Token.ExpiresIn = "valid", secondsUntil(st.ExpiresAt)
			}
			if !st.LastFetch.IsZero() {
				c.Token.LastFetch = &st.LastFetch
			}
		}
		if r.Delegated != nil {
			cred := rt.cfg.Credentials[r.Credential]
			c.Scopes = strings.Join(cred.Scopes, " ")
			c.Grant, c.Vault = cred.Grant, cred.Vault
			users := r.Delegated.Users()
			c.Token = &connectionToken{State: "per_user", Users: len(users)}
		}
		if len(r.Patterns) > 0 {
			c.Ways = append(c.Ways, "forward")
			if rt.proxy.Intercept != nil {
				c.Ways = append(c.Ways, "intercept")
			}
		}
		if r.Listen != "" {
			c.Ways = append(c.Ways, "reverse")
		}
		if r.Via != nil {
			c.Via = r.Via.Name
			for _, n := range r.Via.Nodes() {
				c.Nodes = append(c.Nodes, connectionNode{Cluster: n.Cluster, Name: n.Name, State: n.State().String()})
			}
		}
		if r.Stats != nil {
			c.Requests, c.Errors, c.LastError = r.Stats.Requests(), r.Stats.Errors(), r.Stats.Last()
		}
		doc.Connections = append(doc.Connections, c)
	}
	for _, s := range e.tokens.Slots() {
		st := s.State()
		c := credentialStatus{Name: s.Name, User: s.User, Scopes: s.Scopes, TokenState: "none", LastError: st.LastError, Fetches: st.Fetches}
		if st.HasToken {
			c.TokenState = "valid"
			c.ExpiresIn = secondsUntil(st.ExpiresAt)
		}
		if !st.LastFetch.IsZero() {
			c.LastFetch = &st.LastFetch
			c.LastResult = st.LastResult
		}
		doc.Credentials = append(doc.Credentials, c)
	}
	sort.Slice(doc.Credentials, func(i, j int) bool {
		a, b := doc.Credentials[i], doc.Credentials[j]
		return a.Name < b.Name || a.Name == b.Name && a.User < b.User
	})
	if b := rt.cfg.Broker; b != nil {
		doc.Broker = &brokerStatus{Listen: e.BrokerAddr(), PublicURL: b.PublicURL}
		for _, c := range b.Clients {
			doc.Broker.Clients = append(doc.Broker.Clients, c.Name)
		}
		if rt.broker != nil {
			doc.Broker.PendingLogins = rt.broker.Pending()
		}
	}
	for _, name := range sortedNames(rt.vaults) {
		v := rt.vaults[name]
		last, n := v.State()
		vs := vaultStatus{Name: name, Type: v.Type, CachedEntries: n, LastResult: last.Result, LastError: last.Error}
		if !last.At.IsZero() {
			vs.LastLookup = &last.At
		}
		doc.Vaults = append(doc.Vaults, vs)
	}
	for _, name := range rt.profiles.Names() {
		ps := profileStatus{Name: name}
		if p, _ := rt.profiles.Profile(name); p.Identity != nil {
			ps.ClientCertificate = certDoc(p.Identity.State())
		}
		doc.Profiles = append(doc.Profiles, ps)
	}
	for _, cl := range rt.clusters.Clusters() {
		cs := clusterStatus{Name: cl.Name, Mode: map[upstream.Mode]string{upstream.Failover: "failover", upstream.Balance: "balance"}[cl.Mode]}
		for _, n := range cl.Nodes {
			ns := nodeStatus{Name: n.Name, URL: n.URL.String(), State: n.State().String(), LastError: n.LastError()}
			if t := n.Since(); !t.IsZero() {
				ns.Since = &t
			}
			cs.Nodes = append(cs.Nodes, ns)
		}
		doc.Clusters = append(doc.Clusters, cs)
	}
	if st := rt.serverTLS; st != nil {
		doc.ServerTLS = certDoc(st.Identity.State())
	}
	if ca := rt.proxy.Intercept; ca != nil {
		doc.Intercept = &interceptStatus{CASubject: ca.Certificate().Subject.String(), CANotAfter: ca.Certificate().NotAfter,
			LeavesCached: ca.Cached(), LeavesMinted: ca.Mints(), ActiveTunnels: e.tunnels.Active()}
	}
	return doc
}

// secondsUntil is the whole seconds left until t.
func secondsUntil(t time.Time) float64 {
	return float64(time.Until(t).Round(time.Second) / time.Second)
}

func sortedNames[T any](m map[string]T) []string { return slices.Sorted(maps.Keys(m)) }

func certDoc(st tlsprofiles.IdentityState) *clientCertDoc {
	c := &clientCertDoc{Subject: st.Subject, Issuer: st.Issuer, Serial: st.Serial, NotAfter: st.NotAfter,
		ExpiresIn: secondsUntil(st.NotAfter), Rejected: st.Rejected}
	if !st.Rotated.IsZero() {
		c.Rotated = &st.Rotated
	}
	return c
}
