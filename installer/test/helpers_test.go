//go:build installers

package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/installer/version"
)

// dist is where `make installers` put the packages.
func dist(t *testing.T) string {
	t.Helper()
	d := os.Getenv("SMTPSHIM_DIST")
	if d == "" {
		d = filepath.Join(repoRoot(t), "dist")
	}
	return d
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// builtVersion is the version the packages were built as.
func builtVersion(t *testing.T) version.V {
	t.Helper()
	raw := os.Getenv("SMTPSHIM_VERSION")
	if raw == "" {
		t.Fatal("SMTPSHIM_VERSION is not set: run the tests through `make installers-test`, or set it to the VERSION given to `make installers`")
	}
	v, err := version.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// distFile returns a package in dist, failing when `make installers` has
// not written it.
func distFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(dist(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: run `make installers` first", err)
	}
	return p
}

// run runs a command, fails the test when it fails, and returns stdout.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func runErr(name string, args ...string) (stdout, stderr string, err error) {
	return runEnv(nil, name, args...)
}

func runEnv(env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatalf("this test must run as root: %s", why)
	}
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
