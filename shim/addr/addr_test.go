package addr

import (
	"strings"
	"testing"
)

func TestParseRefusesWhatWouldNeedQuoting(t *testing.T) {
	bad := []struct{ in, why string }{
		// What go-smtp hands on after stripping the quotes of
		// "bob@other.com> X="@example.org and its Postfix variant.
		{`bob@other.com> X=@example.org`, "more than one @"},
		{`ceo@bank.example> ENVID=x@example.org`, "more than one @"},
		{`bob X=@example.org`, "a space"},
		{`a"b@example.org`, `'"'`},
		{`a\b@example.org`, `'\\'`},
		{`a<b@example.org`, `'<'`},
		{`a>b@example.org`, `'>'`},
		{`a(b)@example.org`, `'('`},
		{`a[b]@example.org`, `'['`},
		{`a,b@example.org`, `','`},
		{`a;b@example.org`, `';'`},
		{`a:b@example.org`, `':'`},
		{`.alice@example.org`, "dot"},
		{`alice.@example.org`, "dot"},
		{`al..ice@example.org`, "dot"},
		{`alice@example.com.`, "trailing dot"},
		{`alice@exam ple.com`, "a space"},
		{`alice@example.com>x`, `'>'`},
		{`alice`, "no domain"},
		{`alice@`, "no domain"},
		{`@example.com`, "empty local part"},
		{"al\rice@example.com", "control"},
		{"alice@example.com\x00", "control"},
		{"al\xffice@example.com", "UTF-8"},
		{strings.Repeat("a", 65) + "@example.com", "longer than 64"},
		{"a@" + strings.Repeat("b", 250) + ".com", "longer than 254"},
		{"a@[1.2.3]", "address literal"},
		{"a@[IPv6:1.2.3.4]", "address literal"},
		{"a@-bad.example", "not a valid host name"},
		{"a@bad_.example", `'_'`},
	}
	for _, c := range bad {
		if a, err := Parse(c.in); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", c.in, a)
		} else if !strings.Contains(err.Error(), c.why) {
			t.Errorf("Parse(%q): %v, want it to mention %s", c.in, err, c.why)
		}
	}
}

func TestParseKeys(t *testing.T) {
	good := []struct{ in, str, key string }{
		{"alice@example.com", "alice@example.com", "alice@example.com"},
		{"ALICE@EXAMPLE.COM", "ALICE@EXAMPLE.COM", "alice@example.com"},
		{"first.last+tag@Example.Org", "first.last+tag@Example.Org", "first.last+tag@example.org"},
		{"o'brien!#$%&*/=?^_`{|}~-@example.org", "o'brien!#$%&*/=?^_`{|}~-@example.org", "o'brien!#$%&*/=?^_`{|}~-@example.org"},
		// ASCII folding only: a Turkish dotted capital I stays itself.
		{"alİce@example.com", "alİce@example.com", "alİce@example.com"},
		{"ünïcode@bücher.example", "ünïcode@bücher.example", "ünïcode@xn--bcher-kva.example"},
		{"x@BÜCHER.example", "x@BÜCHER.example", "x@xn--bcher-kva.example"},
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{"x@[192.0.2.1]", "x@[192.0.2.1]", "x@[192.0.2.1]"},
		{"x@[ipv6:2001:DB8::1]", "x@[ipv6:2001:DB8::1]", "x@[IPv6:2001:db8::1]"},
	}
	for _, c := range good {
		a, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if a.String() != c.str || a.Key() != c.key {
			t.Errorf("Parse(%q) = %q key %q, want %q key %q", c.in, a.String(), a.Key(), c.str, c.key)
		}
	}
}

func TestDomain(t *testing.T) {
	for in, want := range map[string]string{"Example.COM.": "example.com", "Bücher.example": "xn--bcher-kva.example"} {
		if got, err := Domain(in); err != nil || got != want {
			t.Errorf("Domain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Domain("a b.example"); err == nil {
		t.Error("Domain accepted a space")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"alice@example.com", `bob@other.com> X=@example.org`, "ünï@bücher.example", "x@[IPv6:::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		out := a.String()
		if strings.ContainsAny(out, " <>\"\\()[],;:\r\n\x00") && !strings.HasSuffix(out, "]") {
			t.Fatalf("Parse(%q) accepted %q", s, out)
		}
		if strings.Count(out, "@") != 1 || strings.ContainsAny(a.Local, " <>\"\\()[],;:@") {
			t.Fatalf("Parse(%q) accepted %q", s, out)
		}
		if b, err := Parse(out); err != nil || b.Key() != a.Key() {
			t.Fatalf("round trip of %q: %v", out, err)
		}
	})
}
