package shim_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// TestEngineBDATFaults: a provider that offers CHUNKING gets the body as
// BDAT, and each way it can fail ends as it does with DATA: its refusal
// reaches the client unchanged and nothing is kept; a deferral, a hang-up
// in mid-body and silence past sync_wait are queued, and delivered once
// when it heals.
func TestEngineBDATFaults(t *testing.T) {
	t.Parallel()
	sim := rig.Sim(t, upstreamsim.Options{Users: map[string]string{simUser: simPass}, Chunking: true})
	r := startRig(t, sim, rigOptions{})
	if s := send(t, r.addr, simUser, []string{"bob@example.net"}, message("bdat ok", 3000)); s.err != nil {
		t.Fatalf("healthy provider: %v", s.err)
	}
	if m := sim.Messages(); len(m) != 1 || !m[0].Chunked {
		t.Fatalf("the provider got %+v; want one message sent with BDAT", m)
	}

	t.Run("refused", func(t *testing.T) {
		sim.SetFault(upstreamsim.PermFail)
		defer sim.SetFault(upstreamsim.None)
		s := send(t, r.addr, simUser, []string{"bob@example.net"}, message("554 at BDAT LAST", 3000))
		mustSMTPError(t, s.err, 554, smtp.EnhancedCode{5, 7, 1}, "Message refused by policy")
		if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
			t.Fatalf("the spool holds %v after a refusal the client heard", f)
		}
	})
	t.Run("deferred", func(t *testing.T) {
		sim.SetFault(upstreamsim.TempFailData)
		body := message("451 at BDAT LAST", 3000)
		id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
		checkQueuedEntry(t, r, id, []string{"bob@example.net"}, "451")
		sim.SetFault(upstreamsim.None)
		checkDeliveredOnce(t, r, body)
		// The retry from the queue goes with BDAT too.
		if last := sim.Messages()[len(sim.Messages())-1]; !last.Chunked {
			t.Fatal("the queue's retry was sent with DATA to a provider that offers CHUNKING")
		}
	})
	t.Run("hang-up-mid-body", func(t *testing.T) {
		sim.SetFault(upstreamsim.DropMidData)
		// Several 64 KB chunks; the provider hangs up after 100 bytes.
		body := message("dropped mid-BDAT", 256<<10)
		id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
		checkQueuedEntry(t, r, id, []string{"bob@example.net"}, "")
		sim.SetFault(upstreamsim.None)
		checkDeliveredOnce(t, r, body)
		last := sim.Messages()[len(sim.Messages())-1]
		if last.Size != int64(len(body)) || last.SHA256 != sha256.Sum256(body) {
			t.Fatalf("the provider got %d bytes; want exactly the complete body (%d bytes)", last.Size, len(body))
		}
	})
	t.Run("silent-past-sync-wait", func(t *testing.T) {
		sim.SetFault(upstreamsim.Stall)
		body := message("stalled at BDAT LAST", 3000)
		s := send(t, r.addr, simUser, []string{"bob@example.net"}, body)
		mustQueued(t, s)
		if s.took < testSyncWait || s.took >= testSyncWait+5*time.Second {
			t.Fatalf("the client waited %s for its reply; want sync_wait (%s) to %s", s.took, testSyncWait, testSyncWait+5*time.Second)
		}
		if !strings.Contains(s.text, "did not answer within") {
			t.Errorf("the queued reply does not say why: %q", s.text)
		}
		sim.SetFault(upstreamsim.None)
		checkDeliveredOnce(t, r, body)
	})
}
