package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/addr"
	"github.com/smtpshim/smtpshim/shim/config"
)

// FuzzLookup checks the routing rules for any sender: it never panics, an
// account is returned only for its exact address or its exact domain, and
// everything else is refused.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"alice@example.com", "ALICE@EXAMPLE.COM", "bob@example.org", "x@sub.example.org", "", "@", "a@b@example.org", "evil@example.org.", "eve@example.net\r\n"} {
		f.Add(s)
	}
	accts := []config.Account{
		{Address: "alice@example.com", Server: "h:587"},
		{Domain: "example.org", Username: "u", Server: "h:587"},
	}
	tbl := New(accts)
	f.Fuzz(func(t *testing.T, sender string) {
		a, err := tbl.Lookup(sender)
		if err != nil {
			var na *NoAccountError
			var ae *addr.Error
			if !errors.Is(err, ErrNullSender) && !errors.As(err, &na) && !errors.As(err, &ae) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		s := strings.ToLower(strings.TrimSpace(sender))
		switch a.Key() {
		case "alice@example.com":
			if s != "alice@example.com" {
				t.Fatalf("%q routed to alice's account", sender)
			}
		case "@example.org":
			at := strings.LastIndexByte(s, '@')
			if at < 0 || strings.TrimSuffix(s[at+1:], ".") != "example.org" {
				t.Fatalf("%q routed to the example.org domain account", sender)
			}
		default:
			t.Fatalf("unknown account %q", a.Key())
		}
	})
}
