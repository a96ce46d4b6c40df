//go:build installers

package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDeb(t *testing.T) {
	v := builtVersion(t)
	deb := distFile(t, "smtpshim_"+v.Debian()+"_amd64.deb")
	sendmail := distFile(t, "smtpshim-sendmail_"+v.Debian()+"_all.deb")

	// The control fields.
	fields := map[string]string{
		"Package": "smtpshim", "Version": v.DebianFull(), "Architecture": "amd64",
		"Section": "mail", "Suggests": "gnome-shell-extension-appindicator",
	}
	for f, want := range fields {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, f)); got != want {
			t.Errorf("%s: %s = %q, want %q", filepath.Base(deb), f, got, want)
		}
	}
	info := run(t, "dpkg-deb", "-I", deb)
	if !strings.Contains(info, "conffiles") {
		t.Errorf("no conffiles in the control archive:\n%s", info)
	}
	if got := run(t, "dpkg-deb", "--ctrl-tarfile", deb); !strings.Contains(got, "/etc/xdg/autostart/smtpshim.desktop") {
		t.Errorf("the autostart entry is not a conffile")
	}

	// The files, with their modes.
	want := map[string]string{
		"./usr/bin/smtpshim":                                  "-rwxr-xr-x",
		"./usr/share/applications/smtpshim.desktop":           "-rw-r--r--",
		"./etc/xdg/autostart/smtpshim.desktop":                "-rw-r--r--",
		"./usr/lib/systemd/user/smtpshim.service":             "-rw-r--r--",
		"./usr/share/doc/smtpshim/changelog.Debian.gz":        "-rw-r--r--",
		"./usr/share/doc/smtpshim/copyright":                  "-rw-r--r--",
		"./usr/share/lintian/overrides/smtpshim":              "-rw-r--r--",
		"./usr/share/icons/hicolor/16x16/apps/smtpshim.png":   "-rw-r--r--",
		"./usr/share/icons/hicolor/48x48/apps/smtpshim.png":   "-rw-r--r--",
		"./usr/share/icons/hicolor/256x256/apps/smtpshim.png": "-rw-r--r--",
	}
	checkListing(t, run(t, "dpkg-deb", "-c", deb), want)
	listing := run(t, "dpkg-deb", "-c", sendmail)
	for _, l := range []string{"./usr/sbin/sendmail -> ../bin/smtpshim", "./usr/lib/sendmail -> ../sbin/sendmail"} {
		if !strings.Contains(listing, l) {
			t.Errorf("smtpshim-sendmail lacks %s:\n%s", l, listing)
		}
	}
	for f, want := range map[string]string{"Depends": "smtpshim (= " + v.DebianFull() + ")", "Conflicts": "mail-transport-agent", "Provides": "mail-transport-agent"} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", sendmail, f)); got != want {
			t.Errorf("smtpshim-sendmail: %s = %q, want %q", f, got, want)
		}
	}

	// lintian, strict: warnings fail too.
	run(t, "lintian", "--fail-on", "error,warning", deb, sendmail)

	// The desktop entries, as packaged.
	x := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, x)
	for _, p := range []string{"usr/share/applications/smtpshim.desktop", "etc/xdg/autostart/smtpshim.desktop"} {
		if out, errOut, err := runErr("desktop-file-validate", filepath.Join(x, p)); err != nil || out != "" || errOut != "" {
			t.Errorf("desktop-file-validate %s: %v\n%s%s", p, err, out, errOut)
		}
	}

	// Installed for real.
	needRoot(t, "dpkg -i")
	if _, _, err := runErr("dpkg-query", "-W", "smtpshim"); err == nil {
		t.Fatal("a smtpshim package is already installed on this machine; remove it (dpkg -P smtpshim) before running this test")
	}
	run(t, "dpkg", "-i", deb)
	purged := false
	defer func() {
		if !purged {
			runErr("dpkg", "-P", "smtpshim")
		}
	}()
	if out := run(t, "/usr/bin/smtpshim", "version"); !strings.HasPrefix(out, "smtpshim "+v.String()+" ") {
		t.Errorf("/usr/bin/smtpshim version = %q, want smtpshim %s", out, v)
	}
	rt := t.TempDir()
	os.Chmod(rt, 0o700)
	if out, errOut, err := runEnv([]string{"XDG_RUNTIME_DIR=" + rt}, "systemd-analyze", "--user", "verify", "/usr/lib/systemd/user/smtpshim.service"); err != nil || strings.TrimSpace(out+errOut) != "" {
		t.Errorf("systemd-analyze --user verify: %v\n%s%s", err, out, errOut)
	}
	run(t, "dpkg", "-r", "smtpshim")
	if _, err := os.Stat("/usr/bin/smtpshim"); !os.IsNotExist(err) {
		t.Errorf("/usr/bin/smtpshim is still there after dpkg -r")
	}
	if _, err := os.Stat("/etc/xdg/autostart/smtpshim.desktop"); err != nil {
		t.Errorf("dpkg -r removed the conffile (it should stay until purge): %v", err)
	}
	run(t, "dpkg", "-P", "smtpshim")
	purged = true
	if _, err := os.Stat("/etc/xdg/autostart/smtpshim.desktop"); !os.IsNotExist(err) {
		t.Errorf("/etc/xdg/autostart/smtpshim.desktop is still there after dpkg -P")
	}
	if out, _, err := runErr("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "smtpshim"); err == nil && strings.TrimSpace(out) != "" {
		t.Errorf("after dpkg -P, dpkg still knows smtpshim: %q", out)
	}
}

var listingRE = regexp.MustCompile(`^(\S+)\s+(\S+)\s+\d+\s+\S+\s+\S+\s+(\S+)`)

// checkListing compares `dpkg-deb -c` lines (mode owner size date time
// path) to the wanted paths and modes, and checks every entry is root's.
func checkListing(t *testing.T, listing string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(listing), "\n") {
		m := listingRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("unexpected listing line %q", l)
			continue
		}
		if m[2] != "root/root" {
			t.Errorf("%s is owned by %s", m[3], m[2])
		}
		got[m[3]] = m[1]
	}
	for p, mode := range want {
		if got[p] != mode {
			t.Errorf("%s: mode %q, want %q", p, got[p], mode)
		}
	}
}
