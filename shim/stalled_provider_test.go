package shim_test

// A provider that stops reading the body must not hold a client or a
// pool slot: the client hears "queued" after sync_wait.

import (
	"crypto/sha256"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// The provider answers DATA with 354 and then reads nothing. The body is
// larger than the socket buffers, so the shim's writes upstream block:
// after sync_wait the client must hear "queued" (before the fix it hung,
// holding a pool slot, until its own timeout), and once the provider
// heals the message arrives once, intact.
func TestProviderStopsReading(t *testing.T) {
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
