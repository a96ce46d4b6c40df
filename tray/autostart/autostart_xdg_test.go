//go:build !windows && !darwin

package autostart

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOnWritesTheXDGFileAndOffRemovesIt(t *testing.T) {
	home := t.TempDir()
	e := &Entry{Exe: "/usr/bin/smtpshim", Home: home, SystemDirs: []string{t.TempDir()}}
	if on, err := e.Enabled(); on || err != nil {
		t.Fatalf("Enabled before: %v %v", on, err)
	}
	if err := e.Set(true); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(home, ".config", "autostart", "smtpshim.desktop")
	b, err := os.ReadFile(p)
	if err != nil || !strings.Contains(string(b), "Exec=/usr/bin/smtpshim --at-login\n") {
		t.Fatalf("autostart file: %v\n%s", err, b)
	}
	if on, _ := e.Enabled(); !on {
		t.Error("Enabled after Set(true) is false")
	}
	// desktop-file-validate, where installed, agrees it is a valid entry.
	if v, err := exec.LookPath("desktop-file-validate"); err == nil {
		if out, err := exec.Command(v, p).CombinedOutput(); err != nil {
			t.Errorf("desktop-file-validate: %v\n%s", err, out)
		}
	}
	if err := e.Set(false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("file left after Set(false): %v", err)
	}
	if err := e.Set(false); err != nil {
		t.Errorf("turning off twice: %v", err)
	}
}

func TestASystemEntryIsHiddenForTheUserRatherThanDeleted(t *testing.T) {
	home, sys := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(sys, "autostart"), 0o755)
	sysEntry := filepath.Join(sys, "autostart", "smtpshim.desktop")
	os.WriteFile(sysEntry, desktopEntry([]string{"/usr/bin/smtpshim", AtLoginFlag}), 0o644)
	e := &Entry{Exe: "/usr/bin/smtpshim", Home: home, SystemDirs: []string{sys}}
	if on, err := e.Enabled(); !on || err != nil {
		t.Fatalf("with the package's entry: Enabled %v %v", on, err)
	}
	if err := e.Set(false); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(home, ".config", "autostart", "smtpshim.desktop")
	b, err := os.ReadFile(user)
	if err != nil || !strings.Contains(string(b), "\nHidden=true\n") {
		t.Fatalf("user entry after off: %v\n%s", err, b)
	}
	if _, err := os.Stat(sysEntry); err != nil {
		t.Errorf("the system entry was touched: %v", err)
	}
	if on, _ := e.Enabled(); on {
		t.Error("still enabled after off")
	}
	if v, err := exec.LookPath("desktop-file-validate"); err == nil {
		if out, err := exec.Command(v, user).CombinedOutput(); err != nil {
			t.Errorf("desktop-file-validate: %v\n%s", err, out)
		}
	}
	if err := e.Set(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(user); !os.IsNotExist(err) {
		t.Errorf("the hiding user entry stayed after on: %v", err)
	}
	if on, _ := e.Enabled(); !on {
		t.Error("not enabled after on")
	}
}
