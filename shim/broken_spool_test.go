package shim_test

// A deferred recipient when the spool is broken and the provider is slow:
// the client keeps its copy rather than hear a 250 that drops a recipient.

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// One recipient is accepted, the other deferred (450); the spool cannot be
// written, and the provider answers the end of DATA only after sync_wait.
// Its 250 covers only the accepted recipient, and no queued copy can be
// made for the deferred one: the client must hear 452 4.3.1 and keep its
// copy, not a 250 that silently drops that recipient.
func TestDeferredRcptBrokenSpoolSlowProvider(t *testing.T) {
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
