// Same constraint as go-keyring's keyring_unix.go: these are the platforms
// where it talks to the Secret Service over D-Bus.
//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/zalando/go-keyring"
)

const noSecretService = "no Secret Service is running: install and start gnome-keyring or KeePassXC's Secret Service, " +
	"or set password_command in the config for a headless machine"

const lockedHint = "the keyring is locked and could not be unlocked (the unlock prompt was dismissed or could not be shown): " +
	"unlock the login keyring in Seahorse / gnome-keyring and try again"

// errNoSessionBus is returned instead of letting godbus look for a bus
// itself: with no address it runs dbus-launch, which leaves a new session
// bus (and, through D-Bus activation, a locked gnome-keyring) running after
// we exit, on every start of a headless smtpshim.
var errNoSessionBus = errors.New("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set")

// osBackend is go-keyring, fenced so that it only ever talks to a session bus
// that already exists.
func osBackend() keyringBackend {
	return keyringBackend{
		get: func(service, user string) (string, error) {
			if err := checkSessionBus(); err != nil {
				return "", err
			}
			return keyring.Get(service, user)
		},
		set: func(service, user, password string) error {
			if err := checkSessionBus(); err != nil {
				return err
			}
			return keyring.Set(service, user, password)
		},
		del: func(service, user string) error {
			if err := checkSessionBus(); err != nil {
				return err
			}
			return keyring.Delete(service, user)
		},
	}
}

// userRuntimeDir is where godbus looks for a session bus when the
// environment names none; a variable so tests need not depend on the host.
var userRuntimeDir = fmt.Sprintf("/run/user/%d", os.Getuid())

// checkSessionBus mirrors the discovery godbus does before it falls back to
// dbus-launch: the environment variable, then the systemd/Ubuntu runtime-dir
// files.
func checkSessionBus() error {
	if addr := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); addr != "" && addr != "autolaunch:" {
		return nil
	}
	for _, name := range []string{"bus", "dbus-session"} {
		if _, err := os.Stat(filepath.Join(userRuntimeDir, name)); err == nil {
			return nil
		}
	}
	return errNoSessionBus
}

// platformHint recognises the ways the Secret Service can be missing or
// locked, which go-keyring reports as assorted D-Bus errors and plain
// strings rather than sentinels.
func platformHint(err error) string {
	if errors.Is(err, errNoSessionBus) {
		// The error already says there is no bus: say what to do.
		return "outside a desktop session (a system service, an SSH login) the keychain cannot be reached; " + noSecretService
	}
	var dErr dbus.Error
	if errors.As(err, &dErr) {
		switch {
		case dErr.Name == "org.freedesktop.DBus.Error.ServiceUnknown",
			dErr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner",
			strings.HasPrefix(dErr.Name, "org.freedesktop.DBus.Error.Spawn."):
			return noSecretService
		case dErr.Name == "org.freedesktop.Secret.Error.IsLocked":
			return lockedHint
		}
		return ""
	}
	// go-keyring's only string error: Unlock did not unlock, because the
	// prompt was dismissed or no prompter could be shown (no display).
	if strings.Contains(err.Error(), "failed to unlock") {
		return lockedHint
	}
	// Everything else that is not a D-Bus reply comes from reaching the
	// bus itself: dialling, authenticating, or a dropped connection.
	return "cannot reach the D-Bus session bus (check DBUS_SESSION_BUS_ADDRESS); " + noSecretService
}
