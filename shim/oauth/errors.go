package oauth

import (
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

var (
	// ErrSignInNeeded means the provider no longer honours the account's
	// grant (or there never was one): only the user can fix it, by signing
	// in again. The account's mail is held, not bounced.
	ErrSignInNeeded = errors.New("OAuth2 sign-in needed")
	// ErrTokenUnavailable means a token could not be had just now: the
	// token endpoint is unreachable or failing, or the keychain did not
	// answer. It is temporary; the mail waits and is retried.
	ErrTokenUnavailable = errors.New("OAuth2 token not available right now")
)

// CredentialError is a failure to get a token for an account. errors.Is
// matches it against its Kind (ErrSignInNeeded or ErrTokenUnavailable).
type CredentialError struct {
	Account string
	Kind    error
	// Reason says what happened, for people; it never holds a token.
	Reason string
	// Err is the underlying error, when there is one.
	Err error
}

func (e *CredentialError) Error() string {
	msg := e.Account + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Kind == ErrSignInNeeded {
		msg += fmt.Sprintf("; sign in again with `smtpshim account login %s` (the account's mail is held until then)", e.Account)
	}
	return msg
}

// Is matches the error's kind.
func (e *CredentialError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying error.
func (e *CredentialError) Unwrap() error { return e.Err }

// CredentialRefused says whether only a new sign-in can help
// (upstream.RefusedCredential): the account's mail is then held.
func (e *CredentialError) CredentialRefused() bool { return e.Kind == ErrSignInNeeded }

// IsSignInNeeded reports whether err says the user must sign in again.
func IsSignInNeeded(err error) bool { return errors.Is(err, ErrSignInNeeded) }

// IsTemporary reports whether err is a temporary failure to get a token.
func IsTemporary(err error) bool { return errors.Is(err, ErrTokenUnavailable) }

// grantRefused lists the token endpoint's error codes that only a new
// sign-in can cure (RFC 6749 section 5.2, OpenID Connect, Microsoft's
// interaction_required family that AADSTS50076, 50079, 50173 and the
// sign-in-frequency AADSTS70043 arrive as).
var grantRefused = map[string]bool{
	"invalid_grant":        true,
	"interaction_required": true,
	"consent_required":     true,
	"login_required":       true,
	"unauthorized_client":  true,
	"invalid_client":       true,
	"invalid_scope":        true,
	"access_denied":        true,
}

// classifyTokenError sorts an error from the token endpoint.
func classifyTokenError(account string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if grantRefused[re.ErrorCode] || (re.ErrorCode == "" && (status == 400 || status == 401)) {
			return &CredentialError{Account: account, Kind: ErrSignInNeeded, Reason: "the provider refused the saved sign-in", Err: cleanRetrieveError(re)}
		}
		return &CredentialError{Account: account, Kind: ErrTokenUnavailable, Reason: "the provider's token endpoint failed", Err: cleanRetrieveError(re)}
	}
	return &CredentialError{Account: account, Kind: ErrTokenUnavailable, Reason: "the provider's token endpoint could not be reached", Err: err}
}

// cleanRetrieveError keeps the RFC 6749 error fields and drops the raw
// body and response, which are large and not for people.
func cleanRetrieveError(re *oauth2.RetrieveError) error {
	if re.ErrorCode == "" {
		status := "no response"
		if re.Response != nil {
			status = re.Response.Status
		}
		return fmt.Errorf("HTTP %s", status)
	}
	msg := re.ErrorCode
	if re.ErrorDescription != "" {
		msg += ": " + firstLine(re.ErrorDescription)
	}
	return errors.New(msg)
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\r' || r == '\n' {
			return s[:i]
		}
	}
	return s
}
