package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// TestOutageBacklogDeliveredOnce queues a burst of messages from many
// clients at once while the provider refuses connections (their files
// partly left to the spool's background writer), heals it, and retries:
// every message reaches the provider exactly once, the queue and the
// spool end empty, and nothing is left in the journal.
func TestOutageBacklogDeliveredOnce(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	sim.SetFault(upstreamsim.Refuse)
	pool := newPool(t, sim, pass)
	dir := t.TempDir()
	sp, err := spool.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	q := New(Options{Spool: sp, Bus: &events.Bus{}, Pool: func(string) *upstream.Pool { return pool },
		RetryMin: time.Hour, RetryMax: time.Hour, MaxAge: 24 * time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { q.Run(ctx) })

	const clients, per = 8, 60
	sums := make(chan [32]byte, clients*per)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range per {
				b := append(body(2000), fmt.Sprintf("client %d message %d\r\n", c, i)...)
				w := sp.CreateLazy(1 << 20)
				w.Write(b)
				m := &spool.Meta{Account: user, From: user, Rcpts: []string{"bob@example.net"}}
				if err := q.Add(w, m, false); err != nil {
					t.Errorf("Add: %v", err)
					return
				}
				sums <- sha256.Sum256(b)
			}
		})
	}
	wg.Wait()
	close(sums)
	if n := q.Len(); n != clients*per {
		t.Fatalf("queue holds %d messages, want %d", n, clients*per)
	}

	sim.SetFault(upstreamsim.None)
	q.RetryNow("")
	deadline := time.Now().Add(60 * time.Second)
	for q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("%d messages still queued after the provider healed", n)
	}
	cancel()
	run.Wait()

	got := map[[32]byte]int{}
	for _, m := range sim.Messages() {
		got[m.SHA256]++
	}
	for sum := range sums {
		if got[sum] != 1 {
			t.Errorf("a message reached the provider %d times, want once", got[sum])
		}
	}
	if len(got) != clients*per {
		t.Errorf("the provider holds %d distinct messages, want %d", len(got), clients*per)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"msg", "tmp", "jnl"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s/ holds %d files after the drain", sub, len(ents))
		}
	}
}

// TestSchedulerScansRarely: queueing a burst while the account's server
// is down, and draining it after, each cost a few scans of the queue, not
// one per message.
func TestSchedulerScansRarely(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	sim.SetFault(upstreamsim.Refuse)
	pool := newPool(t, sim, pass)
	// A failed attempt marks the server down: new messages then wait
	// for its next probe, all with the same due time.
	Deliver(context.Background(), pool, user, []string{"bob@example.net"}, nil, bytes.NewReader(body(100)))
	if pool.Health().Healthy {
		t.Fatal("the account's server is not marked down")
	}
	sp, err := spool.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	q := New(Options{Spool: sp, Bus: &events.Bus{}, Pool: func(string) *upstream.Pool { return pool },
		RetryMin: time.Millisecond, RetryMax: time.Millisecond, MaxAge: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { q.Run(ctx) })
	defer func() { cancel(); run.Wait() }()
	scans := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.scans
	}

	const n = 600
	for i := range n {
		w := sp.CreateLazy(1 << 20)
		w.Write(append(body(500), fmt.Sprintf("message %d\r\n", i)...))
		if err := q.Add(w, &spool.Meta{Account: user, From: user, Rcpts: []string{"bob@example.net"}}, false); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d scans while queueing %d messages", scans(), n)
	if got := scans(); got > 20 {
		t.Errorf("%d scans of the queue while %d messages were queued during the outage", got, n)
	}

	sim.SetFault(upstreamsim.None)
	before := scans()
	q.RetryNow("")
	deadline := time.Now().Add(30 * time.Second)
	for q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if q.Len() != 0 {
		t.Fatalf("%d messages still queued", q.Len())
	}
	t.Logf("%d scans while delivering them", scans()-before)
	if got := scans() - before; got > 3*n/readyMax+20 {
		t.Errorf("%d scans of the queue to deliver %d messages", got, n)
	}
	if got := len(sim.Messages()); got != n {
		t.Errorf("the provider got %d messages, want %d", got, n)
	}
}
