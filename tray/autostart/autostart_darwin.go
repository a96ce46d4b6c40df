package autostart

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Path is the LaunchAgent: ~/Library/LaunchAgents/org.smtpshim.smtpshim.plist.
// launchd reads it at the next login; RunAtLoad starts smtpshim then.
func (e *Entry) Path() (string, error) {
	home := e.Home
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(home, "Library", "LaunchAgents", Label+".plist"), nil
}

// Enabled reports whether the LaunchAgent exists.
func (e *Entry) Enabled() (bool, error) {
	p, err := e.Path()
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Set writes or removes the LaunchAgent.
func (e *Entry) Set(on bool) error {
	p, err := e.Path()
	if err != nil {
		return err
	}
	if !on {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, plist(e.argv()), 0o644)
}
