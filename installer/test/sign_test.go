//go:build installers

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignedMSI builds the MSI with a signing certificate given through
// the environment (a throwaway self-signed one) and checks that
// osslsigncode signed both exes inside it and the MSI itself.
func TestSignedMSI(t *testing.T) {
	v := builtVersion(t)
	dir := t.TempDir()
	key, cert, p12, pass := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "sign.p12"), filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("test-signing-pw-91c2\n"), 0o600)
	run(t, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
		"-days", "1", "-subj", "/CN=smtpshim test signing", "-addext", "extendedKeyUsage=codeSigning")
	run(t, "openssl", "pkcs12", "-export", "-inkey", key, "-in", cert, "-out", p12, "-passout", "file:"+pass)

	out := filepath.Join(dir, "dist")
	build := exec.Command("go", "run", "./installer/build", "-version", v.String(), "-out", out, "msi")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "SMTPSHIM_SIGN_PKCS12="+p12, "SMTPSHIM_SIGN_PASSWORD_FILE="+pass)
	o, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("signed build: %v\n%s", err, o)
	}
	if strings.Contains(string(o), "test-signing-pw") {
		t.Error("the build printed the signing password")
	}
	msi := filepath.Join(out, "smtpshim-"+v.FileName()+"-x64.msi")
	x := filepath.Join(dir, "x")
	run(t, "msiextract", "-C", x, msi)
	for _, f := range []string{msi, filepath.Join(x, "smtpshim", "smtpshim.exe"), filepath.Join(x, "smtpshim", "smtpshim-cli.exe")} {
		got := run(t, "osslsigncode", "verify", "-CAfile", cert, "-in", f)
		if !strings.Contains(got, "smtpshim test signing") || !strings.Contains(got, "Signature verification: ok") {
			t.Errorf("%s is not signed with the test certificate:\n%s", filepath.Base(f), got)
		}
	}
}
