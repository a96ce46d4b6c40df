package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A sender that is neither an address nor @domain is refused for what it
// is, before any question about the server, and nothing is written.
func TestAccountAddRefusesWhatIsNotAnAddressOrDomain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	for _, who := range []string{"bob", "bob@", "@", "@exa mple.com"} {
		var errOut bytes.Buffer
		a := &app{configPath: path, stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errOut}
		code := a.run([]string{"account", "add", who})
		if code != exUsage || strings.Contains(errOut.String(), "--server") ||
			!strings.Contains(errOut.String(), "is not an email address like you@example.com") && !strings.Contains(errOut.String(), "is not a domain name like example.com") {
			t.Errorf("account add %q: %d %q", who, code, errOut.String())
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a config file was written: %v", err)
	}
}
