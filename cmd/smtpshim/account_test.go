package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// cli runs smtpshim commands against one config file and an in-memory
// keychain.
type cli struct {
	t     *testing.T
	path  string
	store *secrets.Memory
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	c := &cli{t: t, path: filepath.Join(t.TempDir(), "config.toml"), store: secrets.NewMemory()}
	old := keychain
	keychain = func(*config.Config) secrets.Store { return c.store }
	t.Cleanup(func() { keychain = old })
	return c
}

// run returns the exit code, standard output and standard error.
func (c *cli) run(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	a := &app{configPath: c.path, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	code := a.run(args)
	return code, out.String(), errb.String()
}

func (c *cli) stored(key string) (string, bool) {
	pw, err := c.store.Get(context.Background(), key)
	return pw, err == nil
}

func (c *cli) account(key string) config.Account {
	c.t.Helper()
	cfg, err := config.Load(c.path)
	if err != nil {
		c.t.Fatal(err)
	}
	_, a := cfg.Find(key)
	if a == nil {
		c.t.Fatalf("no account %s", key)
	}
	return *a
}

func TestAccountAddChecksCAFile(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "does not exist",
		notPEM:                            "no PEM certificate",
	} {
		code, _, stderr := c.run("pw\n", "account", "add", "you@example.com", "--server", "smtp.example.com:587", "--ca-file", file, "--password-stdin")
		if code != exUsage || !strings.Contains(stderr, want) || !strings.Contains(stderr, file) {
			t.Errorf("--ca-file %s: exit %d: %s", file, code, stderr)
		}
		if _, err := os.Stat(c.path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--ca-file %s: the config was written", file)
		}
	}
}

func TestServeAndDoctorRefuseAMissingCAFile(t *testing.T) {
	c := newCLI(t)
	missing := filepath.Join(t.TempDir(), "gone.pem")
	// The listen address is taken, so that a serve which misses the
	// problem fails (on the port) instead of running.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	os.WriteFile(c.path, []byte("listen = [\""+busy.Addr().String()+"\"]\nspool_dir = \""+t.TempDir()+"\"\n[[account]]\naddress = \"you@example.com\"\nserver = \"127.0.0.1:1\"\nca_file = \""+missing+"\"\n"), 0o600)
	code, _, stderr := c.run("", "serve")
	if code != exConfig || !strings.Contains(stderr, missing) || !strings.Contains(stderr, "does not exist") {
		t.Errorf("serve: exit %d: %s", code, stderr)
	}
	code, out, _ := c.run("", "doctor")
	if code == 0 || !strings.Contains(out, "[FAIL]") || !strings.Contains(out, missing) {
		t.Errorf("doctor: exit %d:\n%s", code, out)
	}
}

func TestAccountPasswordSourceSwitches(t *testing.T) {
	c := newCLI(t)
	const key = "you@example.com"
	add := func(stdin string, flags ...string) (int, string, string) {
		return c.run(stdin, append([]string{"account", "add", key, "--server", "smtp.example.com:587"}, flags...)...)
	}

	// A password_command account: nothing goes to the keychain, and the
	// output does not claim otherwise.
	code, out, stderr := add("", "--password-command", "echo secret")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(out, "keychain,") || strings.Contains(out, "is in the OS keychain") || !strings.Contains(out, "password_command") {
		t.Errorf("output for a password_command account:\n%s", out)
	}
	if _, ok := c.stored(key); ok {
		t.Error("a password_command account stored a keychain password")
	}

	// Storing a keychain password replaces the command, and says so.
	code, out, stderr = add("new-pw\n", "--password-stdin")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if a := c.account(key); a.PasswordCommand != "" {
		t.Errorf("password_command %q kept after storing a keychain password", a.PasswordCommand)
	}
	if pw, _ := c.stored(key); pw != "new-pw" {
		t.Errorf("keychain has %q", pw)
	}
	if !strings.Contains(out, "password_command (echo secret) was removed") {
		t.Errorf("the switch was not reported:\n%s", out)
	}

	// And back: the command replaces the keychain entry, which is removed.
	code, out, stderr = add("", "--password-command", "pass show mail/you")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, ok := c.stored(key); ok {
		t.Error("the keychain entry stayed after switching to a password_command")
	}
	if a := c.account(key); a.PasswordCommand != "pass show mail/you" {
		t.Errorf("password_command = %q", a.PasswordCommand)
	}
	if !strings.Contains(out, "keychain for it was removed") {
		t.Errorf("the removal was not reported:\n%s", out)
	}

	// Changing the server keeps the command and asks for no password.
	code, _, stderr = add("")
	if code != 0 || c.account(key).PasswordCommand != "pass show mail/you" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestDoctorSaysWhyItSkipsTLSAndAUTH(t *testing.T) {
	c := newCLI(t)
	os.WriteFile(c.path, []byte("listen = [\"127.0.0.1:1\"]\nspool_dir = \""+t.TempDir()+"\"\n[[account]]\naddress = \"you@example.com\"\nserver = \"127.0.0.1:587\"\n"), 0o600)
	_, out, _ := c.run("", "doctor")
	if strings.Contains(out, "DNS 127.0.0.1") {
		t.Errorf("doctor looks up an IP address:\n%s", out)
	}
	if !strings.Contains(out, "TLS and AUTH not checked: there is no password") {
		t.Errorf("doctor skips the TLS and AUTH check silently:\n%s", out)
	}
}

func TestLogLeavesOutEmptyDetails(t *testing.T) {
	var buf bytes.Buffer
	a := &app{stderr: &buf}
	a.logger().Info("message queued", "id", "x1", "reason", "", "hint", "", "err", nil)
	a.logger().Info("delivery deferred", "reason", "451 try later")
	out := buf.String()
	if strings.Contains(out, `reason=""`) || strings.Contains(out, `hint=""`) || strings.Contains(out, "err=<nil>") {
		t.Errorf("empty details logged:\n%s", out)
	}
	if !strings.Contains(out, `reason="451 try later"`) || !strings.Contains(out, "id=x1") {
		t.Errorf("details lost:\n%s", out)
	}
}
