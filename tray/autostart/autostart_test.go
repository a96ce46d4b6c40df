package autostart

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestPlistRunsTheProgramAtLoad(t *testing.T) {
	b := plist([]string{"/Applications/smtp shim.app/Contents/MacOS/smtpshim", "a&b<c", AtLoginFlag})
	var doc struct {
		Dict struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, b)
	}
	s := string(b)
	for _, want := range []string{
		"<key>Label</key>\n\t<string>org.smtpshim.smtpshim</string>",
		"<string>/Applications/smtp shim.app/Contents/MacOS/smtpshim</string>",
		"<string>a&amp;b&lt;c</string>",
		"<string>--at-login</string>",
		"<key>RunAtLoad</key>\n\t<true/>",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("plist lacks %q:\n%s", want, s)
		}
	}
}

func TestRunValueQuotesAsWindowsReadsIt(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{`C:\Program Files\smtpshim\smtpshim.exe`, AtLoginFlag}, `"C:\Program Files\smtpshim\smtpshim.exe" --at-login`},
		{[]string{`C:\smtpshim\smtpshim.exe`, AtLoginFlag}, `C:\smtpshim\smtpshim.exe --at-login`},
		{[]string{`C:\a b\`, `say "hi"`}, `"C:\a b\\" "say \"hi\""`},
	} {
		if got := runValue(tc.argv); got != tc.want {
			t.Errorf("runValue(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}

func TestDesktopEntryQuotesExec(t *testing.T) {
	b := string(desktopEntry([]string{"/opt/smtp shim/bin/smtpshim", "100%", AtLoginFlag}))
	if !strings.Contains(b, `Exec="/opt/smtp shim/bin/smtpshim" 100%% --at-login`+"\n") {
		t.Errorf("Exec line wrong:\n%s", b)
	}
	for _, want := range []string{"[Desktop Entry]\n", "Type=Application\n", "Name=smtpshim\n"} {
		if !strings.Contains(b, want) {
			t.Errorf("lacks %q", want)
		}
	}
	if got := desktopQuote(`/a "b"/$x\y`); got != `"/a \\"b\\"/\\$x\\\\y"` {
		t.Errorf("desktopQuote = %s", got)
	}
}
