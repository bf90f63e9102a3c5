package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/authgress/authgress/internal/neterr"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// Error codes authgress itself produces (SPEC §9). Each has a fixed status.
const (
	CodeEgressDenied         = "egress_denied"
	CodeInterceptDisabled    = "intercept_disabled"
	CodeProxyAuthRequired    = "proxy_auth_required"
	CodeTokenUnavailable     = "token_unavailable"
	CodeTokenRejected        = "token_rejected"
	CodeUnsupportedTokenType = "unsupported_token_type"
	CodeVaultUnavailable     = "vault_unavailable"
	CodeCredentialNotFound   = "credential_not_found"
	CodeUpstreamUnreachable  = "upstream_unreachable"
	CodeUpstreamTimeout      = "upstream_timeout"
	CodeNoAgentAvailable     = "no_agent_available"
	CodeMisdirected          = "misdirected_request"
	CodeBadRequest           = "bad_request" // not a proxy request, or malformed
	CodeLoginRequired        = "login_required"
)

var codeStatus = map[string]int{
	CodeEgressDenied:         http.StatusForbidden,
	CodeInterceptDisabled:    http.StatusForbidden,
	CodeProxyAuthRequired:    http.StatusProxyAuthRequired,
	CodeTokenUnavailable:     http.StatusBadGateway,
	CodeTokenRejected:        http.StatusBadGateway,
	CodeUnsupportedTokenType: http.StatusBadGateway,
	CodeVaultUnavailable:     http.StatusBadGateway,
	CodeCredentialNotFound:   http.StatusBadGateway,
	CodeUpstreamUnreachable:  http.StatusBadGateway,
	CodeUpstreamTimeout:      http.StatusGatewayTimeout,
	CodeNoAgentAvailable:     http.StatusServiceUnavailable,
	CodeMisdirected:          http.StatusMisdirectedRequest,
	CodeBadRequest:           http.StatusBadRequest,
	CodeLoginRequired:        http.StatusUnauthorized,
}

// ErrorHeader carries the error code on every response authgress produces;
// MessageHeader repeats the message where clients hide the body (CONNECT).
const (
	ErrorHeader   = "X-Authgress-Error"
	MessageHeader = "X-Authgress-Message"
)

// Failure is a classified pipeline failure: what the client is told.
type Failure struct {
	Code       string
	Connection string
	Message    string // a human sentence; never a secret, token or internal address
	RetryAfter time.Duration
	LoginURL   string // login_required: where the user logs in
	Cause      error  // for logs only
	private    bool   // egress_denied because of a private destination address
	headline   bool   // the message is also the reason phrase and X-Authgress-Message
}

func (f *Failure) Error() string { return f.Code + ": " + f.Message }

type errorBody struct {
	Error      string `json:"error"`
	Connection string `json:"connection"`
	Message    string `json:"message"`
	LoginURL   string `json:"login_url,omitempty"`
}

