package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/neterr"
	"github.com/authgress/authgress/internal/safetext"
)

// KV is the hashicorp-kv backend: HashiCorp Vault (or OpenBao) KV version 2,
// GET /v1/<mount>/data/<id>, authenticated with a token or with AppRole.
type KV struct {
	name        string
	address     string
	mount       string
	namespace   string
	idField     string
	secretField string
	client      *http.Client
	token       *refValue // token auth
	roleID      *refValue // AppRole
	secretID    *refValue
	retries     int
	backoff     time.Duration
	now         func() time.Time

	mu       sync.Mutex
	login    string // AppRole token
	renewAt  time.Time
	renew    bool
	leaseEnd time.Time
}

// KVConfig configures a KV backend.
type KVConfig struct {
	Name      string
	Vault     *conf.Vault
	Transport http.RoundTripper
	Resolve   Resolver
}

// NewKV returns a KV backend. Redirects are never followed.
func NewKV(c KVConfig) *KV {
	v := c.Vault
	k := &KV{name: c.Name, address: strings.TrimRight(v.Address, "/"), mount: strings.Trim(v.Mount, "/"), namespace: v.Namespace,
		idField: v.ClientIDField, secretField: v.ClientSecretField,
		client:  &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		retries: 2, backoff: 250 * time.Millisecond, now: time.Now}
	ttl := v.CacheTTL.Or(conf.DefaultCacheTTL)
	if v.Token.Set {
		k.token = &refValue{ref: v.Token, resolve: c.Resolve, ttl: ttl}
	} else {
		k.roleID = &refValue{ref: v.RoleID, resolve: c.Resolve, ttl: ttl}
		k.secretID = &refValue{ref: v.SecretID, resolve: c.Resolve, ttl: ttl}
	}
	return k
}

func (k *KV) fail(id string, kind error, msg string, err error) *Error {
	return &Error{Vault: k.name, ID: id, Kind: kind, Msg: msg, Err: err}
}

// Lookup reads the secret at <mount>/data/<id>; transient failures are
// retried with backoff.
func (k *KV) Lookup(ctx context.Context, id string) (Secret, error) {
	return withRetries(ctx, k.retries, k.backoff, func() (Secret, error) { return k.read(ctx, id, true) })
}

type kvData struct {
	Data struct {
		Data map[string]any `json:"data"`
	} `json:"data"`
	Errors []string `json:"errors"`
}

