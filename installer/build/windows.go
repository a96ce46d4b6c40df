package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
)

// upgradeCode identifies smtpshim across all its versions: Windows
// Installer finds the installed version by it, so it never changes.
const upgradeCode = "{6F1C2E3A-7B54-4D8E-9A31-5C0D2B7E4F19}"

// windowsExes builds smtpshim.exe, a GUI-subsystem program (no console
// window when started from the Start Menu or at login), and
// smtpshim-cli.exe, the same program as a console program for a command
// prompt and scripts: a GUI-subsystem exe started from cmd.exe returns the
// prompt at once and cannot read the console, so it cannot run
// `account add` or `send`. Both carry the icon, a manifest and version
// information.
func (b *builder) windowsExes() (gui, cli string, err error) {
	dir := filepath.Join(b.work, "windows")
	ico, err := b.icons.ICO()
	if err != nil {
		return "", "", err
	}
	icoPath, err := b.write(filepath.Join(dir, "smtpshim.ico"), ico, 0o644)
	if err != nil {
		return "", "", err
	}
	for _, exe := range []struct {
		name, desc string
		ld         []string
	}{
		{"smtpshim.exe", "smtpshim mail relay", []string{"-H=windowsgui"}},
		{"smtpshim-cli.exe", "smtpshim mail relay (command line)", nil},
	} {
		res := winres(b.v.Windows(), b.v.String(), exe.name, exe.desc, b.epoch.Format("2006"))
		js, _ := json.MarshalIndent(res, "", "  ")
		rdir := filepath.Join(dir, strings.TrimSuffix(exe.name, ".exe"))
		jsPath, err := b.write(filepath.Join(rdir, "winres.json"), js, 0o644)
		if err != nil {
			return "", "", err
		}
		if err := os.Link(icoPath, filepath.Join(rdir, "icon.ico")); err != nil {
			return "", "", err
		}
		syso := filepath.Join(rdir, "rsrc.syso")
		if err := b.tool("go-winres", "make", "--in", jsPath, "--out", syso, "--arch", "amd64", "--no-suffix"); err != nil {
			return "", "", err
		}
		// go build takes .syso files only from the package's own
		// directory (an -overlay entry is not enough), so the resources
		// are there for this build alone.
		data, err := os.ReadFile(syso)
		if err != nil {
			return "", "", err
		}
		pkgSyso := filepath.Join(b.root, "cmd", "smtpshim", "rsrc_windows_amd64.syso")
		if err := os.WriteFile(pkgSyso, data, 0o644); err != nil {
			return "", "", err
		}
		out := filepath.Join(dir, exe.name)
		err = b.goBuild("windows", "amd64", out, exe.ld)
		os.Remove(pkgSyso)
		if err != nil {
			return "", "", err
		}
		if err := b.sign(out, exe.desc); err != nil {
			return "", "", err
		}
		if exe.ld != nil {
			gui = out
		} else {
			cli = out
		}
	}
	return gui, cli, nil
}

// winres is go-winres's description of the resources.
func winres(fileVersion, productVersion, name, desc, year string) map[string]any {
	return map[string]any{
		"RT_GROUP_ICON": map[string]any{"APP": map[string]any{"0000": "icon.ico"}},
		"RT_MANIFEST": map[string]any{"#1": map[string]any{"0409": map[string]any{
			"identity":                 map[string]string{"name": "smtpshim", "version": fileVersion},
			"description":              desc,
			"minimum-os":               "win7",
			"execution-level":          "as invoker",
			"dpi-awareness":            "per monitor v2",
			"long-path-aware":          true,
			"use-common-controls-v6":   true,
			"disable-theming":          false,
			"ui-access":                false,
			"auto-elevate":             false,
			"segment-heap":             false,
			"gdi-scaling":              false,
			"printer-driver-isolation": false,
		}}},
		"RT_VERSION": map[string]any{"#1": map[string]any{"0000": map[string]any{
			"fixed": map[string]string{"file_version": fileVersion, "product_version": fileVersion},
			"info": map[string]any{"0409": map[string]string{
				"CompanyName":      "smtpshim",
				"FileDescription":  desc,
				"FileVersion":      productVersion,
				"InternalName":     strings.TrimSuffix(name, ".exe"),
				"LegalCopyright":   "© " + year + " the smtpshim authors",
				"OriginalFilename": name,
				"ProductName":      "smtpshim",
				"ProductVersion":   productVersion,
			}},
		}}},
	}
}

