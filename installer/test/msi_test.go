//go:build installers

package test

import (
	"fmt"
	"strings"
	"testing"
)

// msiTable exports one table of an MSI as rows of fields (msiinfo writes
// CRLF line ends; the first three lines are the column names, types and
// table name).
func msiTable(t *testing.T, msi, table string) [][]string {
	t.Helper()
	out := strings.ReplaceAll(run(t, "msiinfo", "export", msi, table), "\r", "")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("msiinfo export %s: %q", table, out)
	}
	var rows [][]string
	for _, l := range lines[3:] {
		rows = append(rows, strings.Split(l, "\t"))
	}
	return rows
}

func findRow(rows [][]string, col int, val string) []string {
	for _, r := range rows {
		if len(r) > col && r[col] == val {
			return r
		}
	}
	return nil
}

const upgradeCode = "{6F1C2E3A-7B54-4D8E-9A31-5C0D2B7E4F19}"

func TestMSITables(t *testing.T) {
	v := builtVersion(t)
	msi := distFile(t, "smtpshim-"+v.FileName()+"-x64.msi")

	files := msiTable(t, msi, "File")
	for _, name := range []string{"smtpshim.exe", "smtpshim-cli.exe"} {
		if findRow(files, 2, name) == nil {
			t.Errorf("File table has no %s: %v", name, files)
		}
	}
	// Every component is 64-bit (msidbComponentAttributes64bit, 256).
	comps := msiTable(t, msi, "Component")
	if len(comps) != 3 {
		t.Errorf("Component table: %v", comps)
	}
	for _, c := range comps {
		var attr int
		if _, err := fmt.Sscan(c[3], &attr); err != nil || attr&256 == 0 {
			t.Errorf("component %s is not 64-bit (Attributes %s)", c[0], c[3])
		}
	}
	dirs := msiTable(t, msi, "Directory")
	if r := findRow(dirs, 0, "INSTALLDIR"); r == nil || r[1] != "ProgramFiles64Folder" || r[2] != "smtpshim" {
		t.Errorf("INSTALLDIR is %v, want smtpshim under ProgramFiles64Folder", r)
	}
	sc := msiTable(t, msi, "Shortcut")
	if r := findRow(sc, 0, "smtpshimShortcut"); r == nil || r[1] != "ProgramMenuFolder" || r[4] != "[INSTALLDIR]smtpshim.exe" {
		t.Errorf("Start Menu shortcut: %v", sc)
	}
	// Start at login is smtpshim's own per-user setting, not the MSI's.
	reg := msiTable(t, msi, "Registry")
	for _, r := range reg {
		if strings.HasSuffix(r[2], `CurrentVersion\Run`) {
			t.Errorf("the MSI writes a Run value: %v", r)
		}
	}
	if findRow(reg, 2, `Software\smtpshim`) == nil {
		t.Errorf("no key path for the shortcut's component: %v", reg)
	}
	up := msiTable(t, msi, "Upgrade")
	if len(up) != 2 {
		t.Fatalf("Upgrade table: %v", up)
	}
	for _, r := range up {
		if r[0] != upgradeCode {
			t.Errorf("upgrade code %s, want %s", r[0], upgradeCode)
		}
	}
	if r := findRow(up, 6, "WIX_DOWNGRADE_DETECTED"); r == nil || r[1] != v.MSI() {
		t.Errorf("no downgrade detection from %s: %v", v.MSI(), up)
	}
	lc := msiTable(t, msi, "LaunchCondition")
	if findRow(lc, 0, "NOT WIX_DOWNGRADE_DETECTED") == nil {
		t.Errorf("a downgrade is not refused: LaunchCondition %v", lc)
	}
	props := map[string]string{}
	for _, r := range msiTable(t, msi, "Property") {
		props[r[0]] = r[1]
	}
	for k, want := range map[string]string{
		"ProductVersion": v.MSI(), "UpgradeCode": upgradeCode, "ProductName": "smtpshim",
		"ARPPRODUCTICON": "smtpshim.ico", "ALLUSERS": "1",
	} {
		if props[k] != want {
			t.Errorf("Property %s = %q, want %q", k, props[k], want)
		}
	}
	// The cab is inside the MSI, as is the icon.
	media := msiTable(t, msi, "Media")
	if len(media) != 1 || !strings.HasPrefix(media[0][3], "#") {
		t.Errorf("the cabinet is not embedded: Media %v", media)
	}
	streams := run(t, "msiinfo", "streams", msi)
	for _, s := range []string{"smtpshim.cab", "Icon.smtpshim.ico"} {
		if !strings.Contains(streams, s) {
			t.Errorf("no stream %s in the MSI: %s", s, streams)
		}
	}
}
