package shim_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
)

// quotedPayloads are quoted local parts that, with the quotes removed by
// go-smtp and the address written back raw, would end the path early and
// add parameters of the attacker's choosing on the provider's wire.
var quotedPayloads = []struct {
	name, addr string
	wire       []string // must never reach the provider
}{
	{"sender with a parameter", `"bob@other.com> X="@example.org`, []string{"other.com", "X="}},
	{"sender with ENVID", `"ceo@bank.example> ENVID=x"@example.org`, []string{"bank.example", "ENVID"}},
	{"space", `"a b"@example.org`, []string{"a b@"}},
	{"at sign", `"a@b"@example.org`, []string{"a@b@"}},
	{"angle bracket", `"x>"@example.org`, []string{"x>"}},
	{"backslash", `"x\\y"@example.org`, []string{`x\y`}},
}

// TestQuotedLocalPartsRefused: neither MAIL FROM nor RCPT TO with a local
// part that needs quoting gets past the relay, and nothing of it reaches
// the provider.
func TestQuotedLocalPartsRefused(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	for _, p := range quotedPayloads {
		t.Run("MAIL "+p.name, func(t *testing.T) {
			raw := len(r.sim.RawInput())
			cl := rig.Dial(t, r.addr)
			cl.EHLO()
			cl.Do("MAIL FROM:<"+p.addr+">", 501, "5.1.7")
			cl.Do("RCPT TO:<"+bob+">", 502, "5.5.1") // go-smtp: no sender yet
			cl.Do("QUIT", 221, "")
			noneOnWire(t, r.sim.RawInput()[raw:], append(p.wire, "MAIL FROM"))
			r.healthy(t)
		})
		t.Run("RCPT "+p.name, func(t *testing.T) {
			raw, msgs := len(r.sim.RawInput()), len(r.sim.Messages())
			rcpt := strings.Replace(p.addr, "@example.org", "@example.net", 1)
			cl := rig.Dial(t, r.addr)
			cl.EHLO()
			cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
			cl.Do("RCPT TO:<"+rcpt+">", 501, "5.1.3")
			cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
			cl.Expect(cl.Data("Subject: quoted\r\n\r\nonly bob"), 250, "2.0.0")
			cl.Do("QUIT", 221, "")
			got := r.sim.Messages()[msgs:]
			if len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != bob {
				t.Fatalf("the provider got %+v, want one message to bob only", got)
			}
			noneOnWire(t, r.sim.RawInput()[raw:], p.wire)
			r.healthy(t)
		})
	}
}

func noneOnWire(t *testing.T, sent []byte, bad []string) {
	t.Helper()
	for _, b := range bad {
		if bytes.Contains(sent, []byte(b)) {
			t.Fatalf("%q reached the provider: %q", b, sent)
		}
	}
}

// TestEnvelopeSpellings: a trailing dot and an address without a domain
// are refused with a reason; ASCII case is folded, Unicode case is not.
func TestEnvelopeSpellings(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	if rp := cl.Do("MAIL FROM:<alice@example.com.>", 501, "5.1.7"); !strings.Contains(rp.Text, "trailing dot") {
		t.Fatalf("the refusal does not explain: %q", rp.Text)
	}
	cl.Do("MAIL FROM:<alice>", 501, "") // go-smtp's own parser refuses it
	// "alİce" is not alice: with no account for example.com's other
	// senders, it is refused rather than sent on alice's login.
	cl.Do("MAIL FROM:<alİce@example.com>", 550, "5.7.1")
	cl.Do("MAIL FROM:<ALICE@EXAMPLE.COM>", 250, "2.0.0")
	cl.Do("RCPT TO:<bob>", 501, "") // go-smtp's own parser refuses it
	cl.Do("RCPT TO:<bob@example.net.>", 501, "5.1.3")
	cl.Do("QUIT", 221, "")
	r.healthy(t)
}

// TestNoCurrentSender: after a refused MAIL, go-smtp still counts a sender
// as given; RCPT and DATA must be refused, not run without one.
func TestNoCurrentSender(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
	cl.Do("MAIL FROM:<nobody@unknown.test>", 550, "5.7.1")
	cl.Do("RCPT TO:<"+bob+">", 503, "5.5.1")
	cl.Do("QUIT", 221, "")

	cl = rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	cl.Do("MAIL FROM:<nobody@unknown.test>", 550, "5.7.1")
	// go-smtp answers 354 before the session sees DATA.
	cl.Do("DATA", 354, "")
	cl.Write("Subject: no sender\r\n\r\nbody\r\n.\r\n")
	cl.Expect(cl.MustRead(), 503, "5.5.1")
	cl.Do("RSET", 250, "")
	cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	cl.Do("MAIL FROM:<nobody@unknown.test>", 550, "5.7.1")
	cl.Write("BDAT 5 LAST\r\nhello")
	cl.Expect(cl.MustRead(), 503, "5.5.1")
	cl.Do("QUIT", 221, "")
	if n := len(r.sim.Messages()); n != 0 {
		t.Fatalf("%d messages reached the provider", n)
	}
	r.healthy(t)
}

// TestFreeSpaceFloor: below min_free_space new mail gets 452 4.3.1 and
// nothing goes upstream; above it mail flows.
func TestFreeSpaceFloor(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) { c.MinFreeSpace = 1 << 62 }})
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	if rp := cl.Do("MAIL FROM:<"+alice+">", 452, "4.3.1"); !strings.Contains(rp.Text, "disk is nearly full") {
		t.Fatalf("the refusal does not say why: %q", rp.Text)
	}
	cl.Do("QUIT", 221, "")
	if n := len(r.sim.Messages()); n != 0 {
		t.Fatalf("%d messages reached the provider", n)
	}
	ok := startHostile(t, hostileOpts{cfg: func(c *config.Config) { c.MinFreeSpace = 1 << 20 }})
	ok.healthy(t)
}

// TestInternalErrorsStayInTheLog: a password_command that fails with
// details of the user's files is queued; the client hears general words
// and the queue ID, never the command's output.
func TestInternalErrorsStayInTheLog(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) {
		c.Accounts[0].PasswordCommand = "echo 'gpg: decryption failed for /home/alice/.password-store/mail.gpg' >&2; exit 2"
	}})
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	rp := cl.Expect(cl.Data("Subject: internal\r\n\r\nbody"), 250, "2.0.0")
	cl.Do("QUIT", 221, "")
	for _, leak := range []string{"gpg", ".password-store", "password_command", "exit status"} {
		if strings.Contains(rp.Text, leak) {
			t.Fatalf("%q reached the client: %q", leak, rp.Text)
		}
	}
	if !strings.Contains(rp.Text, "queued as ") || !strings.Contains(rp.Text, "could not get the account's password") {
		t.Fatalf("the reply does not say what happened: %q", rp.Text)
	}
	r.healthy(t)
}

func TestPublicReasonOfAnUnreachableProvider(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) {
		c.Accounts[0].Server = freeAddr(t) // nothing listens there
	}})
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	rp := cl.Expect(cl.Data("Subject: down\r\n\r\nbody"), 250, "2.0.0")
	if !strings.Contains(rp.Text, "the provider could not be reached (connection refused)") || strings.Contains(rp.Text, "127.0.0.1") {
		t.Fatalf("reply %q", rp.Text)
	}
}
