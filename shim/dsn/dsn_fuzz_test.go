package dsn

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzBuild checks the promises Build makes whatever the upstream said and
// whatever the queued message contains: no panic, a parseable
// multipart/report with the three parts, CRLF-only lines of at most 998
// octets, a 7-bit delivery-status part, and no header a field smuggled in.
func FuzzBuild(f *testing.F) {
	f.Add("laptop.example.com", "MAILER-DAEMON@example.com", "alice@example.com", "QQ314159",
		"The provider refused the message permanently.", "check the address",
		"bob@example.net", "failed", "5.1.1", "smtp.office365.com", "550 5.1.1 User unknown", "<id@host>",
		[]byte(testOriginal), int64(1709285400), uint16(0))
	f.Add("", "", "", "", "", "", "", "", "", "", "", "", []byte(""), int64(0), uint16(0))
	f.Add("h\r\nX-Injected: 1", "a\nBcc: b@c", "<x@y>\r\n\r\nbody", "\x00", "line1\nline2", "\r",
		"jörg@exämple.de", "DELAYED", "4.4.7", "mx\x00.example", "451 4.4.7 \xff\xfe timeout\r\n451 again", "<a<b>",
		[]byte("Subject: a\rb\x00\nX: \xc3\xa9\n\nbody"), int64(-1), uint16(3))
	// Long values come from the grow factor, not long seeds: the fuzzer
	// minimises every new input with a pass quadratic in its size, so
	// kilobyte-long arguments would stall it for the whole run.
	f.Add("x", "y", "z", "", "", "", "b@c", "failed", "5.1.1", "", "550 5.7.1 dddddd", "",
		[]byte("X-Long: zzzzzz"), int64(0), uint16(120))
	f.Add("mta", "from@a", "to@b", "envid", "", "", "rcpt@c", "failed", "5.1.1", "remote", "", "<id@x>",
		[]byte("X: y\r\n"), int64(1<<40), uint16(60))
	f.Add("host", "", "a@b", "", "", "", "c@d", "relayed", "2.0.0", "", "", "",
		[]byte("--=_smtpshim_\r\nContent-Type: text/plain\r\n\r\n"), int64(1), uint16(0))

	f.Fuzz(func(t *testing.T, mta, from, to, envID, reason, hint, addr, action, status, remote, diag, msgID string,
		original []byte, unix int64, grow uint16) {
		// Repeating every value up to 250 times reaches the 998-octet line
		// limit and the value caps from inputs small enough to minimise.
		if n := int(grow % 250); n > 1 {
			for _, p := range []*string{&mta, &from, &to, &envID, &reason, &hint, &addr, &action, &status, &remote, &diag, &msgID} {
				*p = strings.Repeat(*p, n)
			}
			original = bytes.Repeat(original, n)
		}
		r := Report{
			ReportingMTA: mta, From: from, To: to, EnvelopeID: envID,
			ArrivalDate: time.Unix(unix%(1<<36), 0).UTC(),
			Reason:      reason, Hint: hint, MessageID: msgID,
			Date: time.Unix(1709285460, 0).UTC(),
			Recipients: []Recipient{
				{Address: addr, Action: action, Status: status, RemoteMTA: remote, Diagnostic: diag},
				// A second block built from the same strings shuffled, so
				// every field also passes through every other position.
				{Address: diag, Action: status, Status: action, RemoteMTA: addr, Diagnostic: remote},
			},
		}
		var out bytes.Buffer
		if err := Build(&out, r, bytes.NewReader(original)); err != nil {
			t.Fatalf("Build: %v", err)
		}
		checkLines(t, out.Bytes())
		p := parseDSN(t, out.Bytes())

		wantTop := map[string]bool{
			"From": true, "To": true, "Subject": true, "Date": true, "Message-Id": true,
			"Auto-Submitted": true, "Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
		}
		for k, v := range p.header {
			if !wantTop[k] || len(v) != 1 {
				t.Fatalf("unexpected top-level header %q: %q", k, v)
			}
		}
		for i, part := range p.parts {
			for k := range part.header {
				switch k {
				case "Content-Type", "Content-Transfer-Encoding", "Content-Description":
				default:
					t.Fatalf("part %d has unexpected header %q", i+1, k)
				}
			}
		}
		wantMsg := map[string]bool{"Reporting-Mta": true, "Original-Envelope-Id": true, "Arrival-Date": true}
		for k := range p.perMessage {
			if !wantMsg[k] {
				t.Fatalf("unexpected per-message field %q", k)
			}
		}
		if len(p.perRcpt) != len(r.Recipients) {
			t.Fatalf("%d per-recipient blocks, want %d", len(p.perRcpt), len(r.Recipients))
		}
		wantRcpt := map[string]bool{"Final-Recipient": true, "Action": true, "Status": true, "Remote-Mta": true, "Diagnostic-Code": true}
		for i, h := range p.perRcpt {
			for k, v := range h {
				if !wantRcpt[k] || len(v) != 1 {
					t.Fatalf("recipient %d: unexpected field %q: %q", i+1, k, v)
				}
			}
			if !statusRE.MatchString(h.Get("Status")) {
				t.Fatalf("recipient %d: Status %q is not an enhanced code", i+1, h.Get("Status"))
			}
		}
		// The copied headers must stay a header section on their own: if
		// they did not, the original's body or a forged part got in.
		if n := len(p.parts[2].raw); n > maxHeaderBytes {
			t.Fatalf("headers part is %d bytes, over the cap", n)
		}
		if bytes.Contains(p.parts[2].raw, []byte("\r\n\r\n")) {
			t.Fatalf("headers part contains an empty line")
		}
	})
}
