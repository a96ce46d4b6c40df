//go:build unix

package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestErrorsNeverContainTheSecret drives every error path with a secret the
// code under test could see, and checks that no rendering of the error shows
// it. Error text reaches logs, SMTP replies and bug reports.
func TestErrorsNeverContainTheSecret(t *testing.T) {
	const secret = "Tr0ub4dor&3-leak-canary"
	ctx := context.Background()
	cmdGet := func(command string, timeout time.Duration) func(*testing.T) error {
		return func(*testing.T) error {
			_, err := NewCommand(command, timeout).Get(ctx, "alice@example.com")
			return err
		}
	}
	keychainWith := func(t *testing.T, setup func(*Keychain, *fakeBackend)) *Keychain {
		k, f := fakeKeychain(t, 150*time.Millisecond)
		setup(k, f)
		return k
	}

	cases := map[string]func(*testing.T) error{
		"command: non-zero exit after printing the secret": cmdGet(`echo '`+secret+`'; exit 3`, 5*time.Second),
		"command: stderr echoes the secret (set -x)":       cmdGet(`echo '`+secret+`'; echo "+ echo `+secret+`" >&2; exit 1`, 5*time.Second),
		"command: killed on timeout after printing":        cmdGet(`echo '`+secret+`'; sleep 30`, 200*time.Millisecond),
		"command: secret only on the second line":          cmdGet(`printf '\n%s\n' '`+secret+`'`, 5*time.Second),
		"command: not found":                               cmdGet(`no-such-password-tool-xyz '`+secret+`'`, 5*time.Second),
		"command: context canceled after printing": func(*testing.T) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err := NewCommand(`echo '`+secret+`'; sleep 30`, time.Minute).Get(ctx, "alice@example.com")
			return err
		},
		"command: Set is refused": func(*testing.T) error {
			return NewCommand("true", time.Second).Set(ctx, "alice@example.com", secret)
		},
		"keychain: Set error quotes the secret": func(t *testing.T) error {
			k := keychainWith(t, func(k *Keychain, _ *fakeBackend) {
				k.backend.set = func(_, _, pw string) error { return fmt.Errorf("cannot store %q", pw) }
			})
			return k.Set(ctx, "alice@example.com", secret)
		},
		"keychain: Set panics with the secret": func(t *testing.T) error {
			k := keychainWith(t, func(k *Keychain, _ *fakeBackend) {
				k.backend.set = func(_, _, pw string) error { panic(errors.New("bad value " + pw)) }
			})
			return k.Set(ctx, "alice@example.com", secret)
		},
		"keychain: Set times out": func(t *testing.T) error {
			k := keychainWith(t, func(_ *Keychain, f *fakeBackend) { f.hang(t) })
			return k.Set(ctx, "alice@example.com", secret)
		},
		"keychain: Set while an earlier call hangs": func(t *testing.T) error {
			k := keychainWith(t, func(_ *Keychain, f *fakeBackend) { f.hang(t) })
			_ = k.Delete(ctx, "alice@example.com")
			return k.Set(ctx, "alice@example.com", secret)
		},
		"keychain: Set canceled by ctx": func(t *testing.T) error {
			k := keychainWith(t, func(_ *Keychain, f *fakeBackend) { f.hang(t) })
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return k.Set(ctx, "alice@example.com", secret)
		},
		"keychain: Get returns the secret together with an error": func(t *testing.T) error {
			k := keychainWith(t, func(k *Keychain, _ *fakeBackend) {
				k.backend.get = func(_, _ string) (string, error) { return secret, errors.New("decode failed") }
			})
			v, err := k.Get(ctx, "alice@example.com")
			if v != "" {
				t.Errorf("Get returned a value alongside its error")
			}
			return err
		},
		"memory: Get of another account": func(*testing.T) error {
			m := NewMemory()
			_ = m.Set(ctx, "alice@example.com", secret)
			_, err := m.Get(ctx, "bob@example.com")
			return err
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(t)
			assertNoSecret(t, err, secret)
			if strings.Contains(err.Error(), "leak-canary") {
				t.Fatalf("error leaks part of the secret: %v", err)
			}
		})
	}
}
