package shim_test

// A provider without SMTPUTF8: ASCII mail goes live, a non-ASCII address
// is refused at once rather than queued for retries that cannot succeed.

import (
	"testing"

	"github.com/emersion/go-smtp"
)

// A client that asks for SMTPUTF8 out of habit, with ASCII addresses, is
// delivered live (the flag is not sent upstream); a non-ASCII recipient
// the provider cannot take gets 553 5.6.7 at once instead of being queued
// for days of retries that cannot succeed.
func TestProviderWithoutSMTPUTF8(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	// The simulated provider is go-smtp, which advertises SMTPUTF8 only
	// when EnableSMTPUTF8 is set; upstreamsim never sets it.
	pc, err := smtp.Dial(sim.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Hello("check.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := pc.Extension("SMTPUTF8"); ok {
		t.Fatal("the simulated provider advertises SMTPUTF8; this test needs one that doesn't")
	}
	pc.Close()

	r := startRig(t, sim, rigOptions{})
	utf8 := &smtp.MailOptions{UTF8: true}

	t.Run("ASCII addresses", func(t *testing.T) {
		c := dialClient(t, r.addr)
		defer c.Close()
		if err := c.Mail(simUser, utf8); err != nil {
			t.Fatalf("MAIL FROM ... SMTPUTF8: %v", err)
		}
		if err := c.Rcpt("bob@example.net", nil); err != nil {
			t.Fatalf("RCPT bob: %v", err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatalf("DATA: %v", err)
		}
		body := message("SMTPUTF8 asked, ASCII addresses", 2000)
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
		resp, err := w.CloseWithResponse()
		var s sent
		if err != nil {
			s.err = err
		} else {
			s.text = resp.StatusText
		}
		mustProviderOK(t, s)
		c.Quit()
		if n := messagesWith(sim, body); n != 1 {
			t.Fatalf("the provider got %d copies, want 1", n)
		}
		if n := r.eng.Queue().Len(); n != 0 {
			t.Fatalf("queue length %d, want 0", n)
		}
		if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
			t.Fatalf("spool = %v, want empty", f)
		}
	})

	t.Run("non-ASCII recipient", func(t *testing.T) {
		before := len(sim.Messages())
		c := dialClient(t, r.addr)
		defer c.Close()
		if err := c.Mail(simUser, utf8); err != nil {
			t.Fatalf("MAIL FROM ... SMTPUTF8: %v", err)
		}
		mustSMTPError(t, c.Rcpt("josé@example.net", nil), 553, smtp.EnhancedCode{5, 6, 7}, "")
		if err := c.Reset(); err != nil {
			t.Fatalf("RSET: %v", err)
		}
		c.Quit()
		if n := r.eng.Queue().Len(); n != 0 {
			t.Fatalf("queue length %d, want 0: the recipient can never be delivered", n)
		}
		if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
			t.Fatalf("spool = %v, want empty", f)
		}
		if n := len(sim.Messages()); n != before {
			t.Fatalf("the provider got %d new messages, want 0", n-before)
		}
	})
}
