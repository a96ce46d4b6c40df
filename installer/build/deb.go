package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// maintainer is the Debian Maintainer field; a release sets
// SMTPSHIM_MAINTAINER to a real address.
func maintainer() string {
	if m := os.Getenv("SMTPSHIM_MAINTAINER"); m != "" {
		return m
	}
	return "smtpshim packagers <packages@smtpshim.invalid>"
}

// deb builds dist/smtpshim_V_amd64.deb and the optional sendmail package
// dist/smtpshim-sendmail_V_all.deb with nfpm.
func (b *builder) deb() error {
	bin := filepath.Join(b.work, "linux-amd64", "smtpshim")
	if err := b.goBuild("linux", "amd64", bin, nil); err != nil {
		return err
	}
	hicolor, err := b.icons.Hicolor("smtpshim")
	if err != nil {
		return err
	}
	var icons []fileMap
	for rel, data := range hicolor {
		p, err := b.write(filepath.Join("hicolor", rel), data, 0o644)
		if err != nil {
			return err
		}
		icons = append(icons, fileMap{Src: p, Dst: "/usr/share/icons/hicolor/" + rel})
	}
	changelog, err := b.debChangelog()
	if err != nil {
		return err
	}
	for _, name := range []string{"smtpshim", "smtpshim-sendmail"} {
		p, err := b.write(filepath.Join("deb", name, "changelog.Debian.gz"), changelog, 0o644)
		if err != nil {
			return err
		}
		_ = p
	}
	// Everything nfpm packs gets the source date and a fixed mode.
	for _, rel := range []string{"smtpshim.desktop", "smtpshim-autostart.desktop", "smtpshim.service", "lintian-overrides", "copyright"} {
		data, err := b.asset(filepath.Join("linux", rel))
		if err != nil {
			return err
		}
		data = bytes.ReplaceAll(data, []byte("@YEAR@"), []byte(b.epoch.Format("2006")))
		if _, err := b.write(filepath.Join("deb", rel), data, 0o644); err != nil {
			return err
		}
	}
	sendmailOverrides := []byte("# The sendmail symlinks' manual is smtpshim's: `smtpshim help`.\nsmtpshim-sendmail: no-manual-page\n" +
		"# Built outside the Debian archive: there is no ITP bug to close.\nsmtpshim-sendmail: initial-upload-closes-no-bugs\n")
	if _, err := b.write(filepath.Join("deb", "sendmail-lintian-overrides"), sendmailOverrides, 0o644); err != nil {
		return err
	}
	data := debData{
		Version:    b.v.Debian(),
		Maintainer: maintainer(),
		Bin:        bin,
		Dir:        filepath.Join(b.work, "deb"),
		Icons:      icons,
		MTime:      b.epoch.Format("2006-01-02T15:04:05Z07:00"),
	}
	for _, p := range []struct{ name, tmpl, arch string }{
		{"smtpshim", debMain, "amd64"},
		{"smtpshim-sendmail", debSendmail, "all"},
	} {
		var cfg bytes.Buffer
		if err := template.Must(template.New(p.name).Parse(p.tmpl)).Execute(&cfg, data); err != nil {
			return err
		}
		cfgPath, err := b.write(p.name+".nfpm.yaml", cfg.Bytes(), 0o644)
		if err != nil {
			return err
		}
		target := filepath.Join(b.out, fmt.Sprintf("%s_%s_%s.deb", p.name, b.v.Debian(), p.arch))
		if err := b.tool("nfpm", "package", "--config", cfgPath, "--packager", "deb", "--target", target); err != nil {
			return err
		}
		fmt.Println("wrote", target)
	}
	return nil
}

type fileMap struct{ Src, Dst string }

type debData struct {
	Version, Maintainer, Bin, Dir, MTime string
	Icons                                []fileMap
}

