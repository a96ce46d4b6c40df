package settings

import (
	"errors"
	"os/exec"

	"github.com/smtpshim/smtpshim/shim/oauth"
)

// OpenBrowser opens url in the user's browser, trying the commands
// oauth.BrowserCommands lists ($BROWSER first, as xdg-open does). It
// returns as soon as a command has started, so a tray click never waits
// for a browser.
//
// The URL may hold a one-time token on the browser's command line; it is
// spent within moments, when the browser loads it.
func OpenBrowser(url string) error {
	err := errors.New("no command to open a browser")
	for _, args := range oauth.BrowserCommands(url) {
		if err = start(args[0], args[1:]...); err == nil {
			return nil
		}
	}
	return err
}

// OpenFile opens a file with the desktop's default application.
func OpenFile(path string) error { return OpenBrowser(path) }

func start(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	// Reap it when it ends; browsers hand off and exit, or stay.
	go cmd.Wait()
	return nil
}

// Opener opens pages of a Server in the browser; the tray uses it.
type Opener struct{ S *Server }

// Open opens path with a fresh one-time link.
func (o Opener) Open(path string) error {
	if o.S == nil {
		return errors.New("no settings page")
	}
	return OpenBrowser(o.S.OneTimeURL(path))
}
