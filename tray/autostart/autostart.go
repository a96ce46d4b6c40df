// Package autostart starts smtpshim when the user logs in, the way each
// desktop expects: an XDG autostart .desktop file on Linux and the BSDs,
// a LaunchAgent with RunAtLoad on macOS, and a value under the current
// user's Run key on Windows. No administrator rights are needed, and
// turning it off removes exactly what turning it on wrote.
//
// The command started at login carries AtLoginFlag, so smtpshim knows
// not to open any window then.
package autostart

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"strings"
)

// AtLoginFlag marks a start at login.
const AtLoginFlag = "--at-login"

// Entry is one program to start at login.
type Entry struct {
	// Exe is the absolute path of the program.
	Exe string
	// Args follow it; AtLoginFlag is added.
	Args []string
	// Home overrides the user's home (and XDG_CONFIG_HOME) in tests.
	Home string
	// SystemDirs overrides XDG_CONFIG_DIRS (Linux) in tests.
	SystemDirs []string
}

// New returns the entry for the running program.
func New(args ...string) (*Entry, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start at login: where is smtpshim? %w", err)
	}
	return &Entry{Exe: exe, Args: args}, nil
}

func (e *Entry) argv() []string {
	return append(append([]string{e.Exe}, e.Args...), AtLoginFlag)
}

// desktopEntry is the XDG autostart file.
func desktopEntry(argv []string) []byte {
	var exec []string
	for _, a := range argv {
		exec = append(exec, desktopQuote(a))
	}
	return []byte(strings.Join([]string{
		"[Desktop Entry]",
		"Type=Application",
		"Name=smtpshim",
		"Comment=Sends mail from old mail programs and scanners through your provider",
		"Exec=" + strings.Join(exec, " "),
		"Icon=smtpshim",
		"Terminal=false",
		"X-GNOME-Autostart-enabled=true",
		"",
	}, "\n"))
}

// desktopQuote quotes one Exec argument as the Desktop Entry
// Specification says: double quotes around an argument with reserved
// characters, a backslash before ", `, $ and \ inside them, a doubled %,
// and then every backslash doubled again for the string value.
func desktopQuote(a string) string {
	a = strings.ReplaceAll(a, "%", "%%")
	if a != "" && !strings.ContainsAny(a, " \t\n\"'\\><~|&;$*?#()`") {
		return a
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range a {
		if strings.ContainsRune("\"`$\\", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return strings.ReplaceAll(b.String(), `\`, `\\`)
}

// Label is the LaunchAgent's label.
const Label = "org.smtpshim.smtpshim"

// plist is the macOS LaunchAgent.
func plist(argv []string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + Label + `</string>
	<key>ProgramArguments</key>
	<array>
`)
	for _, a := range argv {
		b.WriteString("\t\t<string>")
		xml.EscapeText(&b, []byte(a))
		b.WriteString("</string>\n")
	}
	b.WriteString(`	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<false/>
	<key>ProcessType</key>
	<string>Interactive</string>
	<key>LimitLoadToSessionType</key>
	<string>Aqua</string>
</dict>
</plist>
`)
	return b.Bytes()
}

// RunValueName is the value under HKCU\...\Run.
const RunValueName = "smtpshim"

// runValue is the Windows Run command line: each argument quoted as
// CommandLineToArgvW reads it back.
func runValue(argv []string) string {
	var parts []string
	for _, a := range argv {
		parts = append(parts, windowsQuote(a))
	}
	return strings.Join(parts, " ")
}

func windowsQuote(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"") {
		return a
	}
	return rebuild(a)
}

// rebuild writes a quoted Windows argument: backslashes are literal
// except before a quote, where they must be doubled.
func rebuild(a string) string {
	var b strings.Builder
	b.WriteByte('"')
	n := 0
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch c {
		case '\\':
			n++
			continue
		case '"':
			b.WriteString(strings.Repeat(`\`, 2*n+1))
		default:
			b.WriteString(strings.Repeat(`\`, n))
		}
		n = 0
		b.WriteByte(c)
	}
	b.WriteString(strings.Repeat(`\`, 2*n))
	b.WriteByte('"')
	return b.String()
}
