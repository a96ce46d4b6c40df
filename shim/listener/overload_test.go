package listener_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/listener"
)

// overloadTiming shortens the overload rules' times for a test.
func overloadTiming(t *testing.T, idle, evict time.Duration) {
	t.Cleanup(listener.SetOverloadTiming(idle, evict))
}

// Many idle connections fill the cap; a client that speaks still gets
// through at once, in the place of the longest-idle connection, which is
// told why it was closed.
func TestOverloadIdleConnectionsMakeRoom(t *testing.T) {
	overloadTiming(t, time.Hour, 300*time.Millisecond) // eviction only
	const limit = 20
	r := startRig(t, rigOpts{cfg: func(c *config.Config) { c.MaxConnections = limit }})
	var idle []*client
	for range limit {
		idle = append(idle, dial(t, r.addr))
	}
	time.Sleep(400 * time.Millisecond)
	// A flood of silent newcomers: each takes an old idle place while
	// there is one; once all are fresh, the rest are refused.
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 2 * limit {
		wg.Go(func() {
			cl := dialRaw(t, r.addr)
			cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			rp, err := cl.read()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[0]++
				return
			}
			codes[rp.code]++
		})
	}
	wg.Wait()
	if codes[220] != limit || codes[421] != limit {
		t.Errorf("newcomers: %v, want %d greeted (in the idle ones' places) and %d refused", codes, limit, limit)
	}
	// Every old idle connection was closed with the reason.
	for _, cl := range idle {
		cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		rp, err := cl.read()
		if err != nil || rp.code != 421 || !strings.Contains(rp.String(), "4.7.0") || !strings.Contains(rp.String(), "idle") {
			t.Fatalf("an evicted idle client heard %q, %v", rp.lines, err)
		}
		cl.expectClosed(5 * time.Second)
	}
	// Later, a real client gets through and sends its message.
	time.Sleep(400 * time.Millisecond)
	start := time.Now()
	r.healthy(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the real client took %s", d)
	}
}

// Near the cap, a connection waiting for its client's next command gets
// stressIdle instead of idle_timeout; a client inside DATA is not cut.
func TestOverloadShortensIdleTimeoutUnderStress(t *testing.T) {
	overloadTiming(t, 500*time.Millisecond, time.Hour) // shortening only
	const limit = 10
	r := startRig(t, rigOpts{cfg: func(c *config.Config) { c.MaxConnections = limit }})
	// Below the stress level (8 of 10): idle connections stay.
	var calm []*client
	for range 5 {
		calm = append(calm, dial(t, r.addr))
	}
	time.Sleep(time.Second)
	for _, cl := range calm {
		cl.do("NOOP", 250, "2.0.0")
	}
	// One client is inside DATA, sending slowly.
	sender := dial(t, r.addr)
	sender.ehlo()
	sender.do("MAIL FROM:<"+alice+">", 250, "")
	sender.do("RCPT TO:<"+bob+">", 250, "")
	sender.do("DATA", 354, "")
	// Three more reach the stress level.
	var more []*client
	for range 3 {
		more = append(more, dial(t, r.addr))
	}
	start := time.Now()
	for _, cl := range append(calm, more...) {
		cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rp, err := cl.read()
		if err != nil || rp.code != 421 {
			t.Fatalf("an idle client under stress heard %q, %v", rp.lines, err)
		}
		cl.expectClosed(5 * time.Second)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle clients were closed after %s under stress, want about 0.5s", d)
	}
	for i := range 4 {
		sender.write("line " + string(rune('a'+i)) + "\r\n")
		time.Sleep(300 * time.Millisecond)
	}
	sender.write(".\r\n")
	sender.expect(sender.mustRead(), 250, "2.0.0")
}