func (k *KV) read(ctx context.Context, id string, retryAuth bool) (Secret, error) {
	tok, err := k.authToken(ctx, id)
	if err != nil {
		return Secret{}, err
	}
	segs := strings.Split(strings.Trim(id, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	status, body, err := k.do(ctx, http.MethodGet, "/v1/"+k.mount+"/data/"+strings.Join(segs, "/"), tok, nil)
	if err != nil {
		return Secret{}, k.fail(id, ErrUnavailable, "Vault could not be reached ("+neterr.Reason(err)+")", err)
	}
	var r kvData
	_ = json.Unmarshal(body, &r)
	switch {
	case status == http.StatusOK:
		cid, _ := r.Data.Data[k.idField].(string)
		sec, ok := r.Data.Data[k.secretField].(string)
		if !ok || sec == "" {
			return Secret{}, k.fail(id, ErrNotFound, fmt.Sprintf("the secret at %s/%s has no non-empty string field %q", k.mount, id, k.secretField), nil)
		}
		s := Secret{ClientID: cid, ClientSecret: sec}
		if cid == "" {
			s.noClientID = k.fail(id, ErrNotFound, fmt.Sprintf("the secret at %s/%s has no non-empty string field %q (the client id)", k.mount, id, k.idField), nil)
		}
		return s, nil
	case status == http.StatusForbidden && retryAuth && k.token == nil:
		k.dropLogin() // the AppRole token may have been revoked or expired: log in again once
		return k.read(ctx, id, false)
	case status == http.StatusForbidden:
		if k.token != nil {
			k.token.forget() // a rotated token is read again next time
		}
		return Secret{}, k.fail(id, ErrNotFound, "Vault denied access (HTTP 403): check the token's policy for "+k.mount+"/data/"+id+vaultErrors(r.Errors), nil)
	case status == http.StatusNotFound:
		return Secret{}, k.fail(id, ErrNotFound, fmt.Sprintf("no secret at %s/%s (HTTP 404; Vault also answers 404 when the policy hides the path)", k.mount, id), nil)
	case status == http.StatusServiceUnavailable:
		msg := "Vault is unavailable (HTTP 503)"
		if strings.Contains(strings.Join(r.Errors, " "), "sealed") {
			msg = "Vault is sealed (HTTP 503)"
		}
		return Secret{}, k.fail(id, ErrUnavailable, msg, nil)
	case status == http.StatusPreconditionFailed || status == http.StatusTooManyRequests || status >= 500:
		return Secret{}, k.fail(id, ErrUnavailable, fmt.Sprintf("Vault failed (HTTP %d)%s", status, vaultErrors(r.Errors)), nil)
	case status >= 300 && status < 400:
		return Secret{}, k.fail(id, ErrUnavailable, fmt.Sprintf("Vault answered with a redirect (HTTP %d), which is not followed: check the address (a standby node?)", status), nil)
	}
	return Secret{}, k.fail(id, ErrNotFound, fmt.Sprintf("Vault refused the request (HTTP %d)%s", status, vaultErrors(r.Errors)), nil)
}

func vaultErrors(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return ": " + safetext.Clean(strings.Join(errs, "; "), 200)
}

// do sends one request to Vault and reads the capped body.
func (k *KV) do(ctx context.Context, method, path, token string, payload any) (int, []byte, error) {
	var body io.Reader
	if payload != nil {
		b, _ := json.Marshal(payload)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.address+path, body)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if k.namespace != "" {
		req.Header.Set("X-Vault-Namespace", k.namespace)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return 0, nil, err
	}
	if len(b) > MaxResponse {
		return 0, nil, errors.New("response larger than 1 MiB")
	}
	return resp.StatusCode, b, nil
}

// authToken returns the token to send: the configured one, or the AppRole
// login token, renewed (or re-obtained) once 80% of its lease has passed.
func (k *KV) authToken(ctx context.Context, id string) (string, error) {
	if k.token != nil {
		t, err := k.token.get(ctx)
		if err != nil {
			return "", k.fail(id, ErrUnavailable, "cannot read the Vault token: "+err.Error(), err)
		}
		return t, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if k.login != "" && now.Before(k.renewAt) {
		return k.login, nil
	}
	if k.login != "" && k.renew && now.Before(k.leaseEnd) {
		if err := k.renewSelf(ctx, now); err == nil {
			return k.login, nil
		}
	}
	return k.approleLogin(ctx, id, now)
}

type authResponse struct {
	Auth *struct {
		ClientToken   string `json:"client_token"`
		LeaseDuration int    `json:"lease_duration"`
		Renewable     bool   `json:"renewable"`
	} `json:"auth"`
	Errors []string `json:"errors"`
}

func (k *KV) setLease(a *authResponse, now time.Time) {
	lease := time.Duration(a.Auth.LeaseDuration) * time.Second
	k.login, k.renew = a.Auth.ClientToken, a.Auth.Renewable
	safetext.Register(k.login)
	if lease <= 0 { // a token without expiry
		k.renewAt, k.leaseEnd = now.Add(100*365*24*time.Hour), now.Add(100*365*24*time.Hour)
		return
	}
	k.renewAt, k.leaseEnd = now.Add(lease*8/10), now.Add(lease)
}

// approleLogin obtains a token; k.mu is held.
func (k *KV) approleLogin(ctx context.Context, id string, now time.Time) (string, error) {
	roleID, err := k.roleID.get(ctx)
	if err != nil {
		return "", k.fail(id, ErrUnavailable, "cannot read the AppRole role_id: "+err.Error(), err)
	}
	secretID, err := k.secretID.get(ctx)
	if err != nil {
		return "", k.fail(id, ErrUnavailable, "cannot read the AppRole secret_id: "+err.Error(), err)
	}
	status, body, err := k.do(ctx, http.MethodPost, "/v1/auth/approle/login", "", map[string]string{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		return "", k.fail(id, ErrUnavailable, "Vault could not be reached for the AppRole login ("+neterr.Reason(err)+")", err)
	}
	var a authResponse
	_ = json.Unmarshal(body, &a)
	switch {
	case status == http.StatusOK && a.Auth != nil && a.Auth.ClientToken != "":
		k.setLease(&a, now)
		return k.login, nil
	case status >= 500 || status == http.StatusTooManyRequests:
		return "", k.fail(id, ErrUnavailable, fmt.Sprintf("the AppRole login failed (HTTP %d)%s", status, vaultErrors(a.Errors)), nil)
	}
	k.secretID.forget() // a rotated secret_id is read again next time
	return "", k.fail(id, ErrNotFound, fmt.Sprintf("the AppRole login was refused (HTTP %d)%s", status, vaultErrors(a.Errors)), nil)
}

// renewSelf extends the AppRole token's lease; k.mu is held.
func (k *KV) renewSelf(ctx context.Context, now time.Time) error {
	status, body, err := k.do(ctx, http.MethodPost, "/v1/auth/token/renew-self", k.login, map[string]string{})
	if err != nil {
		return err
	}
	var a authResponse
	_ = json.Unmarshal(body, &a)
	if status != http.StatusOK || a.Auth == nil || a.Auth.ClientToken == "" {
		return fmt.Errorf("renew-self: HTTP %d", status)
	}
	// A lease that can no longer grow (it reached its max TTL): log in anew.
	if time.Duration(a.Auth.LeaseDuration)*time.Second <= k.leaseEnd.Sub(now) {
		return errors.New("lease at its maximum")
	}
	k.setLease(&a, now)
	return nil
}

func (k *KV) dropLogin() {
	k.mu.Lock()
	k.login = ""
	k.mu.Unlock()
}
