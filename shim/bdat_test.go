package shim_test

// BDAT (RFC 3030) from local clients: a body still being received when the
// client resets, and chunks that are content, never dot-stuffed.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/internal/rig"
)

// A client sends a BDAT chunk (not LAST), then RSET and a new message
// with DATA. go-smtp runs Data for BDAT in its own goroutine and reads on:
// RSET and MAIL must wait for that Data to end instead of racing it (the
// race detector's report, a panic, or the first body's abort tearing down
// the second message's upstream transaction). The second message gets the
// provider's own 250 and arrives once; the first never arrives.
func TestBDATResetWaitsForBody(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	const rounds = 20
	var bodies [][]byte
	for i := range rounds {
		cl := chunkingClient(t, r.addr)
		cl.Write("MAIL FROM:<" + simUser + ">\r\nRCPT TO:<bob@example.net>\r\n")
		cl.Expect(cl.MustRead(), 250, "")
		cl.Expect(cl.MustRead(), 250, "")
		chunk := fmt.Sprintf("Subject: abandoned %02d\r\n", i)
		cl.Write(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
		cl.Expect(cl.MustRead(), 250, "")
		// Pipelined, so RSET and MAIL reach the session while the first
		// body's Data may still be running.
		cl.Write("RSET\r\nMAIL FROM:<" + simUser + ">\r\nRCPT TO:<bob@example.net>\r\n")
		cl.Expect(cl.MustRead(), 250, "")
		cl.Expect(cl.MustRead(), 250, "")
		cl.Expect(cl.MustRead(), 250, "")
		cl.Write("DATA\r\n")
		cl.Expect(cl.MustRead(), 354, "")
		body := message(fmt.Sprintf("after BDAT and RSET %02d", i), 600)
		bodies = append(bodies, body)
		cl.Write(strings.ReplaceAll(string(body), "\r\n.", "\r\n..") + ".\r\n")
		rp := cl.Expect(cl.MustRead(), 250, "")
		if !strings.Contains(rp.Joined(), "Ok: queued as SIM") {
			t.Fatalf("round %d: want the provider's own 250, got %q", i, rp.Joined())
		}
		if n := messagesWith(sim, body); n != 1 {
			t.Fatalf("round %d: the provider got %d copies of the second message, want 1", i, n)
		}
		cl.Write("QUIT\r\n")
		cl.Expect(cl.MustRead(), 221, "")
	}
	for _, m := range sim.Messages() {
		if bytes.Contains(m.Data, []byte("abandoned")) {
			t.Fatalf("an abandoned BDAT body reached the provider: %q", m.Data)
		}
	}
	if n := len(sim.Messages()); n != rounds {
		t.Fatalf("the provider holds %d messages, want %d", n, rounds)
	}
	for i, b := range bodies {
		if n := messagesWith(sim, b); n != 1 {
			t.Fatalf("message %d arrived %d times, want 1", i, n)
		}
	}
	if n := r.eng.Queue().Len(); n != 0 {
		t.Fatalf("queue length %d, want 0: every message was delivered live", n)
	}
}

// BDAT chunks are not dot-stuffed: a line that starts with a dot, even
// after a bare LF, is content and must keep its dot.
func TestBDATKeepsLeadingDot(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	cl := chunkingClient(t, r.addr)
	cl.Write("MAIL FROM:<" + simUser + ">\r\nRCPT TO:<bob@example.net>\r\n")
	cl.Expect(cl.MustRead(), 250, "")
	cl.Expect(cl.MustRead(), 250, "")
	body := "Subject: dots in BDAT\r\n\r\nfirst line\n.a dot after a bare LF\r\n..two dots after CRLF\r\n.\r\nlast\r\n"
	cl.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
	rp := cl.Expect(cl.MustRead(), 250, "")
	if !strings.Contains(rp.Joined(), "Ok: queued as SIM") {
		t.Fatalf("want the provider's own 250, got %q", rp.Joined())
	}
	want := "Subject: dots in BDAT\r\n\r\nfirst line\r\n.a dot after a bare LF\r\n..two dots after CRLF\r\n.\r\nlast\r\n"
	msgs := sim.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the provider got %d messages, want 1", len(msgs))
	}
	if string(msgs[0].Data) != want {
		t.Fatalf("the provider got\n%q\nwant\n%q", msgs[0].Data, want)
	}
}

// chunkingClient connects a raw client, greets with EHLO and checks that
// BDAT (CHUNKING) is offered.
func chunkingClient(t testing.TB, addr string) *rig.Client {
	t.Helper()
	cl := rig.Dial(t, addr)
	cl.Write("EHLO client.test\r\n")
	if rp := cl.Expect(cl.MustRead(), 250, ""); !strings.Contains(rp.Joined(), "CHUNKING") {
		t.Fatalf("the shim does not offer CHUNKING: %q", rp.Joined())
	}
	return cl
}
