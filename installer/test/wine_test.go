//go:build installers

package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/installer/version"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// wine is a throwaway Wine prefix, headless: no X server, nothing added to
// the host's menus (winemenubuilder disabled), no Mono or Gecko download.
type wine struct {
	dir, prefix string
	env         []string
}

func newWine(t *testing.T) *wine {
	t.Helper()
	if _, err := exec.LookPath("wine"); err != nil {
		t.Fatal("wine is not installed (Debian: wine wine64; .ci/deps installs them)")
	}
	dir := t.TempDir()
	w := &wine{dir: dir, prefix: filepath.Join(dir, "prefix")}
	w.env = []string{
		"WINEPREFIX=" + w.prefix, "WINEDEBUG=-all", "WINEARCH=win64",
		"WINEDLLOVERRIDES=winemenubuilder.exe=d;mscoree=d;mshtml=d",
		"DISPLAY=", "WAYLAND_DISPLAY=",
	}
	t.Cleanup(func() { w.cmd(context.Background(), "wineserver", "-k").Run() })
	start := time.Now()
	if out, err := w.cmd(context.Background(), "wine", "wineboot", "--init").CombinedOutput(); err != nil {
		t.Fatalf("wineboot: %v\n%s", err, out)
	}
	t.Logf("wineboot: %s", time.Since(start).Round(time.Second))
	// Test equipment, never shipped: Go's Windows binaries need
	// ProcessPrng from bcryptprimitives.dll, which Wine 8 lacks.
	src := filepath.Join(repoRoot(t), "installer", "test", "testdata")
	dll := filepath.Join(w.prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	if _, err := os.Stat(dll); err == nil {
		t.Fatalf("this Wine already has %s; the stand-in would replace it", dll)
	}
	run(t, "x86_64-w64-mingw32-gcc", "-O2", "-shared", "-o", dll,
		filepath.Join(src, "bcryptprimitives.c"), filepath.Join(src, "bcryptprimitives.def"), "-ladvapi32")
	return w
}

func (w *wine) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), w.env...)
	cmd.Dir = w.dir
	return cmd
}

