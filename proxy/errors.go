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
	CodeBadRequest           = "bad_request" // not a proxy request, or malformed
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
	CodeBadRequest:           http.StatusBadRequest,
}

// ErrorHeader carries the error code on every response authgress produces.
const ErrorHeader = "X-Authgress-Error"

// Failure is a classified pipeline failure: what the client is told.
type Failure struct {
	Code       string
	Connection string
	Message    string // a human sentence; never a secret, token or internal address
	RetryAfter time.Duration
	Cause      error // for logs only
	private    bool  // egress_denied because of a private destination address
}

type errorBody struct {
	Error      string `json:"error"`
	Connection string `json:"connection"`
	Message    string `json:"message"`
}

// Response renders the failure as the JSON error response of SPEC §9.
func (f *Failure) Response(req *http.Request) *http.Response {
	body, _ := json.Marshal(errorBody{Error: f.Code, Connection: f.Connection, Message: f.Message})
	body = append(body, '\n')
	status := codeStatus[f.Code]
	h := http.Header{}
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
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: req,
	}
}

// Write sends the failure on a ResponseWriter.
func (f *Failure) Write(w http.ResponseWriter) {
	resp := f.Response(nil)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
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

// unmatchedDenied is the refusal of a host no connection matches.
func unmatchedDenied(host string) *Failure {
	return &Failure{Code: CodeEgressDenied, Message: fmt.Sprintf("no connection matches %s and unmatched traffic is denied (egress.unmatched = \"deny\")", host)}
}

// upstreamFailure classifies a round-trip error.
func upstreamFailure(conn, host string, err error, timedOut bool, timeout time.Duration) *Failure {
	f := &Failure{Connection: conn, Cause: err}
	var denied *DeniedError
	switch {
	case timedOut:
		f.Code, f.Message = CodeUpstreamTimeout, fmt.Sprintf("%s did not answer within %s", host, timeout)
	case errors.As(err, &denied):
		f.Code, f.Message, f.private = CodeEgressDenied, fmt.Sprintf("%s resolves to a %s, which unmatched traffic may not reach (egress.allow_private)", host, denied.Reason), true
	case errors.Is(err, context.Canceled):
		f.Code, f.Message = CodeUpstreamUnreachable, "the client closed the request"
	default:
		if r := neterr.TLSReason(err); r != "" {
			f.Code, f.Message = CodeUpstreamUnreachable, fmt.Sprintf("TLS handshake with %s failed: %s", host, r)
		} else {
			f.Code, f.Message = CodeUpstreamUnreachable, fmt.Sprintf("could not reach %s: %s", host, neterr.Reason(err))
		}
	}
	return f
}
