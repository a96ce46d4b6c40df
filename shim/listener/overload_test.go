package listener_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/listener"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	alice   = "alice@example.com"
	bob     = "bob@example.net"
	alicePW = "overload-test-password"
)

// startOverload runs an engine with the given connection cap in front of
// a simulated provider.
func startOverload(t *testing.T, maxConns int) (*rig.Engine, *upstreamsim.Server) {
	t.Helper()
	sim := rig.Sim(t, upstreamsim.Options{Users: map[string]string{alice: alicePW}})
	dir := t.TempDir()
	cfg := &config.Config{
		SpoolDir:       filepath.Join(dir, "spool"),
		MaxConnections: maxConns,
		Accounts:       []config.Account{{Address: alice, Server: sim.Addr, Security: config.SecurityStartTLS}},
	}
	cfg.SetPath(filepath.Join(dir, "config.toml"))
	e := rig.Start(t, cfg, rig.Options{Secrets: map[string]string{alice: alicePW}, UpstreamCAs: sim.Cert.Pool})
	return e, sim
}

// send delivers one message through a fresh connection.
func send(t *testing.T, addr string, sim *upstreamsim.Server) {
	t.Helper()
	before := len(sim.Messages())
	cl := rig.Dial(t, addr)
	cl.EHLO()
	cl.Do("MAIL FROM:<"+alice+">", 250, "")
	cl.Do("RCPT TO:<"+bob+">", 250, "")
	cl.Expect(cl.Data("Subject: through\r\n\r\nmade it"), 250, "2.0.0")
	cl.Do("QUIT", 221, "")
	if n := len(sim.Messages()); n != before+1 {
		t.Fatalf("the provider has %d messages, want %d", n, before+1)
	}
}

// Many idle connections fill the cap; a client that speaks still gets
// through at once, in the place of the longest-idle connection, which is
// told why it was closed.
func TestOverloadIdleConnectionsMakeRoom(t *testing.T) {
	t.Cleanup(listener.SetOverloadTiming(time.Hour, 300*time.Millisecond)) // eviction only
	const limit = 20
	e, sim := startOverload(t, limit)
	var idle []*rig.Client
	for range limit {
		idle = append(idle, rig.Dial(t, e.Addr))
	}
	time.Sleep(400 * time.Millisecond)
	// A flood of silent newcomers: each takes an old idle place while
	// there is one; once all are fresh, the rest are refused.
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 2 * limit {
		wg.Go(func() {
			cl := rig.DialRaw(t, e.Addr)
			cl.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			rp, err := cl.Read()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[0]++
				return
			}
			codes[rp.Code]++
		})
	}
	wg.Wait()
	if codes[220] != limit || codes[421] != limit {
		t.Errorf("newcomers: %v, want %d greeted (in the idle ones' places) and %d refused", codes, limit, limit)
	}
	for _, cl := range idle {
		cl.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		rp, err := cl.Read()
		if err != nil || rp.Code != 421 || !strings.Contains(rp.String(), "4.7.0") || !strings.Contains(rp.String(), "idle") {
			t.Fatalf("an evicted idle client heard %q, %v", rp.Lines, err)
		}
		cl.ExpectClosed(5 * time.Second)
	}
	// Later, a real client gets through and sends its message.
	time.Sleep(400 * time.Millisecond)
	start := time.Now()
	send(t, e.Addr, sim)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the real client took %s", d)
	}
}

// Near the cap, a connection waiting for its client's next command gets
// the short stress timeout instead of idle_timeout; a client inside DATA
// is not cut.
func TestOverloadShortensIdleTimeoutUnderStress(t *testing.T) {
	t.Cleanup(listener.SetOverloadTiming(500*time.Millisecond, time.Hour)) // shortening only
	const limit = 10
	e, _ := startOverload(t, limit)
	// Below the stress level (8 of 10): idle connections stay.
	var calm []*rig.Client
	for range 5 {
		calm = append(calm, rig.Dial(t, e.Addr))
	}
	time.Sleep(time.Second)
	for _, cl := range calm {
		cl.Do("NOOP", 250, "2.0.0")
	}
	// One client is inside DATA, sending slowly.
	sender := rig.Dial(t, e.Addr)
	sender.EHLO()
	sender.Do("MAIL FROM:<"+alice+">", 250, "")
	sender.Do("RCPT TO:<"+bob+">", 250, "")
	sender.Do("DATA", 354, "")
	// Three more reach the stress level.
	var more []*rig.Client
	for range 3 {
		more = append(more, rig.Dial(t, e.Addr))
	}
	start := time.Now()
	for _, cl := range append(calm, more...) {
		cl.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		rp, err := cl.Read()
		if err != nil || rp.Code != 421 {
			t.Fatalf("an idle client under stress heard %q, %v", rp.Lines, err)
		}
		cl.ExpectClosed(5 * time.Second)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle clients were closed after %s under stress, want about 0.5s", d)
	}
	for i := range 4 {
		sender.Write("line " + string(rune('a'+i)) + "\r\n")
		time.Sleep(300 * time.Millisecond)
	}
	sender.Write(".\r\n")
	sender.Expect(sender.MustRead(), 250, "2.0.0")
}
