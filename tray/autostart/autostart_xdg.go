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

// systemEntries are where a package installs a system-wide autostart
// entry (the deb: /etc/xdg/autostart/smtpshim.desktop).
func (e *Entry) systemEntries() []string {
	dirs := e.SystemDirs
	if dirs == nil {
		dirs = filepath.SplitList(os.Getenv("XDG_CONFIG_DIRS"))
		if len(dirs) == 0 {
			dirs = []string{"/etc/xdg"}
		}
	}
	var out []string
	for _, d := range dirs {
		out = append(out, filepath.Join(d, "autostart", "smtpshim.desktop"))
	}
	return out
}

func (e *Entry) systemEntry() bool {
	for _, p := range e.systemEntries() {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Enabled reports whether smtpshim starts at login: the user's entry
// decides when there is one (Hidden=true turns a system entry off), else
// a system-wide entry does.
func (e *Entry) Enabled() (bool, error) {
	p, err := e.Path()
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return e.systemEntry(), nil
	}
	if err != nil {
		return false, err
	}
	return !bytes.Contains(b, []byte("\nHidden=true")), nil
}

// Set turns starting at login on or off. With a system-wide entry in
// place, off is a user entry with Hidden=true (the Desktop Entry way to
// hide a system entry for one user) and on removes that user entry.
func (e *Entry) Set(on bool) error {
	p, err := e.Path()
	if err != nil {
		return err
	}
	system := e.systemEntry()
	if on == system {
		// The system entry alone gives what is asked: no user entry.
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	entry := desktopEntry(e.argv())
	if !on {
		entry = append(entry, "Hidden=true\n"...)
	}
	return os.WriteFile(p, entry, 0o644)
}
