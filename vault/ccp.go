package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authgress/authgress/conf"
	"github.com/authgress/authgress/internal/neterr"
	"github.com/authgress/authgress/internal/safetext"
)

// CCP is the cyberark-ccp backend: CyberArk's Central Credential Provider
// REST API (GET <url>?AppID=&Safe=&Folder=&Object=[&PolicyID=]). The account's
// UserName is the client id and its Content (password) the client secret.
type CCP struct {
	name     string
	url      string
	appID    string
	safe     string
	folder   string
	policyID string
	client   *http.Client
	retries  int
	backoff  time.Duration
}

// CCPConfig configures a CCP backend.
type CCPConfig struct {
	Name, URL, AppID, Safe, Folder, PolicyID string
	Transport                                http.RoundTripper // the profile's (client certificate)
}

// NewCCP returns a CCP backend. Redirects are never followed.
func NewCCP(c CCPConfig) *CCP {
	folder := c.Folder
	if folder == "" {
		folder = "Root"
	}
	return &CCP{name: c.Name, url: c.URL, appID: c.AppID, safe: c.Safe, folder: folder, policyID: c.PolicyID,
		client:  &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		retries: 2, backoff: 250 * time.Millisecond}
}

// ccpEscape encodes a query value; spaces become %20, never '+'.
func ccpEscape(v string) string { return strings.ReplaceAll(url.QueryEscape(v), "+", "%20") }

func (c *CCP) query(id string) (string, error) {
	safe, object, policy, err := conf.ParseCCPID(id)
	if err != nil {
		return "", err
	}
	if safe == "" {
		safe = c.safe
	}
	if safe == "" {
		return "", fmt.Errorf("credential ID %q names no safe and the vault has no default safe", id)
	}
	if policy == "" {
		policy = c.policyID
	}
	q := "AppID=" + ccpEscape(c.appID) + "&Safe=" + ccpEscape(safe) + "&Folder=" + ccpEscape(c.folder) + "&Object=" + ccpEscape(object)
	if policy != "" {
		q += "&PolicyID=" + ccpEscape(policy)
	}
	sep := "?"
	if strings.Contains(c.url, "?") {
		sep = "&"
	}
	return c.url + sep + q, nil
}

// Lookup fetches the account; transient failures (vault connection, password
// change in progress, 5xx, network) are retried with backoff.
func (c *CCP) Lookup(ctx context.Context, id string) (Secret, error) {
	u, err := c.query(id)
	if err != nil {
		return Secret{}, &Error{Vault: c.name, ID: id, Kind: ErrNotFound, Msg: err.Error()}
	}
	return withRetries(ctx, c.retries, c.backoff, func() (Secret, error) { return c.get(ctx, u, id) })
}

type ccpResponse struct {
	Content                 string          `json:"Content"`
	UserName                string          `json:"UserName"`
	PasswordChangeInProcess json.RawMessage `json:"PasswordChangeInProcess"`
	ErrorCode               string          `json:"ErrorCode"`
	ErrorMsg                string          `json:"ErrorMsg"`
	Message                 string          `json:"Message"` // IIS / ASP.NET errors
}

