//go:build !windows && !darwin

package autostart

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Path is the .desktop file: $XDG_CONFIG_HOME/autostart/smtpshim.desktop.
func (e *Entry) Path() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if e.Home != "" {
		dir = filepath.Join(e.Home, ".config")
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "autostart", "smtpshim.desktop"), nil
}

// Enabled reports whether the autostart file exists and is not hidden.
func (e *Entry) Enabled() (bool, error) {
	p, err := e.Path()
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !bytes.Contains(b, []byte("\nHidden=true")), nil
}

// Set writes or removes the autostart file.
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
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p, desktopEntry(e.argv()), 0o644)
}