// debChangelog is the package's own changelog.Debian.gz, compressed the
// way dh_compress does it (-9n: no name, no time), so it is reproducible.
func (b *builder) debChangelog() ([]byte, error) {
	var text strings.Builder
	fmt.Fprintf(&text, "smtpshim (%s) unstable; urgency=medium\n\n", b.v.DebianFull())
	fmt.Fprintf(&text, "  * smtpshim %s. The project's own history is in its source.\n\n", b.v)
	fmt.Fprintf(&text, " -- %s  %s\n", maintainer(), b.epoch.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.Write([]byte(text.String()))
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

const debMain = `name: smtpshim
arch: amd64
platform: linux
version: "{{.Version}}"
version_schema: none
release: "1"
section: mail
priority: optional
maintainer: "{{.Maintainer}}"
description: |-
  Mail relay for old mail clients and devices
  smtpshim lets mail clients and devices that cannot do modern SMTP
  (Outlook Express, Eudora, old Thunderbird, scan-to-email printers,
  scripts) send mail through today's providers. It listens on localhost
  without authentication and re-submits each message over verified TLS
  with SMTP AUTH or OAuth2, with the password in the desktop keychain.
homepage: https://smtpshim.invalid/
license: "see /usr/share/doc/smtpshim/copyright"
mtime: "{{.MTime}}"
suggests:
  - gnome-shell-extension-appindicator
contents:
  - src: "{{.Bin}}"
    dst: /usr/bin/smtpshim
    file_info: {mode: 0755}
  - src: "{{.Dir}}/smtpshim.desktop"
    dst: /usr/share/applications/smtpshim.desktop
    file_info: {mode: 0644}
  - src: "{{.Dir}}/smtpshim-autostart.desktop"
    dst: /etc/xdg/autostart/smtpshim.desktop
    type: config
    file_info: {mode: 0644}
  - src: "{{.Dir}}/smtpshim.service"
    dst: /usr/lib/systemd/user/smtpshim.service
    file_info: {mode: 0644}
  - src: "{{.Dir}}/lintian-overrides"
    dst: /usr/share/lintian/overrides/smtpshim
    file_info: {mode: 0644}
  - src: "{{.Dir}}/copyright"
    dst: /usr/share/doc/smtpshim/copyright
    file_info: {mode: 0644}
  - src: "{{.Dir}}/smtpshim/changelog.Debian.gz"
    dst: /usr/share/doc/smtpshim/changelog.Debian.gz
    file_info: {mode: 0644}
{{- range .Icons}}
  - src: "{{.Src}}"
    dst: "{{.Dst}}"
    file_info: {mode: 0644}
{{- end}}
`

// The sendmail links conflict with every MTA, as msmtp-mta's do, so they
// are a package of their own that a user installs on purpose.
const debSendmail = `name: smtpshim-sendmail
arch: all
platform: linux
version: "{{.Version}}"
version_schema: none
release: "1"
section: mail
priority: optional
maintainer: "{{.Maintainer}}"
description: |-
  sendmail command for smtpshim
  Makes /usr/sbin/sendmail and /usr/lib/sendmail run smtpshim's
  sendmail-compatible mode, so scripts and cron jobs on this machine send
  mail through smtpshim. It replaces any other mail transport agent.
homepage: https://smtpshim.invalid/
license: "see /usr/share/doc/smtpshim-sendmail/copyright"
mtime: "{{.MTime}}"
depends:
  - "smtpshim (= {{.Version}}-1)"
provides:
  - mail-transport-agent
conflicts:
  - mail-transport-agent
replaces:
  - mail-transport-agent
contents:
  - src: ../bin/smtpshim
    dst: /usr/sbin/sendmail
    type: symlink
  - src: ../sbin/sendmail
    dst: /usr/lib/sendmail
    type: symlink
  - src: "{{.Dir}}/copyright"
    dst: /usr/share/doc/smtpshim-sendmail/copyright
    file_info: {mode: 0644}
  - src: "{{.Dir}}/smtpshim-sendmail/changelog.Debian.gz"
    dst: /usr/share/doc/smtpshim-sendmail/changelog.Debian.gz
    file_info: {mode: 0644}
  - src: "{{.Dir}}/sendmail-lintian-overrides"
    dst: /usr/share/lintian/overrides/smtpshim-sendmail
    file_info: {mode: 0644}
`
