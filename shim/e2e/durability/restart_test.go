//go:build realpeer

package durability

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// queueMsg sends one message that the relay must queue, and returns its
// spool ID and the SHA-256 of its body.
func queueMsg(t *testing.T, r *relay, tag string) (string, [32]byte) {
	t.Helper()
	body := makeBody(tag, 2<<10)
	reply, err := sendOne(r.addr, alice, []string{bob}, body)
	if err != nil {
		t.Fatalf("%s: %v", tag, err)
	}
	id := queuedID(reply)
	if id == "" {
		t.Fatalf("%s: reply %q, want 250 queued as ID", tag, reply)
	}
	return id, sha256.Sum256(body)
}

// checkShow checks `queue show ID` output for the entry's fields.
func checkShow(t *testing.T, out, id string) {
	t.Helper()
	for _, want := range []string{
		"ID:          " + id + "\n",
		"Account:     " + alice + "\n",
		"From:        " + alice + "\n",
		"To:          " + bob + "\n",
		"Size:        ",
		"Queued:      ",
		"Attempts:    ",
		"Next try:    ",
		"Last error:  ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("queue show %s lacks %q:\n%s", id, want, out)
		}
	}
}

var attemptsRE = regexp.MustCompile(`(?m)^Attempts:\s+(\d+)$`)