func (c *CCP) get(ctx context.Context, u, id string) (Secret, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Secret{}, &Error{Vault: c.name, ID: id, Kind: ErrUnavailable, Msg: "invalid CCP url", Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return Secret{}, &Error{Vault: c.name, ID: id, Kind: ErrUnavailable, Msg: "the CCP could not be reached (" + neterr.Reason(err) + ")", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return Secret{}, &Error{Vault: c.name, ID: id, Kind: ErrUnavailable, Msg: "the CCP response could not be read", Err: err}
	}
	if len(body) > MaxResponse {
		return Secret{}, &Error{Vault: c.name, ID: id, Kind: ErrUnavailable, Msg: "the CCP response is larger than 1 MiB"}
	}
	return c.parse(resp.StatusCode, body, id)
}

// parse turns a CCP answer (its HTTP status and body) into the account's
// secret or a classified error.
func (c *CCP) parse(status int, body []byte, id string) (Secret, error) {
	var r ccpResponse
	jsonErr := json.Unmarshal(body, &r)
	if status == http.StatusOK && jsonErr == nil && r.ErrorCode == "" {
		if r.Content == "" {
			return Secret{}, &Error{Vault: c.name, ID: id, Kind: ErrNotFound, Msg: "the CCP returned the account with an empty Content (password)"}
		}
		s := Secret{ClientID: r.UserName, ClientSecret: r.Content}
		if r.UserName == "" {
			s.noClientID = &Error{Vault: c.name, ID: id, Kind: ErrNotFound, Msg: "the CCP returned the account with an empty UserName (the client id)"}
		}
		if truthy(r.PasswordChangeInProcess) {
			s.cacheFor = passwordChangeTTL // use it, but read it again soon
		}
		return s, nil
	}
	return Secret{}, c.classify(status, r, jsonErr, id)
}

// passwordChangeTTL is how long a secret read while CyberArk reports a
// password change in progress is cached.
const passwordChangeTTL = 5 * time.Second

// MaxResponse caps vault response bodies.
const MaxResponse = 1 << 20

func truthy(raw json.RawMessage) bool {
	s := strings.Trim(strings.ToLower(string(raw)), `" `)
	return s == "true"
}

// CyberArk error codes by class (SPEC §6, research domain.md §1.4).
var (
	ccpTransient = map[string]string{
		"APPAP007E": "the CCP's connection to the Vault failed",
		"APPAP282E": "the password is being changed (PasswordChangeInProcess)",
		"APPAP286E": "the password is being changed",
		"APPAP289E": "the CCP's connection to the Vault failed",
		"APPAP291E": "the CCP's connection to the Vault failed",
		"APPAP292E": "the CCP's connection to the Vault failed",
		"APPAP297E": "the CCP's connection to the Vault failed",
	}
	ccpNotFound = map[string]string{
		"APPAP004E": "no such account (or the AppID lacks permission on the safe)",
		"APPAP249E": "no such account",
		"APPAP324E": "no such account",
	}
)

func (c *CCP) classify(status int, r ccpResponse, jsonErr error, id string) error {
	e := &Error{Vault: c.name, ID: id, Code: safetext.Clean(r.ErrorCode, 16)}
	detail := safetext.Clean(r.ErrorMsg, 200)
	switch {
	case e.Code != "":
		if why, ok := ccpTransient[e.Code]; ok {
			e.Kind, e.Msg = ErrUnavailable, why
		} else if why, ok := ccpNotFound[e.Code]; ok {
			e.Kind, e.Msg = ErrNotFound, why
		} else {
			e.Kind, e.Msg = ErrNotFound, "the CCP refused the request"
			switch e.Code {
			case "APPAP306E":
				e.Msg = "the CCP's authentication check failed (client certificate, address or OS user of the AppID)"
			case "APPAP008E":
				e.Msg = "the AppID is not defined or not allowed"
			case "AIMWS031E":
				e.Msg = "the AppID parameter is missing"
			case "AIMWS030E":
				e.Msg = "the CCP says the query is invalid"
			case "APPAP227E", "APPAP228E", "APPAP229E", "APPAP230E", "APPAP251E":
				e.Msg = "the query matches more than one account"
			}
		}
		if detail != "" {
			e.Msg += ": " + detail
		}
	case status >= 500 || status == http.StatusTooManyRequests:
		e.Kind, e.Msg = ErrUnavailable, fmt.Sprintf("the CCP failed (HTTP %d)", status)
		if r.Message != "" {
			e.Msg += ": " + safetext.Clean(r.Message, 200)
		}
	case status >= 300 && status < 400:
		e.Kind, e.Msg = ErrUnavailable, fmt.Sprintf("the CCP answered with a redirect (HTTP %d), which is not followed: check the vault url", status)
	case jsonErr != nil && status == http.StatusOK:
		e.Kind, e.Msg = ErrUnavailable, "the CCP response is not valid JSON"
	default:
		e.Kind, e.Msg = ErrNotFound, fmt.Sprintf("the CCP refused the request (HTTP %d)", status)
		if r.Message != "" {
			e.Msg += ": " + safetext.Clean(r.Message, 200)
		}
	}
	return e
}