// run runs a Windows program under Wine with stdin, bounded in time.
func (w *wine) run(t *testing.T, stdin string, exe string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := w.cmd(ctx, "wine", append([]string{exe}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

func (w *wine) mustRun(t *testing.T, stdin string, exe string, args ...string) string {
	t.Helper()
	o, e, err := w.run(t, stdin, exe, args...)
	if err != nil {
		t.Fatalf("wine %s %s: %v\nstdout:\n%s\nstderr:\n%s", exe, strings.Join(args, " "), err, o, e)
	}
	return o
}

// winPath is a Unix path as Wine's Z: drive shows it.
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

func (w *wine) programFiles() string {
	return filepath.Join(w.prefix, "drive_c", "Program Files", "smtpshim")
}

const installedCLI = `C:\Program Files\smtpshim\smtpshim-cli.exe`
const installedGUI = `C:\Program Files\smtpshim\smtpshim.exe`

func (w *wine) msiexec(t *testing.T, args ...string) error {
	t.Helper()
	o, e, err := w.run(t, "", "msiexec", append(args, "/qn")...)
	if err != nil {
		t.Logf("msiexec %s: %v %s%s", strings.Join(args, " "), err, o, e)
	}
	return err
}

// products lists the installed products named smtpshim by version, from
// the Uninstall registry key that Windows Installer keeps.
func (w *wine) products(t *testing.T) []string {
	t.Helper()
	out := w.mustRun(t, "", "reg", "query", `HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall`, "/s")
	var found []string
	for _, block := range strings.Split(strings.ReplaceAll(out, "\r", ""), "\n\n") {
		if !regHas(block, "DisplayName", "smtpshim") {
			continue
		}
		found = append(found, regValue(block, "DisplayVersion"))
	}
	return found
}

func regValue(block, name string) string {
	for _, l := range strings.Split(block, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == name {
			return strings.Join(f[2:], " ")
		}
	}
	return ""
}

func regHas(block, name, val string) bool { return regValue(block, name) == val }

// userDir is the Wine user's profile folder, e.g. drive_c/users/root.
func (w *wine) userDir(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(w.prefix, "drive_c", "users", "*", "AppData", "Roaming"))
	for _, p := range m {
		if !strings.Contains(p, "Public") {
			return filepath.Dir(filepath.Dir(p))
		}
	}
	t.Fatalf("no user profile in %s", w.prefix)
	return ""
}

// TestWindowsUnderWine installs the MSI in a fresh Wine prefix and runs
// the Windows build for real: the demo from the exe as packed, then with
// the installed exe an account in Wine's Credential Manager, the relay
// serving a Linux SMTP client, the control pipe, an upgrade in place, a
// refused downgrade and the uninstall.
func TestWindowsUnderWine(t *testing.T) {
	v := builtVersion(t)
	msi := distFile(t, "smtpshim-"+v.FileName()+"-x64.msi")
	// The next version, to upgrade to.
	next := version.V{Major: v.Major, Minor: v.Minor, Patch: v.Patch + 1}
	nextDir := t.TempDir()
	buildStart := time.Now()
	build := exec.Command("go", "run", "./installer/build", "-version", next.String(), "-out", nextDir, "msi")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the MSI for %s: %v\n%s", next, err, out)
	}
	t.Logf("MSI %s built in %s", next, time.Since(buildStart).Round(time.Second))
	nextMSI := filepath.Join(nextDir, "smtpshim-"+next.FileName()+"-x64.msi")

	w := newWine(t)

	// The exe as packed in the MSI, before any install.
	x := filepath.Join(w.dir, "extracted")
	run(t, "msiextract", "-C", x, msi)
	packedCLI := filepath.Join(x, "smtpshim", "smtpshim-cli.exe")
	if out := w.mustRun(t, "", packedCLI, "version"); !strings.HasPrefix(out, "smtpshim "+v.String()+" ") || !strings.Contains(out, "windows/amd64") {
		t.Errorf("smtpshim-cli.exe version = %q", out)
	}
	demoStart := time.Now()
	if out := w.mustRun(t, "", packedCLI, "demo"); !strings.Contains(out, "Demo passed") {
		t.Errorf("smtpshim-cli.exe demo under Wine:\n%s", out)
	}
	t.Logf("demo under Wine: %s", time.Since(demoStart).Round(100*time.Millisecond))

	// Install.
	if err := w.msiexec(t, "/i", winPath(msi)); err != nil {
		t.Fatalf("msiexec /i %s failed", filepath.Base(msi))
	}
	for _, f := range []string{"smtpshim.exe", "smtpshim-cli.exe"} {
		if _, err := os.Stat(filepath.Join(w.programFiles(), f)); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	if p := w.products(t); len(p) != 1 || p[0] != v.MSI() {
		t.Errorf("installed products: %v, want [%s]", p, v.MSI())
	}
	// Wine puts an all-users shortcut into the user's Start Menu.
	lnks := []string{
		filepath.Join(w.prefix, "drive_c", "ProgramData", "Microsoft", "Windows", "Start Menu", "Programs", "smtpshim.lnk"),
		filepath.Join(w.userDir(t), "AppData", "Roaming", "Microsoft", "Windows", "Start Menu", "Programs", "smtpshim.lnk"),
	}
	if !exists(lnks[0]) && !exists(lnks[1]) {
		t.Errorf("no Start Menu shortcut in %v", lnks)
	}

	const password = "wine-Credential-Manager-pw-7d3f"
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{"alice@example.com": password}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	relayThroughInstalledExe(t, w, sim, password)

	// Upgrade in place: one product, the new version.
	if err := w.msiexec(t, "/i", winPath(nextMSI)); err != nil {
		t.Fatalf("upgrading to %s failed", next)
	}
	if p := w.products(t); len(p) != 1 || p[0] != next.MSI() {
		t.Errorf("after the upgrade: products %v, want [%s]", p, next.MSI())
	}
	if out := w.mustRun(t, "", installedCLI, "version"); !strings.HasPrefix(out, "smtpshim "+next.String()+" ") {
		t.Errorf("after the upgrade: %q", out)
	}
	// A downgrade is refused and changes nothing.
	if err := w.msiexec(t, "/i", winPath(msi)); err == nil {
		t.Errorf("installing %s over %s succeeded; a downgrade must be refused", v, next)
	}
	if p := w.products(t); len(p) != 1 || p[0] != next.MSI() {
		t.Errorf("after the refused downgrade: products %v, want [%s]", p, next.MSI())
	}

	// Uninstall: the program goes, the user's data stays.
	if err := w.msiexec(t, "/x", winPath(nextMSI)); err != nil {
		t.Fatal("msiexec /x failed")
	}
	for _, f := range []string{"smtpshim.exe", "smtpshim-cli.exe"} {
		if _, err := os.Stat(filepath.Join(w.programFiles(), f)); !os.IsNotExist(err) {
			t.Errorf("after uninstall, %s is still there (%v)", f, err)
		}
	}
	if exists(lnks[0]) || exists(lnks[1]) {
		t.Errorf("after uninstall, the Start Menu shortcut is still there")
	}
	if p := w.products(t); len(p) != 0 {
		t.Errorf("after uninstall: products %v", p)
	}
	if _, _, err := w.run(t, "", "reg", "query", `HKLM\Software\smtpshim`); err == nil {
		t.Errorf("after uninstall, HKLM\\Software\\smtpshim is still there")
	}
	home := w.userDir(t)
	if _, err := os.Stat(filepath.Join(home, "AppData", "Roaming", "smtpshim", "config.toml")); err != nil {
		t.Errorf("uninstall removed the user's config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, "AppData", "Local", "smtpshim", "spool")); err != nil {
		t.Errorf("uninstall removed the user's spool: %v", err)
	}
	// The password is still in Credential Manager: the packed exe logs in.
	if out := w.mustRun(t, "", packedCLI, "account", "test", "alice@example.com"); !strings.Contains(out, "OK: mail from alice@example.com") {
		t.Errorf("account test after uninstall: %q", out)
	}
}

// relayThroughInstalledExe adds an account with the installed exe (the
// password into Wine's Credential Manager), runs the relay, sends one
// message from a Linux SMTP client through it to a provider simulator on
// loopback, and checks it arrived unchanged; it also drives the running
// relay over its control pipe.
func relayThroughInstalledExe(t *testing.T, w *wine, sim *upstreamsim.Server, password string) {
	ca := filepath.Join(w.dir, "provider-ca.pem")
	os.WriteFile(ca, sim.Cert.CAPEM, 0o644)

	out := w.mustRun(t, password+"\n", installedCLI, "account", "add", "alice@example.com",
		"--server", sim.Addr, "--ca-file", winPath(ca), "--password-stdin", "--test")
	t.Logf("account add: %s", strings.TrimSpace(out))
	if sim.AuthFailures() != 0 {
		t.Errorf("the provider refused the login %d times", sim.AuthFailures())
	}
	cfgPath := filepath.Join(w.userDir(t), "AppData", "Roaming", "smtpshim", "config.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatalf("the config is not where Windows keeps it: %v", err)
	}
	if bytes.Contains(cfg, []byte(password)) {
		t.Fatal("the password is in the config file")
	}
	// A port of its own, not 2525.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg = append([]byte(fmt.Sprintf("listen = [%q]\n", addr)), cfg...)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	// The relay, as the Start Menu and the Run value start it.
	ctx, cancel := context.WithCancel(context.Background())
	serve := w.cmd(ctx, "wine", installedGUI, "serve")
	var serveOut bytes.Buffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		serve.Wait()
		t.Logf("serve under Wine said:\n%s", serveOut.String())
	}()
	waitFor(t, 60*time.Second, "the relay under Wine to listen on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	body := "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: through Wine\r\n\r\n" +
		"Sent by a Linux client through smtpshim.exe under Wine.\r\n.leading dot\r\n"
	if err := smtp.SendMail(addr, nil, "alice@example.com", []string{"bob@example.net"}, []byte(body)); err != nil {
		t.Fatalf("sending through the relay under Wine: %v", err)
	}
	msgs := sim.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the provider got %d messages, want 1", len(msgs))
	}
	if msgs[0].SHA256 != sha256.Sum256([]byte(body)) {
		t.Errorf("the message changed on the way:\n%q\nwant\n%q", msgs[0].Data, body)
	}
	if msgs[0].User != "alice@example.com" || msgs[0].From != "alice@example.com" {
		t.Errorf("delivered as %q from %q", msgs[0].User, msgs[0].From)
	}

	// sendmail mode: smtpshim-cli.exe send hands the message to the
	// running relay, with a one-time token fetched over the control pipe.
	// It has the Date and Message-ID that send would otherwise add, so it
	// must arrive byte for byte.
	body2 := "From: alice@example.com\r\nTo: carol@example.net\r\nSubject: send under Wine\r\n" +
		"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <send-under-wine@example.com>\r\n\r\nPiped into smtpshim-cli.exe send.\r\n"
	if o, e, err := w.run(t, body2, installedCLI, "send", "-f", "alice@example.com", "carol@example.net"); err != nil {
		t.Errorf("smtpshim-cli.exe send: %v\n%s%s", err, o, e)
	}
	if msgs := sim.Messages(); len(msgs) != 2 || msgs[1].SHA256 != sha256.Sum256([]byte(body2)) {
		got := ""
		if len(msgs) == 2 {
			got = fmt.Sprintf("%q", msgs[1].Data)
		}
		t.Errorf("after send, the provider has %d messages, want 2 with the sent one unchanged: %s", len(msgs), got)
	}

	// The control pipe: with the relay holding the spool lock, queue list
	// can only answer through it.
	o, e, err := w.run(t, "", installedCLI, "queue", "list")
	if err != nil || strings.Contains(o+e, "not running") {
		t.Errorf("queue list against the running relay: %v\n%s%s", err, o, e)
	}
	t.Logf("queue list through the control pipe: %s", strings.TrimSpace(o+e))
	help, _, _ := w.run(t, "", installedCLI, "help")
	if strings.Contains(help, "\n  status") {
		o, e, err := w.run(t, "", installedCLI, "status")
		if err != nil || !strings.Contains(o, "alice@example.com") {
			t.Errorf("status against the running relay: %v\n%s%s", err, o, e)
		}
		t.Logf("status through the control pipe:\n%s", o)
	} else {
		t.Log("this build has no status command yet; queue list alone checks the control pipe")
	}
	if strings.Contains(serveOut.String(), "no control socket") {
		t.Errorf("the relay has no control channel:\n%s", serveOut.String())
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
