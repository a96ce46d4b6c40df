//go:build realpeer

package e2e

import (
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// TestQuotedAddressesNeverReachPostfix: a quoted local part that would end
// the path early and inject parameters (MAIL FROM and RCPT TO) is refused
// by the relay. Real Postfix behind it never hears of the forged sender or
// the injected recipient, and a proper message still goes through on the
// domain account.
func TestQuotedAddressesNeverReachPostfix(t *testing.T) {
	t.Parallel()
	p := realpeer.StartPostfix(t, map[string]string{"relay@example.org": "relay-quoted-pw"})
	c := newConfig(t, "",
		account{Domain: "example.org", Username: "relay@example.org", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: "relay-quoted-pw"})
	r := startRelay(t, c)
	u := uniq()
	forged := "ceo-" + u + "@bank.example"
	victim := "victim-" + u + "@example.net"

	cl := dialSMTP(t, r.Addr)
	cl.expect("EHLO oldclient", 250)
	for _, mail := range []string{
		`MAIL FROM:<"` + forged + `> ENVID=x"@example.org>`,
		`MAIL FROM:<"` + forged + `> X="@example.org>`,
		`MAIL FROM:<"` + forged + `"@example.org>`,
	} {
		if rep := cl.cmd(mail); rep.Code != 501 || !strings.HasPrefix(rep.LastText(), "5.1.7") {
			t.Errorf("%s: got %s, want 501 5.1.7", mail, rep)
		}
	}
	cl.expect("MAIL FROM:<sender-"+u+"@example.org>", 250)
	for _, rcpt := range []string{
		`RCPT TO:<"` + victim + `> NOTIFY=NEVER"@example.net>`,
		`RCPT TO:<"` + victim + `> ORCPT=rfc822;x"@example.net>`,
		`RCPT TO:<"` + victim + `"@example.net>`,
	} {
		if rep := cl.cmd(rcpt); rep.Code != 501 || !strings.HasPrefix(rep.LastText(), "5.1.3") {
			t.Errorf("%s: got %s, want 501 5.1.3", rcpt, rep)
		}
	}
	to := "bob-" + u + "@example.net"
	cl.expect("RCPT TO:<"+to+">", 250)
	marker := "quoted-" + u
	if rep := cl.data(message("sender-"+u+"@example.org", to, marker)); rep.Code != 250 {
		t.Fatalf("the proper message: %s", rep)
	}
	cl.cmd("QUIT")

	m := waitMessage(t, p, to, marker)
	if !strings.Contains(string(m.Raw), "Return-Path: <sender-"+u+"@example.org>") {
		t.Fatalf("the proper message has the wrong Return-Path:\n%s", m.Raw)
	}
	// Postfix logs every sender and recipient it is given, accepted or
	// refused: neither the forged sender nor the victim may be there.
	log := p.Log()
	for _, bad := range []string{forged, victim} {
		if strings.Contains(log, bad) {
			t.Fatalf("%s reached Postfix:\n%s", bad, log)
		}
	}
	if msgs := p.Messages(victim); len(msgs) != 0 {
		t.Fatalf("%d messages delivered to %s", len(msgs), victim)
	}
}
