//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package secrets

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// fakeDBusLaunch puts a dbus-launch first on PATH that only leaves a mark,
// so a test can prove godbus never fell back to launching a session bus.
func fakeDBusLaunch(t *testing.T) (marker string) {
	t.Helper()
	dir := t.TempDir()
	marker = filepath.Join(dir, "dbus-launch-ran")
	script := "#!/bin/sh\ntouch '" + marker + "'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "dbus-launch"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return marker
}

func TestKeychainWithoutSessionBusDoesNotLaunchOne(t *testing.T) {
	marker := fakeDBusLaunch(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	old := userRuntimeDir
	userRuntimeDir = t.TempDir()
	t.Cleanup(func() { userRuntimeDir = old })

	k := NewKeychain(2 * time.Second)
	_, err := k.Get(context.Background(), "alice@example.com")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if !strings.Contains(err.Error(), noSecretService) {
		t.Fatalf("error should explain how to get a Secret Service: %v", err)
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Fatal("dbus-launch was run: a stray session bus would outlive smtpshim")
	}
}

// godbus caches the first session bus it connects to for the life of the
// process, whatever DBUS_SESSION_BUS_ADDRESS says later, so this needs a
// process where nothing has connected yet.
func TestKeychainDeadSessionBusIsUnavailable(t *testing.T) {
	if !isolated(t, "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "no-such-bus")) {
		return
	}
	marker := fakeDBusLaunch(t)
	const timeout = 3 * time.Second
	k := NewKeychain(timeout)
	ctx := context.Background()
	_, getErr := k.Get(ctx, "alice@example.com")
	for name, op := range map[string]func() error{
		"get":    func() error { return getErr },
		"set":    func() error { return k.Set(ctx, "alice@example.com", "dead-bus-s3cr3t") },
		"delete": func() error { return k.Delete(ctx, "alice@example.com") },
	} {
		start := time.Now()
		err := op()
		if d := time.Since(start); d >= timeout {
			t.Errorf("%s took %s, not within the %s timeout", name, d, timeout)
		}
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
			t.Errorf("%s: want ErrUnavailable, got %v", name, err)
			continue
		}
		if !strings.Contains(err.Error(), noSecretService) || !strings.Contains(err.Error(), "session bus") {
			t.Errorf("%s: error should say the bus is unreachable and what to do: %v", name, err)
		}
		assertNoSecret(t, err, "dead-bus-s3cr3t")
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Fatal("dbus-launch was run")
	}
}

// The D-Bus error shapes go-keyring passes through for a missing or locked
// Secret Service.
func TestKeychainSecretServiceErrorHints(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"not running", dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, noSecretService},
		{"no owner", dbus.Error{Name: "org.freedesktop.DBus.Error.NameHasNoOwner"}, noSecretService},
		{"activation failed", dbus.Error{Name: "org.freedesktop.DBus.Error.Spawn.ChildExited"}, noSecretService},
		{"item locked", dbus.Error{Name: "org.freedesktop.Secret.Error.IsLocked"}, lockedHint},
		{"prompt dismissed", errors.New("failed to unlock correct collection '/org/freedesktop/secrets/aliases/default'"), lockedHint},
		{"dial failed", &net.OpError{Op: "dial", Net: "unix", Err: os.ErrNotExist}, noSecretService},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, f := fakeKeychain(t, time.Second)
			f.err = tc.err
			_, err := k.Get(context.Background(), "alice@example.com")
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want ErrUnavailable with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestNoSessionBusErrorSaysItOnce(t *testing.T) {
	err := classify("get", "you@example.com", "", errNoSessionBus)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("not ErrUnavailable: %v", err)
	}
	msg := strings.ToLower(err.Error())
	if n := strings.Count(msg, "session bus"); n != 1 {
		t.Errorf("%q says \"session bus\" %d times", err, n)
	}
	if !strings.Contains(msg, "password_command") {
		t.Errorf("%q does not say what to do", err)
	}
}
