package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
)

// Authenticator supplies the SMTP AUTH credential of an account that does
// not use a stored password (an OAuth2 account).
type Authenticator interface {
	// Mechanisms lists the SASL mechanisms it can do, best first.
	Mechanisms() []string
	// Client returns a SASL client for mech. ctx bounds getting the
	// credential; its failures are credential failures, not "server down".
	Client(ctx context.Context, mech string) (sasl.Client, error)
	// Refused says the server refused the credential: drop cached state.
	Refused()
}

// CredentialError is a credential an authenticator could not produce, or
// one the server refused twice: the account needs attention, and its mail
// waits rather than bouncing. It deliberately does not unwrap to the
// server's *smtp.SMTPError, so that no one mistakes it for a refusal of the
// message.
type CredentialError struct {
	Err error
}

func (e *CredentialError) Error() string { return e.Err.Error() }

// Unwrap returns the authenticator's error (for errors.Is on its kinds).
func (e *CredentialError) Unwrap() error {
	var se *smtp.SMTPError
	if errors.As(e.Err, &se) {
		return nil
	}
	return e.Err
}

// authenticate runs AUTH with an account's authenticator. A 535 drops the
// cached credential and tries once more with a new one, since an access
// token may have been revoked or expired early; a second refusal (or a
// failure to get a credential at all) is a CredentialError.
func authenticate(ctx context.Context, c *smtp.Client, a *config.Account, o Options, advertised string) (string, error) {
	fail := func(step Step, err error) error { return &DialError{Server: a.Server, Step: step, Err: err} }
	if o.Authenticators == nil {
		return "", fail(StepPassword, fmt.Errorf("account %s signs in with OAuth2, which is not available here", a.Key()))
	}
	auth, err := o.Authenticators(a)
	if err != nil {
		return "", fail(StepPassword, &CredentialError{Err: err})
	}
	offered := map[string]bool{}
	for _, m := range strings.Fields(strings.ToUpper(advertised)) {
		offered[strings.TrimPrefix(m, "AUTH=")] = true
	}
	mech := ""
	for _, m := range auth.Mechanisms() {
		if offered[m] {
			mech = m
			break
		}
	}
	if mech == "" {
		if len(offered) == 0 {
			return "", fail(StepAuth, ErrNoAuth)
		}
		return "", fail(StepAuth, fmt.Errorf("the server offers AUTH %s, but this account signs in with %s", strings.TrimSpace(strings.ToUpper(advertised)), strings.Join(auth.Mechanisms(), " or ")))
	}
	for attempt := 0; ; attempt++ {
		sc, err := auth.Client(ctx, mech)
		if err != nil {
			return "", fail(StepPassword, &CredentialError{Err: err})
		}
		err = c.Auth(sc)
		if err == nil {
			return mech, nil
		}
		if s, ok := sc.(interface{ Scrub(error) error }); ok {
			err = s.Scrub(err)
		}
		if w, ok := sc.(interface{ WrapAuthError(error) error }); ok {
			err = w.WrapAuthError(err)
		}
		se, isSMTP := SMTPError(err)
		if !isSMTP || se.Code != 535 {
			// 454 (temporary) or a broken connection: not the token's fault.
			return "", fail(StepAuth, err)
		}
		auth.Refused()
		if attempt > 0 {
			return "", fail(StepPassword, &CredentialError{Err: fmt.Errorf("%s: the server refused a new access token too; the account needs a new sign-in (`smtpshim account login %s`): %w", a.Key(), a.Key(), err)})
		}
	}
}
