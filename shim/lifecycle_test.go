package shim_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
)

// openFDs counts this process's open file descriptors (Linux).
func openFDs(tb testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestEngineRunLeavesNothingBehind: one process creates, runs and stops an
// engine 50 times, each time relaying mail (a live delivery, one with its
// MAIL FROM sent ahead on a warm connection, and one queued while the
// provider is slow), and is left with no goroutine and no file descriptor
// more than before.
func TestEngineRunLeavesNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("50 engine runs")
	}
	sim := startSim(t, true)
	// Warm up what lives for the whole process (the resolver, the
	// runtime's timers, the sim's own goroutines).
	startRig(t, sim, rigOptions{quiet: true}).stop()
	settle := func() (int, int) {
		runtime.GC()
		return runtime.NumGoroutine(), openFDs(t)
	}
	time.Sleep(100 * time.Millisecond)
	g0, fd0 := settle()

	for i := range 50 {
		r := startRig(t, sim, rigOptions{quiet: true, control: i%2 == 0})
		c := dialClient(t, r.addr)
		mustProviderOK(t, sendOn(t, c, simUser, []string{"bob@example.net"}, message(fmt.Sprintf("run %d a", i), 200)))
		mustProviderOK(t, sendOn(t, c, simUser, []string{"bob@example.net"}, message(fmt.Sprintf("run %d b", i), 200)))
		if i%10 == 0 {
			// A provider slower than sync_wait: the client hears
			// "queued", and the late answer is still awaited at stop.
			sim.SetDataDelay(testSyncWait + 2*time.Second)
			mustQueued(t, sendOn(t, c, simUser, []string{"bob@example.net"}, message(fmt.Sprintf("run %d slow", i), 200)))
			sim.SetDataDelay(0)
		}
		c.Close()
		r.stop()
		if n := shim.RelayInFlight(r.eng); n != 0 {
			t.Fatalf("run %d: %d deliveries still in flight after Run returned", i, n)
		}
	}

	var g, fd int
	// Pooled provider connections close in the background with a 2 s
	// deadline; nothing else may linger.
	deadline := time.Now().Add(3 * time.Second)
	for {
		g, fd = settle()
		if (g <= g0 && fd <= fd0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g > g0 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("%d goroutines after 50 runs, %d before:\n%s", g, g0, buf[:n])
	}
	if fd > fd0 {
		t.Errorf("%d open file descriptors after 50 runs, %d before", fd, fd0)
	}
}

// TestShutdownTellsClients: at shutdown a client waiting between commands
// hears "421 4.3.2 smtpshim is shutting down" at once; one in the middle of
// a message finishes it, hears its 250, and then the 421. The log says
// what the shutdown waits for.
func TestShutdownTellsClients(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	logged := make(chan struct{})
	r.hooks.On("shutting down: waiting for client sessions to end (up to 10s), then for provider answers and queue attempts in flight", func() { close(logged) })

	idle := rig.Dial(t, r.addr)
	idle.Do("EHLO idle.test", 250, "")
	busy := rig.Dial(t, r.addr)
	busy.Do("EHLO busy.test", 250, "")
	busy.Do("MAIL FROM:<"+simUser+">", 250, "")
	busy.Do("RCPT TO:<bob@example.net>", 250, "")
	busy.Do("DATA", 354, "")
	fmt.Fprintf(busy.Conn, "Subject: half\r\n\r\nfirst half\r\n")

	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-logged:
	case <-time.After(10 * time.Second):
		t.Fatal("the shutdown did not log what it waits for")
	}
	if line := idle.MustRead().String(); line != "421 4.3.2 smtpshim is shutting down" {
		t.Fatalf("idle client heard %q", line)
	}
	if _, err := idle.R.ReadString('\n'); err == nil {
		t.Fatal("the idle client's connection stayed open")
	}

	fmt.Fprintf(busy.Conn, "second half\r\n.\r\n")
	if line := busy.MustRead().String(); !strings.HasPrefix(line, "250 ") {
		t.Fatalf("the client in the middle of a message heard %q, want its 250", line)
	}
	if line := busy.MustRead().String(); line != "421 4.3.2 smtpshim is shutting down" {
		t.Fatalf("after its message the client heard %q", line)
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if n := len(sim.Messages()); n != 1 {
		t.Fatalf("the provider got %d messages, want the one finished during shutdown", n)
	}
}

// A client whose message still waits for the provider's answer when the
// shutdown's wait for sessions runs out: its session settles the message
// (keeps it in the spool) before Run returns, so nothing of the engine
// touches the spool after Run.
func TestRunWaitsForASessionCutAtShutdown(t *testing.T) {
	t.Parallel()
	sim := startSim(t, true)
	r := startRig(t, sim, rigOptions{tune: func(c *config.Config) { c.SyncWait = config.Duration(time.Minute) }})
	sim.SetDataDelay(time.Minute)
	t.Cleanup(func() { sim.SetDataDelay(0) })
	cl := rig.Dial(t, r.addr)
	defer cl.Close()
	cl.Do("EHLO client.test", 250, "")
	cl.Do("MAIL FROM:<"+simUser+">", 250, "")
	cl.Do("RCPT TO:<bob@example.net>", 250, "")
	cl.Do("DATA", 354, "")
	cl.Write("Subject: cut at shutdown\r\n\r\nbody\r\n.\r\n")
	time.Sleep(300 * time.Millisecond) // the provider has it and delays its answer
	r.stop()
	metas, _ := filepath.Glob(filepath.Join(r.spoolDir, "msg", "*.json"))
	if len(metas) != 1 {
		time.Sleep(500 * time.Millisecond)
		later, _ := filepath.Glob(filepath.Join(r.spoolDir, "msg", "*.json"))
		t.Fatalf("when Run returned the spool held %d messages (%d half a second later), want the one whose session was cut", len(metas), len(later))
	}
}
