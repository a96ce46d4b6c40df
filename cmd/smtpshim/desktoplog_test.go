package main

import (
	"path/filepath"
	"testing"

	"github.com/smtpshim/smtpshim/shim/config"
)

// The desktop face logs to log_file when the config names one, and
// otherwise next to the spool, where "Open log" finds it.
func TestDesktopLogPath(t *testing.T) {
	spool := filepath.Join("home", "u", ".local", "share", "smtpshim", "spool")
	if got, want := desktopLogPath(&config.Config{}, spool), filepath.Join("home", "u", ".local", "share", "smtpshim", "smtpshim.log"); got != want {
		t.Errorf("default: %q, want %q", got, want)
	}
	if got := desktopLogPath(&config.Config{LogFile: "/var/log/smtpshim.log"}, spool); got != "/var/log/smtpshim.log" {
		t.Errorf("with log_file: %q", got)
	}
}
