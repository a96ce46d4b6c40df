// Package secrets holds the upstream SMTP AUTH passwords that smtpshim
// re-submits mail with. They live outside the config file, in the OS keychain
// or behind an msmtp-style password_command, so that the config can be shared
// or backed up without leaking credentials.
//
// No function in this package puts a secret value into an error, a panic or a
// log line: errors end up in SMTP replies, logs and bug reports.
package secrets

import (
	"context"
	"errors"
	"fmt"
)

// Store keeps one secret per account key (an address like "alice@example.com"
// or a domain key like "@example.com"). Callers depend on this interface rather
// than a concrete store so that the relay can run against the OS keychain in
// production, a password_command on headless machines, and memory in tests.
type Store interface {
	// Get returns the secret for account, or an error wrapping ErrNotFound
	// when none is stored, so the caller can tell "user must add it" apart
	// from "try again later" (ErrUnavailable).
	Get(ctx context.Context, account string) (string, error)
	// Set stores secret for account, replacing any previous one in a single
	// step so that a failure never leaves the account without a secret.
	Set(ctx context.Context, account, secret string) error
	// Delete removes the secret for account. It returns an error wrapping
	// ErrNotFound when there was nothing to remove; callers that only want
	// the entry gone may treat that as success.
	Delete(ctx context.Context, account string) error
}

// Service is the service name smtpshim's entries are filed under in the OS
// keychain, so that they are recognisable (and removable) in tools such as
// Seahorse, Keychain Access or Credential Manager.
const Service = "smtpshim"

var (
	// ErrNotFound means no secret is stored for the account. It is a user
	// action, not a transient fault, so its text says how to fix it.
	ErrNotFound = errors.New("no secret stored for this account; store its password with `smtpshim account add`")

	// ErrUnavailable means the secret store could not answer: the keychain
	// is locked, missing or unreachable, or it did not answer in time. It is
	// worth retrying once the user has unlocked or started it, so the relay
	// should defer mail rather than bounce it.
	ErrUnavailable = errors.New("secret store unavailable")

	// ErrCommandFailed means an account's password_command ran and failed
	// (a non-zero exit, or it could not be started).
	ErrCommandFailed = errors.New("password_command failed")
)

// errEmptyAccount guards against an empty key, which the Secret Service
// would happily store and then match far too broadly on lookup.
var errEmptyAccount = errors.New("secrets: empty account key")

// notFound names the account so that the user knows which password to add;
// where says which store looked, since several may be configured.
func notFound(where, account string) error {
	return fmt.Errorf("%s: %s: %w", where, account, ErrNotFound)
}