func attempts(show string) int {
	m := attemptsRE.FindStringSubmatch(show)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestRestartRecovery queues mail while the provider refuses connections,
// works the queue with `smtpshim queue` over the control socket and then
// offline, stops the relay with SIGTERM, heals the provider and starts the
// relay again: every queued message goes out once, promptly, and deleted
// ones never.
func TestRestartRecovery(t *testing.T) {
	sim := startSim(t)
	sim.SetFault(upstreamsim.Refuse)
	r := newRelay(t, relayConfig{
		SyncWait: "2s", RetryMin: "200ms", RetryMax: "1s",
		Server: sim.Addr, CAPEM: sim.Cert.CAPEM, Password: alicePW,
	})
	r.start()

	var ids []string
	sums := map[string][32]byte{}
	for i := range 5 {
		id, sum := queueMsg(t, r, fmt.Sprintf("restart message %d", i+1))
		ids = append(ids, id)
		sums[id] = sum
	}

	// queue list, over the control socket.
	list := r.cliOK("queue", "list")
	for _, col := range []string{"ID", "FROM", "ATTEMPTS", "NEXT TRY", "LAST ERROR"} {
		if !strings.Contains(strings.SplitN(list, "\n", 2)[0], col) {
			t.Errorf("queue list header lacks %s:\n%s", col, list)
		}
	}
	if got := queueIDs(list); !sameSet(got, ids) || !strings.Contains(list, "5 message(s) queued") {
		t.Fatalf("queue list shows %v, want the 5 queued %v:\n%s", got, ids, list)
	}
	// Every row says why it waits, in the LAST ERROR column.
	lines := strings.Split(list, "\n")
	col := strings.Index(lines[0], "LAST ERROR")
	for _, line := range lines[1:6] {
		if len(line) <= col || strings.TrimSpace(line[col:]) == "" {
			t.Errorf("queue list row without a last error: %q", line)
		}
	}

	// show and retry, online.
	show := r.cliOK("queue", "show", ids[0])
	checkShow(t, show, ids[0])
	before := attempts(show)
	if out := r.cliOK("queue", "retry", ids[0]); !strings.Contains(out, "retrying 1 message(s) now") {
		t.Errorf("queue retry %s while running: %q", ids[0], out)
	}
	if !waitFor(10*time.Second, func() bool { return attempts(r.cliOK("queue", "show", ids[0])) > before }) {
		t.Errorf("queue retry %s: attempts still %d after 10s", ids[0], before)
	}
	if out := r.cliOK("queue", "retry"); !strings.Contains(out, "retrying 5 message(s) now") {
		t.Errorf("queue retry (all) while running: %q", out)
	}
	if _, errOut, code := r.cli("queue", "show", "20000101T000000-nosuchid"); code == 0 || !strings.Contains(errOut, "no queued message") {
		t.Errorf("queue show of an unknown ID: exit %d, %q", code, errOut)
	}

	// delete, online: a sixth message goes away and is never delivered.
	goneOnline, goneOnlineSum := queueMsg(t, r, "restart message deleted while running")
	if out := r.cliOK("queue", "delete", goneOnline); !strings.Contains(out, "deleted "+goneOnline) {
		t.Errorf("queue delete %s while running: %q", goneOnline, out)
	}
	if _, err := os.Stat(filepath.Join(r.spool, "msg", goneOnline+".json")); !os.IsNotExist(err) {
		t.Errorf("the deleted %s is still in the spool (%v)", goneOnline, err)
	}
	if got := queueIDs(r.cliOK("queue", "list")); !sameSet(got, ids) {
		t.Errorf("queue list after delete: %v, want %v", got, ids)
	}
	// A seventh, to be deleted while the relay is stopped.
	goneOffline, goneOfflineSum := queueMsg(t, r, "restart message deleted while stopped")

	r.term()
	if n := len(sim.Messages()); n != 0 {
		t.Fatalf("the refusing provider received %d message(s)", n)
	}

	// Offline: the commands work on the spool under its lock.
	all := append(slices.Clone(ids), goneOffline)
	list = r.cliOK("queue", "list")
	if got := queueIDs(list); !sameSet(got, all) || !strings.Contains(list, "6 message(s) queued") {
		t.Fatalf("queue list while stopped shows %v, want %v:\n%s", got, all, list)
	}
	show = r.cliOK("queue", "show", goneOffline)
	checkShow(t, show, goneOffline)
	if out := r.cliOK("queue", "retry", goneOffline); !strings.Contains(out, "not running") || !strings.Contains(out, "1 queued message(s) will be tried as soon as it starts") {
		t.Errorf("queue retry %s while stopped: %q", goneOffline, out)
	}
	if out := r.cliOK("queue", "delete", goneOffline); !strings.Contains(out, "deleted "+goneOffline) {
		t.Errorf("queue delete %s while stopped: %q", goneOffline, out)
	}
	if _, errOut, code := r.cli("queue", "show", goneOffline); code == 0 || !strings.Contains(errOut, "no queued message") {
		t.Errorf("queue show of the deleted %s: exit %d, %q", goneOffline, code, errOut)
	}
	if got := queueIDs(r.cliOK("queue", "list")); !sameSet(got, ids) {
		t.Errorf("queue list while stopped, after delete: %v, want %v", got, ids)
	}

	// Heal and start again: the queue is retried at once.
	sim.SetFault(upstreamsim.None)
	started := time.Now()
	r.start()
	if !waitFor(10*time.Second, func() bool { return len(sim.Messages()) >= 5 }) {
		t.Fatalf("%d of 5 queued message(s) delivered within 10s of the restart", len(sim.Messages()))
	}
	took := time.Since(started)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(r.cliOK("queue", "list"), "the queue is empty") }) {
		t.Errorf("queue not empty after delivery:\n%s", r.cliOK("queue", "list"))
	}
	// Several retry_min periods later, still exactly once each.
	time.Sleep(time.Second)
	got := arrivals(sim)
	for _, id := range ids {
		if n := got[sums[id]]; n != 1 {
			t.Errorf("%s delivered %d times, want 1", id, n)
		}
	}
	for id, sum := range map[string][32]byte{goneOnline: goneOnlineSum, goneOffline: goneOfflineSum} {
		if n := got[sum]; n != 0 {
			t.Errorf("deleted %s was delivered %d times", id, n)
		}
	}
	if n := len(sim.Messages()); n != 5 {
		t.Errorf("provider received %d message(s), want 5", n)
	}
	if n, files, tmp := r.spoolFiles(); n+files+tmp != 0 {
		t.Errorf("spool not empty: %d entries, %d files in msg/, %d in tmp/", n, files, tmp)
	}
	t.Logf("5 queued message(s) delivered %v after the restart", took.Round(time.Millisecond))
	r.term()
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestTermDuringStalledDelivery stops the relay with SIGTERM while a queue
// attempt hangs at the end of DATA (a provider that never answers). The
// relay must exit promptly, not after the 10-minute submission timeout,
// keep the message, and deliver it exactly once after the restart.
func TestTermDuringStalledDelivery(t *testing.T) {
	sim := startSim(t)
	sim.SetFault(upstreamsim.Refuse)
	r := newRelay(t, relayConfig{
		SyncWait: "1s", RetryMin: "200ms", RetryMax: "1s",
		Server: sim.Addr, CAPEM: sim.Cert.CAPEM, Password: alicePW,
	})
	r.start()
	id, sum := queueMsg(t, r, "stalled when the relay stops")

	// The provider now takes the message and never answers the final dot.
	sim.SetFault(upstreamsim.Stall)
	if out := r.cliOK("queue", "retry", id); !strings.Contains(out, "retrying 1 message(s) now") {
		t.Fatalf("queue retry %s: %q", id, out)
	}
	if !waitFor(10*time.Second, func() bool { return sim.Connections() > 0 }) {
		t.Fatal("the retry did not reach the provider within 10s")
	}
	time.Sleep(500 * time.Millisecond) // through AUTH and DATA, into the stall

	stopped := time.Now()
	r.term()
	took := time.Since(stopped)
	if took > 5*time.Second {
		t.Errorf("smtpshim took %v to exit after SIGTERM with a stalled delivery, want under 5s", took.Round(time.Millisecond))
	}
	t.Logf("exited %v after SIGTERM with a delivery stalled at the final dot", took.Round(time.Millisecond))
	if ids := queueIDs(r.cliOK("queue", "list")); !slices.Equal(ids, []string{id}) {
		t.Fatalf("queue after SIGTERM: %v, want [%s]", ids, id)
	}

	sim.SetFault(upstreamsim.None)
	r.start()
	if !waitFor(10*time.Second, func() bool { return arrivals(sim)[sum] > 0 }) {
		t.Fatalf("%s not delivered within 10s of the restart", id)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(r.cliOK("queue", "list"), "the queue is empty") }) {
		t.Errorf("queue not empty after delivery:\n%s", r.cliOK("queue", "list"))
	}
	time.Sleep(time.Second)
	if n := arrivals(sim)[sum]; n != 1 || len(sim.Messages()) != 1 {
		t.Errorf("%s delivered %d times (%d message(s) in all), want once", id, n, len(sim.Messages()))
	}
	r.term()
}
