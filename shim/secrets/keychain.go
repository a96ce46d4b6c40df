package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// defaultKeychainTimeout applies when NewKeychain is given no usable
// timeout: long enough for a slow D-Bus round trip, short enough that an SMTP
// client waiting on us does not give up first.
const defaultKeychainTimeout = 10 * time.Second

// keyringBackend is the seam between Keychain and go-keyring. go-keyring's
// own mock is process-global and cannot block, so tests swap these functions
// to simulate a keychain that hangs on an unlock prompt.
type keyringBackend struct {
	get func(service, user string) (string, error)
	set func(service, user, password string) error
	del func(service, user string) error
}

// Keychain is a Store backed by the OS keychain through go-keyring: Windows
// Credential Manager, the macOS Keychain, or the Secret Service (gnome-keyring,
// KeePassXC, ...) on Linux and the BSDs.
//
// go-keyring calls cannot be cancelled and, on the Secret Service, wait
// forever for an unlock prompt. Keychain therefore runs each call in its own
// goroutine and gives up after the timeout. It also lets only one call reach
// the keychain at a time, so that a call that was given up on but is still
// pending (for example a Delete waiting on a prompt) can never complete after,
// and so undo, a later call. That guarantee holds per Keychain, so a process
// should create one and share it.
type Keychain struct {
	timeout time.Duration
	backend keyringBackend
	// busy holds a token while a backend call runs, including one whose
	// caller has already given up on it.
	busy chan struct{}
}

// NewKeychain returns a Keychain whose calls each give up after timeout (10s
// if timeout is not positive), because an unanswered keychain must not stall
// mail delivery indefinitely.
func NewKeychain(timeout time.Duration) *Keychain {
	if timeout <= 0 {
		timeout = defaultKeychainTimeout
	}
	return &Keychain{
		timeout: timeout,
		backend: osBackend(),
		busy:    make(chan struct{}, 1),
	}
}

// Get reads the secret for account. A missing entry is ErrNotFound and a
// keychain that cannot answer is ErrUnavailable, so the relay knows whether
// to ask the user for a password or to retry later.
func (k *Keychain) Get(ctx context.Context, account string) (string, error) {
	if account == "" {
		return "", errEmptyAccount
	}
	var secret string
	err := k.call(ctx, "read", account, "", func() error {
		s, err := k.backend.get(Service, account)
		secret = s
		return err
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// Set stores secret for account. The keychain replaces an existing entry in
// place, so a failed Set leaves the previous secret as it was. A Set that
// timed out can still take effect once the keychain answers (say, after the
// user unlocks it), but never after a later call on the same Keychain.
func (k *Keychain) Set(ctx context.Context, account, secret string) error {
	if account == "" {
		return errEmptyAccount
	}
	return k.call(ctx, "store", account, secret, func() error {
		return k.backend.set(Service, account, secret)
	})
}

// Delete removes the secret for account; a missing entry is ErrNotFound.
// Like Set, a Delete that timed out may still happen later, but never after
// a later call on the same Keychain.
func (k *Keychain) Delete(ctx context.Context, account string) error {
	if account == "" {
		return errEmptyAccount
	}
	return k.call(ctx, "delete", account, "", func() error {
		return k.backend.del(Service, account)
	})
}

// call runs fn against the keychain, returning when fn finishes, ctx is done
// or the timeout passes, whichever is first. secret, when known, is scrubbed
// from any error fn returns: backends are third-party code and may echo their
// input.
func (k *Keychain) call(ctx context.Context, op, account, secret string, fn func() error) error {
	// select picks at random among ready cases; checking first makes a
	// dead ctx reliably stop a write from starting.
	if ctx.Err() != nil {
		return k.abandoned(ctx, op, account)
	}
	timer := time.NewTimer(k.timeout)
	defer timer.Stop()

	// A previous call that timed out may still hold the keychain; waiting
	// for it keeps calls in order instead of racing it.
	select {
	case k.busy <- struct{}{}:
	case <-ctx.Done():
		return k.abandoned(ctx, op, account)
	case <-timer.C:
		return k.timedOut(op, account, true)
	}

	// Buffered so the goroutine can finish and exit even after we stopped
	// listening.
	done := make(chan error, 1)
	go func() {
		defer func() { <-k.busy }()
		defer func() {
			// A panic here would kill the whole relay from a goroutine
			// nobody can recover in; report it as an unusable keychain.
			if r := recover(); r != nil {
				done <- fmt.Errorf("keychain library panicked: %s", scrub(fmt.Sprint(r), secret))
			}
		}()
		done <- fn()
	}()

	select {
	case err := <-done:
		return classify(op, account, secret, err)
	case <-ctx.Done():
		return k.abandoned(ctx, op, account)
	case <-timer.C:
		return k.timedOut(op, account, false)
	}
}

// timedOut tells the user what usually causes a silent keychain and how to
// end it; queued says it was an earlier, abandoned call that is still stuck.
func (k *Keychain) timedOut(op, account string, queued bool) error {
	what := "the keychain did not answer"
	if queued {
		what = "an earlier keychain call is still waiting and this one could not start"
	}
	return fmt.Errorf("keychain: %s %s: %w: %s within %s: it may be locked or waiting for an unlock prompt; "+
		"unlock it (on Linux: the login keyring in Seahorse / gnome-keyring) and try again",
		op, account, ErrUnavailable, what, k.timeout)
}

// abandoned keeps ctx's error in the chain so callers can tell their own
// cancellation from a keychain fault.
func (k *Keychain) abandoned(ctx context.Context, op, account string) error {
	return fmt.Errorf("keychain: %s %s: %w: gave up waiting for the keychain: %w", op, account, ErrUnavailable, ctx.Err())
}

// classify turns a backend error into one of the package's sentinels so
// callers can decide between asking the user for a password (ErrNotFound) and
// retrying later (ErrUnavailable) without knowing the platform.
func classify(op, account, secret string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keyring.ErrNotFound):
		return notFound("keychain", account)
	case errors.Is(err, keyring.ErrSetDataTooBig):
		return fmt.Errorf("keychain: %s %s: the password is too long for this keychain", op, account)
	}
	msg := scrub(err.Error(), secret)
	if hint := platformHint(err); hint != "" {
		return fmt.Errorf("keychain: %s %s: %w: %s: %s", op, account, ErrUnavailable, msg, hint)
	}
	return fmt.Errorf("keychain: %s %s: %w: %s; if the keychain is locked, unlock it and try again", op, account, ErrUnavailable, msg)
}

// scrub removes secret from s. Messages from code we do not control might
// quote the secret, and error text travels to logs and SMTP replies.
func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}