// Response renders the failure as the JSON error response of SPEC §9.
func (f *Failure) Response(req *http.Request) *http.Response {
	body, _ := json.Marshal(errorBody{Error: f.Code, Connection: f.Connection, Message: f.Message, LoginURL: f.LoginURL})
	body = append(body, '\n')
	status := codeStatus[f.Code]
	text := http.StatusText(status)
	h := http.Header{}
	if f.headline {
		text = headlineText(f.Message)
		h.Set(MessageHeader, text)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set(ErrorHeader, f.Code)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
	}
	if f.Code == CodeProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="authgress"`)
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, text), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: req,
	}
}

// headlineText makes a message fit a status line and a header value:
// printable ASCII only.
func headlineText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// tokenFailure classifies an error from a token slot.
func tokenFailure(conn, credential string, err error) *Failure {
	f := &Failure{Connection: conn, Cause: err}
	var fe *tokencache.FetchError
	if errors.As(err, &fe) {
		f.RetryAfter = fe.RetryAfter
	}
	var te *tokencache.Error
	var ve *vault.Error
	prefix := fmt.Sprintf("could not obtain a token for credential %q: ", credential)
	switch {
	case tokencache.IsLoginRequired(err):
		f.Code, f.Message, f.RetryAfter = CodeLoginRequired, fmt.Sprintf("the user must log in (again) for credential %q", credential), 0
	case errors.As(err, &ve):
		f.Code, f.Message = CodeVaultUnavailable, "could not read the client secret of credential "+strconv.Quote(credential)+": "+ve.Error()
		if errors.Is(err, vault.ErrNotFound) {
			f.Code, f.RetryAfter = CodeCredentialNotFound, 0
		}
	case errors.As(err, &te):
		f.Message = prefix + te.Error()
		switch te.Kind {
		case tokencache.Rejected:
			f.Code, f.RetryAfter = CodeTokenRejected, 0
		case tokencache.UnsupportedType:
			f.Code, f.RetryAfter = CodeUnsupportedTokenType, 0
		default:
			f.Code = CodeTokenUnavailable
		}
	case errors.Is(err, context.Canceled):
		f.Code, f.Message = CodeTokenUnavailable, "the client closed the request while a token was being fetched"
	case errors.Is(err, context.DeadlineExceeded):
		f.Code, f.Message = CodeTokenUnavailable, prefix+"timeout"
	default:
		f.Code, f.Message = CodeTokenUnavailable, prefix+"internal error"
	}
	if f.Code == CodeTokenUnavailable && f.RetryAfter == 0 {
		f.RetryAfter = time.Second
	}
	return f
}

// unmatchedDenied is the refusal of a destination no connection matches.
func unmatchedDenied(hostport string) *Failure {
	return &Failure{Code: CodeEgressDenied, Message: fmt.Sprintf("no connection matches %s and unmatched traffic is denied (egress.unmatched = \"deny\")", hostport)}
}

// denialReason maps a policy refusal to its authgress_denied_total reason.
func denialReason(f *Failure) string {
	switch f.Code {
	case CodeEgressDenied:
		if f.private {
			return DeniedPrivateAddress
		}
		return DeniedUnmatched
	case CodeInterceptDisabled:
		return DeniedIntercept
	case CodeProxyAuthRequired:
		return DeniedProxyAuth
	case CodeMisdirected:
		return DeniedMisdirected
	}
	return ""
}

// failureOf turns a pipeline error into what the client is told.
func failureOf(err error, d *Decision) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return upstreamFailure(d.connection(), ue)
	}
	return &Failure{Code: CodeUpstreamUnreachable, Connection: d.connection(), Message: "internal error", Cause: err}
}

// upstreamFailure classifies a failed round trip.
func upstreamFailure(conn string, e *UpstreamError) *Failure {
	f := &Failure{Connection: conn, Cause: e.Err, Code: CodeUpstreamUnreachable}
	var denied *DeniedError
	switch {
	case errors.As(e.Err, &denied):
		f.Code, f.Message, f.private = CodeEgressDenied, fmt.Sprintf("%s resolves to a %s, which unmatched traffic may not reach (egress.allow_private)", e.Host, denied.Reason), true
	case e.Stage == StageTimeout:
		f.Code, f.Message = CodeUpstreamTimeout, fmt.Sprintf("%s did not answer within %s", e.Host, e.Timeout)
	case e.Stage == StageCanceled:
		f.Message = "the client closed the request"
	case errors.Is(e.Err, errSwitchedProtocols):
		f.Message = fmt.Sprintf("%s: %s", e.Host, errSwitchedProtocols)
	default:
		if r := neterr.TLSReason(e.Err); r != "" {
			f.Message = fmt.Sprintf("TLS handshake with %s failed: %s", e.Host, r)
		} else {
			f.Message = fmt.Sprintf("could not reach %s: %s", e.Host, neterr.Reason(e.Err))
		}
	}
	return f
}
