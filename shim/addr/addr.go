// Package addr checks and normalises envelope addresses (the reverse-path
// of MAIL FROM and the forward-path of RCPT TO) before anything routes on
// them or writes them to a provider.
//
// go-smtp's server removes the quotes of a quoted local part, and its
// client writes an address back raw between < and >. An address such as
// "bob@other.com> X="@example.org would therefore be routed on its last
// domain and then reach the provider as a different sender followed by
// injected MAIL parameters. Like most providers, smtpshim refuses every
// local part that would need quoting instead of re-quoting it: only a
// dot-atom (RFC 5321 section 4.1.2, with RFC 6531's UTF-8) gets through,
// with exactly one "@" and a domain that is a host name or an address
// literal.
//
// Matching is by Key: the local part with ASCII letters folded (never
// Unicode case folding, which maps "İ" to "i"), and the domain in its
// IDNA ASCII form without a trailing dot.
package addr

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// RFC 5321 section 4.5.3.1 limits.
const (
	maxLocal = 64
	maxPath  = 254
)

// Error says why an address was refused, in words for the person who
// configured the client.
type Error struct {
	Addr   string
	Reason string
}

// Error names the address and the reason.
func (e *Error) Error() string {
	return fmt.Sprintf("<%s> %s", printable(e.Addr), e.Reason)
}

// Address is a checked envelope address.
type Address struct {
	// Local is the local part as the client wrote it: providers may
	// treat its case as significant, so it is passed on unchanged.
	Local string
	// Domain is the domain as the client wrote it, without a trailing
	// dot (refused anyway) and in its original script.
	Domain string
	// ASCIIDomain is Domain in lower-case IDNA A-label form, or the
	// address literal as written.
	ASCIIDomain string
}

// String is the address as it goes to the provider.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Key is the form used to match accounts and count rate limits.
func (a Address) Key() string { return FoldASCII(a.Local) + "@" + a.ASCIIDomain }

// Parse checks s, an address without angle brackets, as a client sent it.
func Parse(s string) (Address, error) {
	bad := func(reason string) (Address, error) { return Address{}, &Error{Addr: s, Reason: reason} }
	if s == "" {
		return bad("is empty")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("contains a control character")
	}
	if !utf8.ValidString(s) {
		return bad("is not valid UTF-8")
	}
	if len(s) > maxPath {
		return bad(fmt.Sprintf("is longer than %d characters", maxPath))
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return bad("has no domain: write the full address, e.g. " + printable(s) + "@example.com")
	}
	if strings.Count(s, "@") > 1 {
		return bad("contains more than one @: quoted local parts are not accepted")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != "" {
		return bad(err)
	}
	ascii, reason := checkDomain(domain)
	if reason != "" {
		return bad(reason)
	}
	return Address{Local: local, Domain: domain, ASCIIDomain: ascii}, nil
}

// Key parses s and returns its matching key.
func Key(s string) (string, error) {
	a, err := Parse(s)
	if err != nil {
		return "", err
	}
	return a.Key(), nil
}

// atext is RFC 5322's atom text, less the dot.
func atext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= 0x80:
		return true // RFC 6531 UTF-8; control characters are refused earlier
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

func checkLocal(l string) string {
	switch {
	case l == "":
		return "has an empty local part (nothing before the @)"
	case len(l) > maxLocal:
		return fmt.Sprintf("has a local part longer than %d characters", maxLocal)
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return "has a local part with a leading, trailing or double dot"
	}
	for _, r := range l {
		if r != '.' && !atext(r) {
			return fmt.Sprintf("has %s in its local part: addresses that need quoting are not accepted", char(r))
		}
	}
	return ""
}

// checkDomain returns the matching form of a domain, or why it is refused.
func checkDomain(d string) (string, string) {
	switch {
	case d == "":
		return "", "has no domain after the @"
	case strings.HasSuffix(d, "."):
		return "", "has a domain ending in a dot: leave the trailing dot out"
	case d[0] == '[':
		if lit, ok := addressLiteral(d); ok {
			return lit, ""
		}
		return "", "has a malformed address literal as its domain"
	}
	for _, r := range d {
		if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return "", fmt.Sprintf("has %s in its domain", char(r))
		}
	}
	ascii, err := Domain(d)
	if err != nil {
		return "", "has a domain that is not a valid host name"
	}
	return ascii, ""
}

// addressLiteral accepts [192.0.2.1] and [IPv6:2001:db8::1].
func addressLiteral(d string) (string, bool) {
	inner, ok := strings.CutSuffix(d[1:], "]")
	if !ok {
		return "", false
	}
	if v6, isV6 := cutPrefixFold(inner, "IPv6:"); isV6 {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		return "[IPv6:" + a.String() + "]", true
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return "", false
	}
	return "[" + a.String() + "]", true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// idnaProfile maps and checks domains as a resolver would (UTS #46
// lookup), so "bücher.example" and "xn--bcher-kva.example" are one domain.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.VerifyDNSLength(true))

// Domain returns d in lower-case IDNA ASCII form, for matching; a trailing
// dot is removed.
func Domain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if isASCII(d) {
		// Plain host names need no mapping beyond ASCII case; checking
		// them here also keeps the hot path off the IDNA tables.
		d = FoldASCII(d)
		if !strings.Contains(d, "xn--") {
			if !validHostname(d) {
				return "", fmt.Errorf("%q is not a valid domain name", d)
			}
			return d, nil
		}
	}
	a, err := idnaProfile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid domain name: %w", d, err)
	}
	return a, nil
}

func validHostname(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// FoldASCII lower-cases ASCII letters only.
func FoldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func char(r rune) string {
	if r == ' ' {
		return "a space"
	}
	return fmt.Sprintf("%q", r)
}

// printable is s for a reply or a log line: control characters shown
// escaped, and at most 100 bytes.
func printable(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		q := fmt.Sprintf("%q", s)
		return q[1 : len(q)-1]
	}
	return s
}
