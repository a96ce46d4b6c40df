package shim

// Regression tests for the fixes of a review: BDAT (a body still being
// received when the client resets, and BDAT chunks not dot-unstuffed), a
// provider that stops reading the body, a provider without SMTPUTF8, and a
// deferred recipient when the spool is broken and the provider is slow.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// rvClient is a raw SMTP client: it sends exactly what it is told, so
// commands can be pipelined and BDAT used (go-smtp's client has no BDAT).
type rvClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

type rvReply struct {
	code int
	text string // every line's text, joined by " / "
}

func rvDial(t testing.TB, addr string) *rvClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing the shim: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cl := &rvClient{t: t, c: c, r: bufio.NewReader(c)}
	cl.expect(220)
	cl.write("EHLO client.test\r\n")
	if rp := cl.expect(250); !strings.Contains(rp.text, "CHUNKING") {
		t.Fatalf("the shim does not offer CHUNKING: %q", rp.text)
	}
	return cl
}

func (cl *rvClient) write(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatalf("writing %q: %v", s, err)
	}
}

func (cl *rvClient) read() rvReply {
	cl.t.Helper()
	var rp rvReply
	var lines []string
	for {
		line, err := cl.r.ReadString('\n')
		if err != nil {
			cl.t.Fatalf("reading a reply: %v (got %q)", err, append(lines, line))
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			cl.t.Fatalf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			cl.t.Fatalf("malformed reply line %q", line)
		}
		rp.code = code
		lines = append(lines, strings.TrimSpace(line[3:]))
		if len(line) == 3 || line[3] == ' ' {
			rp.text = strings.Join(lines, " / ")
			return rp
		}
	}
}

// expect reads one reply and fails unless it has code.
func (cl *rvClient) expect(code int) rvReply {
	cl.t.Helper()
	rp := cl.read()
	if rp.code != code {
		cl.t.Fatalf("got %d %s, want %d", rp.code, rp.text, code)
	}
	return rp
}

// ---- BDAT ----

