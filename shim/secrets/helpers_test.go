package secrets

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Compile-time proof that every store satisfies the interface the relay uses.
var (
	_ Store = (*Keychain)(nil)
	_ Store = (*Memory)(nil)
	_ Store = (*Command)(nil)
)

const isolatedEnv = "SMTPSHIM_SECRETS_TEST_ISOLATED"

// isolated runs the calling top-level test in a fresh test process and
// reports false, or reports true when it is that fresh process. Some state
// cannot be reset in-process: go-keyring's mock provider replaces the real
// one for good, and godbus caches the first session bus connection no matter
// how DBUS_SESSION_BUS_ADDRESS changes later.
//
//	if !isolated(t) { return }
func isolated(t *testing.T, env ...string) bool {
	t.Helper()
	if os.Getenv(isolatedEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(append(os.Environ(), isolatedEnv+"="+t.Name()), env...)
	out, err := cmd.CombinedOutput()
	// Insist on the PASS line: a -test.run that matched nothing also exits 0.
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("isolated run of %s failed (%v):\n%s", t.Name(), err, out)
	}
	t.Logf("isolated run:\n%s", strings.TrimSpace(string(out)))
	return false
}

// assertNoSecret fails if secret shows up in any rendering of err.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	for _, s := range []string{err.Error(), fmtAll(err)} {
		if strings.Contains(s, secret) {
			t.Fatalf("error leaks the secret %q: %s", secret, s)
		}
	}
}

// fmtAll renders err every way a log line or panic might.
func fmtAll(err error) string {
	return fmt.Sprintf("%v|%+v|%#v|%q|%s", err, err, err, err, err)
}
