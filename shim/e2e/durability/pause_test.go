//go:build realpeer

package durability

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// TestPauseAcrossKill9: with the real binary and Postfix as the
// provider, `smtpshim pause` holds mail (accepted, "queued … (smtpshim is
// paused)", nothing at Postfix), the pause survives kill -9 and a restart
// that would otherwise retry the queue at once, and `smtpshim resume`
// sends it; `smtpshim status --watch --json` follows along.
func TestPauseAcrossKill9(t *testing.T) {
	p := realpeer.StartPostfix(t, map[string]string{alice: alicePW})
	r := newRelay(t, relayConfig{
		SyncWait: "5s", RetryMin: "1s", RetryMax: "5s",
		Server: p.SubmissionAddr, CAFile: p.CAFile, Password: alicePW,
	})
	r.start()
	if out := r.cliOK("pause"); !strings.Contains(out, "paused") {
		t.Fatalf("smtpshim pause: %q", out)
	}
	rep := oldClient(t, r.addr, alice, bob, "held by the pause")
	if !strings.Contains(rep, "(smtpshim is paused)") || queuedID(rep) == "" {
		t.Fatalf("reply while paused: %q; want 250 queued as ID (smtpshim is paused)", rep)
	}
	status := func() api.Status {
		t.Helper()
		var st api.Status
		if err := json.Unmarshal([]byte(r.cliOK("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st.State != api.Paused || st.Queued != 1 || len(st.Accounts) != 1 || st.Accounts[0].Key != alice {
		t.Fatalf("status while paused: %+v", st)
	}

	r.kill()
	r.start()
	if st := status(); st.State != api.Paused || st.Queued != 1 {
		t.Fatalf("status after kill -9 and a restart: %+v; want still paused with the message", st)
	}
	time.Sleep(2 * time.Second) // a start retries the queue at once; paused, it must not
	if n := len(p.Messages(bob)); n != 0 {
		t.Fatalf("Postfix got %d message(s) while smtpshim was paused", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, relayBin, "--config", r.cfgPath, "status", "--watch", "--json")
	out, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan api.WatchItem, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var it api.WatchItem
			if json.Unmarshal(sc.Bytes(), &it) == nil {
				lines <- it
			}
		}
	}()
	if first := <-lines; first.Status == nil || first.Status.State != api.Paused {
		t.Fatalf("status --watch began with %+v; want the paused status", first)
	}

	if out := r.cliOK("resume"); !strings.Contains(out, "resumed") {
		t.Fatalf("smtpshim resume: %q", out)
	}
	p.WaitMessages(t, bob, 1, 30*time.Second)
	var kinds []api.EventKind
	deadline := time.After(30 * time.Second)
	for delivered := false; !delivered; {
		select {
		case it, ok := <-lines:
			if !ok {
				t.Fatalf("status --watch ended early; events %v", kinds)
			}
			if it.Event != nil {
				kinds = append(kinds, it.Event.Kind)
				delivered = it.Event.Kind == api.EventDelivered
			}
		case <-deadline:
			t.Fatalf("status --watch showed no delivered event; events %v", kinds)
		}
	}
	if kinds[0] != api.EventState {
		t.Errorf("the first event after resume is %q; want the state change", kinds[0])
	}
	r.term()
	if err := watch.Wait(); err != nil {
		t.Errorf("status --watch after the relay stopped: %v", err)
	}
	if n := len(p.Messages(bob)); n != 1 {
		t.Errorf("Postfix got %d message(s); want 1", n)
	}
}