// A client sends a BDAT chunk (not LAST), then RSET and a new message
// with DATA. go-smtp runs Data for BDAT in its own goroutine and reads on:
// RSET and MAIL must wait for that Data to end instead of racing it (the
// race detector's report, a panic, or the first body's abort tearing down
// the second message's upstream transaction). The second message gets the
// provider's own 250 and arrives once; the first never arrives.
func TestReviewBDATResetRace(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	const rounds = 20
	var bodies [][]byte
	for i := range rounds {
		cl := rvDial(t, r.addr)
		cl.write("MAIL FROM:<" + simUser + ">\r\nRCPT TO:<bob@example.net>\r\n")
		cl.expect(250)
		cl.expect(250)
		chunk := fmt.Sprintf("Subject: abandoned %02d\r\n", i)
		cl.write(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
		cl.expect(250)
		// Pipelined, so RSET and MAIL reach the session while the first
		// body's Data may still be running.
		cl.write("RSET\r\nMAIL FROM:<" + simUser + ">\r\nRCPT TO:<bob@example.net>\r\n")
		cl.expect(250)
		cl.expect(250)
		cl.expect(250)
		cl.write("DATA\r\n")
		cl.expect(354)
		body := message(fmt.Sprintf("after BDAT and RSET %02d", i), 600)
		bodies = append(bodies, body)
		cl.write(strings.ReplaceAll(string(body), "\r\n.", "\r\n..") + ".\r\n")
		rp := cl.expect(250)
		if !strings.Contains(rp.text, "Ok: queued as SIM") {
			t.Fatalf("round %d: want the provider's own 250, got %q", i, rp.text)
		}
		if n := messagesWith(sim, body); n != 1 {
			t.Fatalf("round %d: the provider got %d copies of the second message, want 1", i, n)
		}
		cl.write("QUIT\r\n")
		cl.expect(221)
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
func TestReviewBDATKeepsLeadingDot(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	cl := rvDial(t, r.addr)
	cl.write("MAIL FROM:<" + simUser + ">\r\nRCPT TO:<bob@example.net>\r\n")
	cl.expect(250)
	cl.expect(250)
	body := "Subject: dots in BDAT\r\n\r\nfirst line\n.a dot after a bare LF\r\n..two dots after CRLF\r\n.\r\nlast\r\n"
	cl.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
	rp := cl.expect(250)
	if !strings.Contains(rp.text, "Ok: queued as SIM") {
		t.Fatalf("want the provider's own 250, got %q", rp.text)
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

// ---- a provider that stops reading ----

// The provider answers DATA with 354 and then reads nothing. The body is
// larger than the socket buffers, so the shim's writes upstream block:
// after sync_wait the client must hear "queued" (before the fix it hung,
// holding a pool slot, until its own timeout), and once the provider
// heals the message arrives once, intact.
func TestReviewProviderStopsReading(t *testing.T) {
	t.Parallel()
	const syncWait = time.Second
	sim := startSim(t, true)
	r := startRig(t, sim, rigOptions{tune: func(c *config.Config) { c.SyncWait = config.Duration(syncWait) }})
	// Runs before the rig stops: no attempt may stay stuck writing.
	t.Cleanup(func() { sim.SetFault(upstreamsim.None) })
	sim.SetFault(upstreamsim.StopReading)

	// Well beyond what the sockets buffer between the shim and the
	// provider (a few MB), so the shim's writes really block.
	body := message("the provider stops reading", 8<<20)
	conn, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := smtp.NewClient(conn)
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(simUser, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt("bob@example.net", nil); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	// go-smtp's client sets no deadline on the body itself: a shim that
	// hangs must fail the test, not hang it.
	start := time.Now()
	conn.SetDeadline(start.Add(10 * time.Second))
	if _, err := w.Write(body); err != nil {
		t.Fatalf("writing the body: %v after %s (the shim stopped reading it)", err, time.Since(start).Round(time.Millisecond))
	}
	resp, err := w.CloseWithResponse()
	took := time.Since(start)
	s := sent{err: err}
	if err == nil {
		s.text = resp.StatusText
	}
	id := mustQueued(t, s)
	t.Logf("queued as %s after %s: %s", id, took.Round(time.Millisecond), s.text)
	if took > syncWait+6*time.Second {
		t.Fatalf("the client waited %s for its reply; want about sync_wait (%s)", took, syncWait)
	}
	// The write upstream was cut by its deadline: the body did not just
	// fit in the socket buffers (then the wait would be for the answer,
	// "did not answer within"). The client hears it in general words;
	// the "i/o timeout" itself stays in the log.
	if !strings.Contains(s.text, "the connection to the provider timed out") {
		t.Fatalf("the queued reply does not name the stalled write: %q", s.text)
	}
	c.Quit()
	if len(sim.Messages()) != 0 {
		t.Fatal("the provider recorded a message it never read")
	}

	sim.SetFault(upstreamsim.None)
	checkDeliveredOnce(t, r, body)
	msgs := sim.Messages()
	if len(msgs) != 1 || msgs[0].Size != int64(len(body)) || msgs[0].SHA256 != sha256.Sum256(body) {
		t.Fatalf("the provider holds %d messages; want exactly the complete body (%d bytes)", len(msgs), len(body))
	}
}

// ---- a provider without SMTPUTF8 ----

// A client that asks for SMTPUTF8 out of habit, with ASCII addresses, is
// delivered live (the flag is not sent upstream); a non-ASCII recipient
// the provider cannot take gets 553 5.6.7 at once instead of being queued
// for days of retries that cannot succeed.
func TestReviewNoSMTPUTF8Provider(t *testing.T) {
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

// ---- a deferred recipient, a broken spool and a slow provider ----

// One recipient is accepted, the other deferred (450); the spool cannot be
// written, and the provider answers the end of DATA only after sync_wait.
// Its 250 covers only the accepted recipient, and no queued copy can be
// made for the deferred one: the client must hear 452 4.3.1 and keep its
// copy, not a 250 that silently drops that recipient.
func TestReviewDeferredRcptBrokenSpoolSlowProvider(t *testing.T) {
	t.Parallel()
	const syncWait = 500 * time.Millisecond
	const answerAfter = 2 * time.Second
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{tune: func(c *config.Config) { c.SyncWait = config.Duration(syncWait) }})
	// tmp/ becomes a regular file: every new spool file fails.
	tmp := filepath.Join(r.spoolDir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, []byte("not a directory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sim.SetFault(upstreamsim.TempFailSomeRcpt)
	sim.SetDataDelay(answerAfter)

	// Beyond the listener's 1 MiB in-memory buffer: the spool must spill
	// to disk, and fails.
	body := message("deferred recipient, broken spool, slow provider", 2<<20)
	s := send(t, r.addr, simUser, []string{"bob@example.net", "later@example.net"}, body)
	if len(s.rcptErr) != 0 {
		t.Fatalf("RCPT errors: %v; a 4xx must not reach the client", s.rcptErr)
	}
	mustSMTPError(t, s.err, 452, smtp.EnhancedCode{4, 3, 1}, "")
	if s.took < answerAfter-100*time.Millisecond {
		t.Fatalf("the reply came after %s, before the provider answered (%s): the branch under test was not reached", s.took, answerAfter)
	}
	if n := r.eng.Queue().Len(); n != 0 {
		t.Fatalf("queue length %d, want 0", n)
	}
	if n := len(messagesTo(sim, "later@example.net")); n != 0 {
		t.Fatalf("later@ got %d copies while the provider deferred it", n)
	}
}