// sign signs an exe or MSI with osslsigncode when SMTPSHIM_SIGN_PKCS12
// names a PKCS#12 file; its password is read from the file named by
// SMTPSHIM_SIGN_PASSWORD_FILE, never from the command line.
// SMTPSHIM_SIGN_TIMESTAMP is an optional RFC 3161 time-stamp server.
func (b *builder) sign(path, desc string) error {
	p12 := os.Getenv("SMTPSHIM_SIGN_PKCS12")
	if p12 == "" {
		return nil
	}
	args := []string{"sign", "-pkcs12", p12, "-n", desc, "-h", "sha256", "-in", path, "-out", path + ".signed"}
	if pf := os.Getenv("SMTPSHIM_SIGN_PASSWORD_FILE"); pf != "" {
		args = append(args, "-readpass", pf)
	}
	if ts := os.Getenv("SMTPSHIM_SIGN_TIMESTAMP"); ts != "" {
		args = append(args, "-ts", ts)
	}
	cmd := exec.Command("osslsigncode", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("signing %s with osslsigncode: %w\n%s", filepath.Base(path), err, out.String())
	}
	fmt.Println("signed", filepath.Base(path))
	return os.Rename(path+".signed", path)
}

// packageCode is the MSI's package code, which names one exact package:
// derived from everything that goes into it.
func packageCode(wxs []byte, files ...string) (string, error) {
	h := sha1.New()
	h.Write(wxs)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	return guidFor(fmt.Sprintf("package %x", h.Sum(nil))), nil
}

// guidFor derives a stable GUID from a name (a name-based UUID, version 5
// style, over SHA-1): the same version always gets the same ProductCode,
// and the MSI stays reproducible.
func guidFor(name string) string {
	h := sha1.Sum([]byte("smtpshim MSI " + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("{%x-%x-%x-%x-%x}", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16]))
}

