package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// TestQueuedEnvelopeRechecked: a spool entry whose sender does not route
// to the account it names, or whose addresses would inject SMTP
// parameters, is held with an explanation and never reaches the provider,
// not even as a bounce after max_age; a proper entry goes out.
func TestQueuedEnvelopeRechecked(t *testing.T) {
	sim := startSim(t)
	pool := newPool(t, sim, pass)
	sp, err := spool.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	accounts := []config.Account{*pool.Account(), {Domain: "example.org", Username: "relay@example.org", Server: "h:587"}}
	routes := route.New(accounts)
	old := time.Now().Add(-30 * 24 * time.Hour) // long past max_age
	q := New(Options{Spool: sp, Pool: func(string) *upstream.Pool { return pool }, Routes: func() *route.Table { return routes },
		RetryMin: time.Hour, MaxAge: time.Hour})
	add := func(from string, rcpts ...string) string {
		t.Helper()
		w, err := sp.Create()
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body(100))
		m := &spool.Meta{Account: user, From: from, Rcpts: rcpts, Created: old, NextTry: time.Now()}
		if err := q.Add(w, m, false); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	cases := map[string]string{
		add("mallory@evil.example", "bob@example.net"):                 "no longer has an account",
		add("carol@example.org", "bob@example.net"):                    "now sent through account @example.org",
		add("alice@example.com", "bob@example.net> NOTIFY=NEVER"):      "the recipient",
		add("bob@other.com> X=@example.com", "bob@example.net"):        "the sender",
		add("alice@example.com", "x@example.net", "y\r\n@example.net"): "the recipient",
	}
	good := add(user, "bob@example.net")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, m := range q.List() {
			if m.Attempts > 0 {
				n++
			}
		}
		if _, ok := q.Get(good); !ok && n == len(cases) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not settle: %+v", q.List())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	msgs := sim.Messages()
	if len(msgs) != 1 || msgs[0].From != user {
		t.Fatalf("the provider got %+v, want only the proper message", msgs)
	}
	for id, why := range cases {
		m, ok := q.Get(id)
		if !ok {
			t.Fatalf("message %s is gone (bounced or dropped), want it held", id)
		}
		if !strings.Contains(m.LastError, "held") || !strings.Contains(m.LastError, why) || !strings.Contains(m.LastError, "smtpshim queue delete "+id) {
			t.Errorf("message %s: last error %q, want it held because %s", id, m.LastError, why)
		}
	}
}
