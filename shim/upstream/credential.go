package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// Authenticator is an account's credential: it says which SASL mechanisms
// it can do, hands out a client for the one chosen, and forgets what it
// cached when the provider refuses it. A password is one kind; OAuth2 is
// another. The pool needs nothing else, so a new kind of credential adds an
// implementation, not a case in the pool or the relay.
type Authenticator interface {
	// Mechanisms lists the SASL mechanisms this credential can do, best first.
	Mechanisms() []string
	// Client returns a SASL client for mech (one the server advertised). ctx bounds
	// getting the credential (keychain, password command, token refresh); a failure
	// there is reported by the pool as DialError{Step: StepCredential}.
	Client(ctx context.Context, mech string) (sasl.Client, error)
	// Refused tells the authenticator that the server refused the credential, so it
	// drops whatever it cached (a password read from the keychain, an access token).
	Refused()
}

// Scrubber is implemented by SASL clients that know a secret a server could
// echo back: the pool passes every AUTH error through Scrub before it is
// logged or shown.
type Scrubber interface {
	Scrub(err error) error
}

// Renewer is implemented by credentials that can get a new secret by
// themselves after a refusal (an OAuth2 access token, renewed with the
// refresh token): the pool then tries AUTH once more before it holds the
// account.
type Renewer interface {
	// Renewable reports, after Refused, whether a new Client may carry a
	// different secret.
	Renewable() bool
}

// Detailer is implemented by SASL clients that learned why the server
// refused them (the JSON of an OAuth2 error challenge): Detail adds it to
// the AUTH error, which keeps unwrapping to the server's reply.
type Detailer interface {
	Detail(err error) error
}

// RefusedCredential is implemented by errors from Authenticator.Client
// that mean the provider refused the credential before any server saw it
// (an OAuth2 grant that was revoked or expired): like a 535, only a person
// can fix that, so Classify holds the account instead of retrying.
type RefusedCredential interface {
	CredentialRefused() bool
}

// Problem names, for the account status, of credential trouble that needs a
// person: shown in the tray and the status API.
const (
	ProblemPasswordRejected    = "password rejected"
	ProblemSignInNeeded        = "sign-in needed"
	ProblemKeychainUnavailable = "keychain unavailable"
	ProblemNoPassword          = "no password stored"
	ProblemPasswordCommand     = "password command failed"
	// ProblemTokenUnavailable: an OAuth2 access token could not be had
	// because the provider's token endpoint did not answer; temporary.
	ProblemTokenUnavailable = "sign-in service unreachable"
)

// CredentialProblem names what went wrong with getting or using a
// credential, for the account status; "" when err is no credential
// trouble.
func CredentialProblem(err error) string {
	var de *DialError
	if !errors.As(err, &de) {
		return ""
	}
	switch {
	case de.Step == StepCredential && refusedCredential(err):
		return ProblemSignInNeeded
	case de.Step == StepCredential && isBearer(de.Mechanism) && !errors.Is(err, secrets.ErrUnavailable):
		return ProblemTokenUnavailable
	case de.Step == StepCredential && errors.Is(err, secrets.ErrNotFound):
		return ProblemNoPassword
	case de.Step == StepCredential && errors.Is(err, secrets.ErrCommandFailed):
		return ProblemPasswordCommand
	case de.Step == StepCredential:
		return ProblemKeychainUnavailable
	case Classify(err) == CredentialRefused:
		if isBearer(de.Mechanism) {
			return ProblemSignInNeeded
		}
		return ProblemPasswordRejected
	}
	return ""
}

// PasswordSource returns the account's password: from its password_command
// when it has one, else from store under the account's key.
func PasswordSource(a *config.Account, store secrets.Store, timeout time.Duration) func(context.Context) (string, error) {
	key := a.Key()
	if a.PasswordCommand != "" {
		cmd := secrets.NewCommand(a.PasswordCommand, timeout)
		return func(ctx context.Context) (string, error) { return cmd.Get(ctx, key) }
	}
	return func(ctx context.Context) (string, error) {
		if store == nil {
			return "", fmt.Errorf("no keychain available for account %s: set password_command", key)
		}
		return store.Get(ctx, key)
	}
}

// Password fetches the account's password from its password_command or
// the store.
func Password(ctx context.Context, a *config.Account, store secrets.Store, timeout time.Duration) (string, error) {
	return PasswordSource(a, store, timeout)(ctx)
}

// passwordAuth is a password credential. It reads the password afresh for
// every new connection (connections are pooled, so that is rare): a
// password stored with "smtpshim account add" is used from the next
// connection on, and nothing is kept in memory between connections, so
// Refused has nothing to drop.
type passwordAuth struct {
	username string
	password func(context.Context) (string, error)
}

// NewPasswordAuth returns the authenticator of a password account: its
// login name, and the password from its password_command or store.
func NewPasswordAuth(a *config.Account, store secrets.Store, timeout time.Duration) Authenticator {
	return &passwordAuth{username: a.Login(), password: PasswordSource(a, store, timeout)}
}

// NewStaticPasswordAuth returns a password authenticator with a fixed
// password, for tests and one-off checks.
func NewStaticPasswordAuth(username, password string) Authenticator {
	return &passwordAuth{username: username, password: func(context.Context) (string, error) { return password, nil }}
}

func (p *passwordAuth) Mechanisms() []string { return PasswordMechanisms }

func (p *passwordAuth) Client(ctx context.Context, mech string) (sasl.Client, error) {
	if !passwordCan(mech) {
		return nil, fmt.Errorf("auth mechanism %q is not supported with a password", mech)
	}
	pw, err := p.password(ctx)
	if err != nil {
		return nil, err
	}
	c, err := NewSASLClient(mech, p.username, pw)
	if err != nil {
		return nil, err
	}
	return &scrubbingClient{Client: c, secret: pw}, nil
}

// passwordCan reports whether mech is one a password can do.
func passwordCan(mech string) bool {
	m := normalizeMechanism(mech)
	for _, p := range PasswordMechanisms {
		if p == m {
			return true
		}
	}
	return false
}

func (p *passwordAuth) Refused() {}

// scrubbingClient is a SASL client that removes its secret from errors.
type scrubbingClient struct {
	sasl.Client
	secret string
}

func (c *scrubbingClient) Scrub(err error) error { return scrub(err, c.secret) }

// refusedCredential reports whether err carries a RefusedCredential that
// says so.
func refusedCredential(err error) bool {
	var rc RefusedCredential
	return errors.As(err, &rc) && rc.CredentialRefused()
}

// isBearer reports whether mech carries an OAuth2 bearer token.
func isBearer(mech string) bool { return mech == MechXOAUTH2 || mech == MechOAuthBearer }
