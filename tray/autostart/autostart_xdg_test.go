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
	e := &Entry{Exe: "/usr/bin/smtpshim", Home: home}
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