// msi builds dist/smtpshim-V-x64.msi with wixl.
func (b *builder) msi() error {
	gui, cli, err := b.windowsExes()
	if err != nil {
		return err
	}
	dir := filepath.Dir(gui)
	data := map[string]string{
		"Version":     b.v.MSI(),
		"FullVersion": b.v.String(),
		"ProductCode": guidFor("product " + b.v.String()),
		"UpgradeCode": upgradeCode,
		// wixl takes source paths relative to the .wxs file.
		"GUI":      filepath.Base(gui),
		"CLI":      filepath.Base(cli),
		"Icon":     "smtpshim.ico",
		"GUIComp":  guidFor("component smtpshim.exe"),
		"CLIComp":  guidFor("component smtpshim-cli.exe"),
		"MenuComp": guidFor("component Start Menu"),
	}
	var wxs bytes.Buffer
	if err := template.Must(template.New("wxs").Parse(wxsTemplate)).Execute(&wxs, data); err != nil {
		return err
	}
	wxsPath, err := b.write(filepath.Join(dir, "smtpshim.wxs"), wxs.Bytes(), 0o644)
	if err != nil {
		return err
	}
	target := filepath.Join(b.out, fmt.Sprintf("smtpshim-%s-x64.msi", b.v.FileName()))
	// wixl exits 0 after writing a broken MSI unless GLib criticals are
	// fatal; and any warning it prints is treated as an error here.
	//
	// wixl stamps the summary information with the current time and a
	// random package code. For a reproducible MSI it runs under faketime
	// at SOURCE_DATE_EPOCH when faketime is installed, and the package
	// code is then set (msibuild) to one derived from the contents, so a
	// different build of the same version still gets a different code.
	wixl := []string{"wixl", "-a", "x64", "-o", target, wxsPath}
	if ft, err := exec.LookPath("faketime"); err == nil {
		wixl = append([]string{ft, "-f", "@" + b.epoch.Format("2006-01-02 15:04:05")}, wixl...)
	} else {
		fmt.Println("msi: faketime is not installed: the MSI carries the build time and is not reproducible")
	}
	cmd := exec.Command(wixl[0], wixl[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "G_DEBUG=fatal-criticals", "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err = cmd.Run()
	if s := stderr.String(); err != nil || strings.Contains(s, "WARNING") || strings.Contains(s, "CRITICAL") {
		os.Remove(target)
		if err == nil {
			err = errors.New("wixl printed a warning")
		}
		return fmt.Errorf("wixl: %w\n%s", err, s)
	}
	code, err := packageCode(wxs.Bytes(), gui, cli, filepath.Join(dir, "smtpshim.ico"))
	if err != nil {
		return err
	}
	if out, err := exec.Command("msibuild", target, "-s", "smtpshim "+b.v.String(), "smtpshim", "x64;1033", code).CombinedOutput(); err != nil {
		return fmt.Errorf("msibuild: setting the package code: %w\n%s", err, out)
	}
	if err := b.sign(target, "smtpshim "+b.v.String()); err != nil {
		return err
	}
	fmt.Println("wrote", target)
	return nil
}

// The MSI: per machine, 64-bit, no dialogs (wixl has no WixUI; msiexec's
// basic UI shows progress). smtpshim.exe and smtpshim-cli.exe go to
// Program Files\smtpshim (wixl cannot write the Environment table, so the
// folder does not join PATH); a Start Menu shortcut starts smtpshim.exe.
// Starting at login is left to smtpshim's own setting (the user's HKCU
// Run value): a machine-wide HKLM Run value would start a second copy
// beside it, and turning the setting off would not stop it.
// The config, spool and keychain entries are per user and are not the
// MSI's: uninstalling leaves them.
const wxsTemplate = `<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="{{.ProductCode}}" Name="smtpshim" Language="1033" Version="{{.Version}}"
           Manufacturer="smtpshim" UpgradeCode="{{.UpgradeCode}}">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perMachine"
             Description="smtpshim {{.FullVersion}}" Comments="Send mail from old mail clients and devices through modern providers" />
    <MajorUpgrade DowngradeErrorMessage="A newer version of smtpshim is already installed. Uninstall it first to install this older one." />
    <Media Id="1" Cabinet="smtpshim.cab" EmbedCab="yes" />

    <Icon Id="smtpshim.ico" SourceFile="{{.Icon}}" />
    <Property Id="ARPPRODUCTICON" Value="smtpshim.ico" />
    <Property Id="ARPNOMODIFY" Value="1" />
    <Property Id="ARPCOMMENTS" Value="Mail relay for old mail clients and devices" />

    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="INSTALLDIR" Name="smtpshim">
          <Component Id="SmtpshimExe" Guid="{{.GUIComp}}" Win64="yes">
            <File Id="smtpshim.exe" Name="smtpshim.exe" Source="{{.GUI}}" KeyPath="yes" />
          </Component>
          <Component Id="SmtpshimCli" Guid="{{.CLIComp}}" Win64="yes">
            <File Id="smtpshim_cli.exe" Name="smtpshim-cli.exe" Source="{{.CLI}}" KeyPath="yes" />
          </Component>
        </Directory>
      </Directory>
      <Directory Id="ProgramMenuFolder">
        <Component Id="StartMenuShortcut" Guid="{{.MenuComp}}" Win64="yes">
          <Shortcut Id="smtpshimShortcut" Name="smtpshim" Description="Mail relay for old mail clients and devices"
                    Target="[INSTALLDIR]smtpshim.exe" WorkingDirectory="INSTALLDIR" Icon="smtpshim.ico" />
          <RegistryValue Root="HKLM" Key="Software\smtpshim" Name="StartMenuShortcut" Type="integer" Value="1" KeyPath="yes" />
        </Component>
      </Directory>
    </Directory>

    <Feature Id="Main" Title="smtpshim" Level="1">
      <ComponentRef Id="SmtpshimExe" />
      <ComponentRef Id="SmtpshimCli" />
      <ComponentRef Id="StartMenuShortcut" />
    </Feature>
  </Product>
</Wix>
`
