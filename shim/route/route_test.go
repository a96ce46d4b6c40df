package route

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/addr"
	"github.com/smtpshim/smtpshim/shim/config"
)

// testAccounts holds one of each kind of account the table must tell apart.
func testAccounts() []config.Account {
	return []config.Account{
		{Address: "alice@example.com", Server: "smtp.example.com:587"},                           // 0
		{Domain: "example.com", Username: "relay@example.com", Server: "smtp.example.com:587"},   // 1
		{Domain: "Example.NET.", Username: "relay@example.net", Server: "smtp.example.net:587"},  // 2: trailing dot, mixed case
		{Address: "Carol@Only.Example", Server: "smtp.only.example:587"},                         // 3: no domain account for only.example
		{Domain: "Bücher.example", Username: "relay@bücher.example", Server: "smtp.example:587"}, // 4: IDN
	}
}

func TestLookup(t *testing.T) {
	accounts := testAccounts()
	tab := New(accounts)
	if got := tab.Len(); got != len(accounts) {
		t.Fatalf("Len() = %d, want %d", got, len(accounts))
	}
	tests := []struct {
		name   string
		sender string
		want   int // index into accounts; -1 for NoAccountError, -2 for ErrNullSender, -3 for a syntax error
	}{
		{"exact address wins over domain", "alice@example.com", 0},
		{"address case-insensitive", "ALICE@Example.COM", 0},
		{"address with trailing dot in domain is refused", "alice@example.com.", -3},
		{"address account written in mixed case", "carol@only.example", 3},
		{"domain fallback", "bob@example.com", 1},
		{"domain fallback case-insensitive", "BOB@EXAMPLE.COM", 1},
		{"domain fallback with trailing dot in sender is refused", "bob@example.com.", -3},
		{"domain account written with trailing dot", "x@example.net", 2},
		{"domain account written with trailing dot, sender too", "X@Example.Net.", -3},
		{"domain account written with trailing dot, sender in capitals", "X@EXAMPLE.NET", 2},
		{"Unicode case folding does not reach an address account", "alİce@example.com", 1},
		{"Kelvin sign is not k", "\u212aarol@only.example", -1},
		{"IDN domain in Unicode", "x@bücher.example", 4},
		{"IDN domain in ASCII", "Y@XN--BCHER-KVA.example", 4},
		{"subdomain does not match parent domain", "x@sub.example.com", -1},
		{"parent domain does not match", "x@com", -1},
		{"address account does not serve its domain", "dave@only.example", -1},
		{"unknown domain", "nobody@unknown.test", -1},
		{"local part is not a domain", "example.com@unknown.test", -1},
		{"two @ are refused", "alice@example.com@evil.test", -3},
		{"quoted local part as go-smtp hands it on", "bob@other.com> X=@example.com", -3},
		{"no @ at all", "postmaster", -3},
		{"null sender", "", -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tab.Lookup(tt.sender)
			switch tt.want {
			case -2:
				if !errors.Is(err, ErrNullSender) || a != nil {
					t.Fatalf("Lookup(%q) = %+v, %v; want nil, ErrNullSender", tt.sender, a, err)
				}
			case -3:
				var ae *addr.Error
				if !errors.As(err, &ae) || a != nil {
					t.Fatalf("Lookup(%q) = %+v, %v; want nil, *addr.Error", tt.sender, a, err)
				}
			case -1:
				var nae *NoAccountError
				if !errors.As(err, &nae) || a != nil {
					t.Fatalf("Lookup(%q) = %+v, %v; want nil, *NoAccountError", tt.sender, a, err)
				}
				if nae.Sender != tt.sender {
					t.Errorf("NoAccountError.Sender = %q, want %q", nae.Sender, tt.sender)
				}
			default:
				if err != nil {
					t.Fatalf("Lookup(%q) error: %v", tt.sender, err)
				}
				// New keeps pointers into the caller's slice.
				if a != &accounts[tt.want] {
					t.Errorf("Lookup(%q) = %+v, want account %d %+v", tt.sender, a, tt.want, accounts[tt.want])
				}
			}
		})
	}
}

func TestNoAccountErrorText(t *testing.T) {
	tests := []struct {
		sender string
		want   []string
	}{
		{"Nobody@Unknown.test", []string{"<Nobody@Unknown.test>", `"smtpshim account add Nobody@Unknown.test"`, "@Unknown.test"}},
		{"x@sub.example.com", []string{"<x@sub.example.com>", `"smtpshim account add x@sub.example.com"`, "@sub.example.com"}},
	}
	tab := New(testAccounts())
	for _, tt := range tests {
		t.Run(tt.sender, func(t *testing.T) {
			_, err := tab.Lookup(tt.sender)
			if err == nil {
				t.Fatalf("Lookup(%q) succeeded, want an error", tt.sender)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEmptyTables(t *testing.T) {
	tests := []struct {
		name string
		tab  *Table
	}{
		{"zero value", &Table{}},
		{"no accounts", New(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := tt.tab.Len(); n != 0 {
				t.Errorf("Len() = %d, want 0", n)
			}
			var nae *NoAccountError
			if _, err := tt.tab.Lookup("alice@example.com"); !errors.As(err, &nae) {
				t.Errorf("Lookup = %v, want *NoAccountError", err)
			}
			if _, err := tt.tab.Lookup(""); !errors.Is(err, ErrNullSender) {
				t.Errorf("Lookup(\"\") = %v, want ErrNullSender", err)
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	// A table of realistic size: a few dozen accounts of both kinds.
	accounts := testAccounts()
	for i := range 50 {
		accounts = append(accounts,
			config.Account{Address: fmt.Sprintf("user%d@corp.example", i), Server: "smtp.corp.example:587"},
			config.Account{Domain: fmt.Sprintf("d%d.example", i), Username: "u", Server: "smtp.example:587"})
	}
	tab := New(accounts)
	for _, bm := range []struct {
		name, sender string
		wantErr      bool
	}{
		{"address-hit", "Alice@Example.com", false},
		{"domain-hit", "bob@example.com", false},
		{"miss", "nobody@unknown.test", true},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, err := tab.Lookup(bm.sender)
				if (err != nil) != bm.wantErr {
					b.Fatalf("Lookup(%q) error = %v, want error %v", bm.sender, err, bm.wantErr)
				}
			}
		})
	}
}
