package config

import (
	"fmt"
	"os"
	"path/filepath"
)

// CheckFile refuses a config file that someone else could change: its
// password_command runs as the user, and its server is where the password
// goes, so whoever can write it can run code as the user or collect the
// password. The file must belong to the user (or the administrator) and
// be writable by its owner alone; so must its directory, unless only the
// sticky bit lets others create files there (as in /tmp). Like OpenSSH's
// StrictModes. A missing file is fine.
func CheckFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := fileTrusted(path, fi, false); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err == nil {
		if err := fileTrusted(dir, di, true); err != nil {
			return err
		}
	}
	return nil
}

func unsafeConfig(path, why, fix string) error {
	return fmt.Errorf("config %s %s: whoever can change it can make smtpshim run commands as you (password_command) or send your password to another server; %s", path, why, fix)
}
