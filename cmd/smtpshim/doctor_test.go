//go:build !windows

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/config"
)

// TestDoctorExplainsUnsafeConfigAndSpool: doctor names a config others
// can change and a spool others can write, with what to run.
func TestDoctorExplainsUnsafeConfigAndSpool(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{SpoolDir: filepath.Join(dir, "spool"), Listen: []string{"127.0.0.1:1"}}
	cfg.SetPath(filepath.Join(dir, "config.toml"))
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	doctor := func() (int, string) {
		var out bytes.Buffer
		a := &app{configPath: cfg.Path(), stdout: &out, stderr: &out}
		return a.run([]string{"doctor"}), out.String()
	}

	os.Chmod(cfg.Path(), 0o666)
	code, out := doctor()
	if code == 0 || !strings.Contains(out, "[FAIL] config "+cfg.Path()+" is writable by other users") || !strings.Contains(out, "chmod 600 "+cfg.Path()) {
		t.Fatalf("doctor with a world-writable config (exit %d):\n%s", code, out)
	}
	os.Chmod(cfg.Path(), 0o600)

	os.MkdirAll(cfg.SpoolDir, 0o700)
	os.Chmod(cfg.SpoolDir, 0o777)
	code, out = doctor()
	if code == 0 || !strings.Contains(out, "[FAIL] the spool "+cfg.SpoolDir+" is writable by other users") || !strings.Contains(out, "chmod 700 "+cfg.SpoolDir) {
		t.Fatalf("doctor with a world-writable spool (exit %d):\n%s", code, out)
	}
	if !strings.Contains(out, "spool disk: ") {
		t.Fatalf("doctor does not report free space:\n%s", out)
	}
}
