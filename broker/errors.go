package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/authgress/authgress/internal/safetext"
	"github.com/authgress/authgress/tokencache"
	"github.com/authgress/authgress/vault"
)

// The seeds' status, carried beside the HTTP status in every answer.
const (
	StatusOK          = 0
	StatusFailed      = -1 // unknown failure, or refused
	StatusNoConfig    = -2 // unknown credential; for a login: aborted by the user
	StatusAborted     = -2
	StatusMissing     = -3 // missing input, or no connection to the OAuth server (or vault)
	StatusUnsupported = -5 // unsupported token type
)

// ErrorHeader carries the error code of every error answer (SPEC §9).
const ErrorHeader = "X-Authgress-Error"

// Error codes of SPEC §9 that the broker answers with, and its own.
const (
	CodeTokenUnavailable     = "token_unavailable"
	CodeTokenRejected        = "token_rejected"
	CodeUnsupportedTokenType = "unsupported_token_type"
	CodeVaultUnavailable     = "vault_unavailable"
	CodeCredentialNotFound   = "credential_not_found"
	CodeLoginRequired        = "login_required"
	CodeBadRequest           = "bad_request"
)

// failure is one error answer.
type failure struct {
	http       int
	code       string
	seed       int
	msg        string // safe to show: never a secret, token, code or state
	retryAfter time.Duration
	loginURL   string
	cause      error // for the log line
}

type errorBody struct {
	Error      string `json:"error"`
	Connection string `json:"connection"`
	Message    string `json:"message"`
	LoginURL   string `json:"login_url,omitempty"`
	Status     int    `json:"status"`
}

// fail writes f as the JSON error body and records it in c.
func (b *Broker) fail(w http.ResponseWriter, c *call, f *failure) {
	c.seed, c.code, c.cause = f.seed, f.code, f.cause
	h := w.Header()
	h.Set(ErrorHeader, f.code)
	if f.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	writeJSON(w, f.http, errorBody{Error: f.code, Message: safetext.Redact(f.msg), LoginURL: f.loginURL, Status: f.seed})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal","connection":"","message":"internal error","status":-1}`)
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// tokenFailure classifies an error from the Backend (SPEC §9 codes, the
// seeds' status).
func tokenFailure(credential string, err error) *failure {
	f := &failure{http: http.StatusBadGateway, cause: err}
	var fe *tokencache.FetchError
	if errors.As(err, &fe) {
		f.retryAfter = fe.RetryAfter
	}
	var te *tokencache.Error
	var ve *vault.Error
	prefix := "could not obtain a token for credential " + quote(credential) + ": "
	switch {
	case errors.Is(err, tokencache.ErrLoginRequired):
		f.http, f.code, f.seed, f.retryAfter = http.StatusUnauthorized, CodeLoginRequired, StatusFailed, 0
		f.msg = "no user token for credential " + quote(credential) + ": the user must log in"
	case errors.Is(err, vault.ErrNotFound):
		f.code, f.seed, f.retryAfter = CodeCredentialNotFound, StatusNoConfig, 0
		f.msg = "the vault has no client secret for credential " + quote(credential)
		if errors.As(err, &ve) {
			f.msg = "could not read the client secret of credential " + quote(credential) + ": " + ve.Error()
		}
	case errors.Is(err, vault.ErrUnavailable):
		f.code, f.seed = CodeVaultUnavailable, StatusMissing
		f.msg = "the vault could not be reached for credential " + quote(credential)
		if errors.As(err, &ve) {
			f.msg = "could not read the client secret of credential " + quote(credential) + ": " + ve.Error()
		}
	case errors.As(err, &te):
		f.msg = prefix + te.Error()
		switch te.Kind {
		case tokencache.Rejected:
			f.code, f.seed, f.retryAfter = CodeTokenRejected, StatusFailed, 0
		case tokencache.UnsupportedType:
			f.code, f.seed, f.retryAfter = CodeUnsupportedTokenType, StatusUnsupported, 0
		default:
			f.code, f.seed = CodeTokenUnavailable, StatusMissing
		}
	case errors.Is(err, context.Canceled):
		f.code, f.seed, f.msg = CodeTokenUnavailable, StatusMissing, "the client closed the request while a token was being fetched"
	case errors.Is(err, context.DeadlineExceeded):
		f.code, f.seed, f.msg = CodeTokenUnavailable, StatusMissing, prefix+"timeout"
	default:
		f.code, f.seed, f.msg = CodeTokenUnavailable, StatusFailed, prefix+"internal error"
	}
	if f.code == CodeTokenUnavailable && f.retryAfter == 0 {
		f.retryAfter = time.Second
	}
	return f
}

var errTooLarge = errors.New("the request body is larger than 64 KiB")

// decodeStrict decodes one JSON value with no unknown fields and nothing after it.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// badInput is a 400 for missing or malformed input (status -3).
func badInput(msg string) *failure {
	return &failure{http: http.StatusBadRequest, code: CodeBadRequest, seed: StatusMissing, msg: msg}
}
