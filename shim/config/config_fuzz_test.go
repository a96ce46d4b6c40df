package config

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to the parser: it must never panic, and
// whatever it accepts must validate and survive a save/parse round trip.
func FuzzParse(f *testing.F) {
	f.Add("listen = [\"127.0.0.1:2525\"]\n[[account]]\naddress = \"a@example.com\"\nserver = \"smtp.example.com:587\"\n")
	f.Add("[[account]]\ndomain = \"example.org\"\nusername = \"u\"\nserver = \"h:465\"\nsecurity = \"tls\"\n")
	f.Add("max_message_size = \"50MB\"\nmax_age = \"5d\"\nsync_wait = \"30s\"\n")
	f.Add("max_message_size = 1048576\nallow_networks = [\"192.168.1.0/24\"]\n")
	f.Add("[[account]]\naddress = \"a@b\"\nserver = \"h:0\"\n")
	f.Add("= broken")
	f.Fuzz(func(t *testing.T, data string) {
		c, err := Parse([]byte(data))
		if err != nil {
			if strings.Contains(err.Error(), "\x00") {
				t.Fatalf("error text carries a NUL: %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		c.SetPath(t.TempDir() + "/c.toml")
		if err := c.Save(); err != nil {
			t.Fatalf("accepted config does not save: %v", err)
		}
		c2, err := Load(c.Path())
		if err != nil {
			t.Fatalf("saved config does not load: %v", err)
		}
		if len(c2.Accounts) != len(c.Accounts) {
			t.Fatalf("round trip changed the accounts: %d != %d", len(c2.Accounts), len(c.Accounts))
		}
	})
}
