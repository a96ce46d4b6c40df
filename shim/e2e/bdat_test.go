//go:build realpeer

package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// TestBDATToPostfix relays through a Postfix that offers CHUNKING, as
// Postfix, Gmail and Microsoft 365 do by default: smtpshim sends MAIL FROM
// with the first RCPT TO (PIPELINING) and the body as BDAT chunks, with
// no dot-stuffing. Postfix must deliver every message byte for byte:
// dot lines, bare line endings (normalized), a body of many chunks, and a
// refused recipient beside an accepted one.
func TestBDATToPostfix(t *testing.T) {
	t.Parallel()
	p := realpeer.StartPostfixChunking(t, relayUsers)
	c := newConfig(t, "",
		account{Address: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: relayUsers["alice@example.com"]})
	r := startRelay(t, c)

	// Postfix words its reply to BDAT LAST with the size: "Ok: 183 bytes
	// queued as ...", and to DATA without it.
	viaBDAT := func(t *testing.T, rep reply) string {
		t.Helper()
		text := rep.LastText()
		i := strings.Index(text, " bytes queued as ")
		if rep.Code != 250 || i < 0 {
			t.Fatalf("end of DATA: %s; want Postfix's reply to BDAT LAST (250 ... N bytes queued as ID)", rep)
		}
		return text[i+len(" bytes queued as "):]
	}

	t.Run("dot-lines-and-bare-line-ends", func(t *testing.T) {
		head := "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: bdat dots\r\nMessage-ID: <bdat-dots@e2e.test>\r\n\r\n"
		sent := head + ".leading dot\r\n..two dots\r\n.\r\nbare LF\nbare CR\rend"
		want := head + ".leading dot\r\n..two dots\r\n.\r\nbare LF\r\nbare CR\r\nend\r\n"
		id := viaBDAT(t, sendMail(t, r.Addr, "alice@example.com", []string{"bob@example.net"}, []byte(sent)))
		m := waitMessage(t, p, "bob@example.net", "bdat-dots@e2e.test")
		sameBytes(t, "delivered message", asSubmitted(t, m), []byte(want))
		if !strings.Contains(string(m.Raw), "with ESMTPSA id "+id+"\n") {
			t.Errorf("queue ID %q from the reply is not in the Received header:\n%s", id, m.Raw)
		}
	})

	t.Run("many-chunks", func(t *testing.T) {
		// About 3 MB: dozens of 64 KB chunks, sent pipelined.
		var body bytes.Buffer
		fmt.Fprintf(&body, "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: bdat big\r\nMessage-ID: <bdat-big@e2e.test>\r\n\r\n")
		for i := 0; body.Len() < 3<<20; i++ {
			fmt.Fprintf(&body, "%07d .%s\r\n", i, strings.Repeat("x", 70))
			if i%1000 == 0 {
				body.WriteString(".\r\n") // a dot line now and then
			}
		}
		viaBDAT(t, sendMail(t, r.Addr, "alice@example.com", []string{"bob@example.net"}, body.Bytes()))
		m := waitMessage(t, p, "bob@example.net", "bdat-big@e2e.test")
		sameBytes(t, "delivered message", asSubmitted(t, m), body.Bytes())
	})

	t.Run("refused-recipient-first", func(t *testing.T) {
		cl := dialSMTP(t, r.Addr)
		defer cl.Close()
		cl.expect("HELO oldclient", 250)
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		// The first RCPT travels with MAIL FROM; Postfix's refusal of it
		// reaches the client unchanged, and the transaction goes on.
		if rep := cl.cmd("RCPT TO:<" + realpeer.RejectAddr + ">"); rep.Code != 550 || !strings.Contains(rep.LastText(), "refused by realpeer test server") {
			t.Fatalf("RCPT of the refused address: %s; want Postfix's 550", rep)
		}
		cl.expect("RCPT TO:<carol@example.net>", 250)
		viaBDAT(t, cl.data(message("alice@example.com", "carol@example.net", "bdat-refused")))
		cl.expect("QUIT", 221)
		waitMessage(t, p, "carol@example.net", "bdat-refused")
	})
}
