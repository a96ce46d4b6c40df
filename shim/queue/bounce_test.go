package queue

import (
	"bytes"
	"context"
	"io"
	"net/mail"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// TestBounceFromIsTheAccountAddress checks the bounce's From header: one
// address that net/mail can read, the sender's account's own, so that a
// provider checking From against the login takes the bounce.
func TestBounceFromIsTheAccountAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ account, sender, want string }{
		{"alice@example.com", "alice@example.com", "alice@example.com"},
		{"alice@example.com", "Alice@Example.com", "alice@example.com"},
		{"@example.org", "scanner@example.org", "scanner@example.org"},
	} {
		t.Run(tc.account, func(t *testing.T) {
			sp, err := spool.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			q := New(Options{Spool: sp, Bus: &events.Bus{}, Hostname: "shim.test", MaxAge: time.Hour})
			w, err := sp.Create()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, "From: x@example.com\r\nSubject: refused\r\n\r\nbody\r\n")
			m := &spool.Meta{Account: tc.account, From: tc.sender, Created: time.Now(),
				Failed: []spool.Failure{{Rcpt: "bob@example.net", Status: "5.1.1", Diagnostic: "550 5.1.1 no such user"}}}
			if err := sp.Commit(w, m); err != nil {
				t.Fatal(err)
			}
			q.bounce(m)
			var dsnMeta *spool.Meta
			for _, e := range q.List() {
				if e.Bounce {
					dsnMeta = &e
				}
			}
			if dsnMeta == nil {
				t.Fatal("no bounce was queued")
			}
			f, err := sp.Body(dsnMeta.ID)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(f)
			f.Close()
			msg, err := mail.ReadMessage(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("the bounce does not parse: %v\n%s", err, data)
			}
			from, err := mail.ParseAddress(msg.Header.Get("From"))
			if err != nil {
				t.Fatalf("the bounce's From %q does not parse: %v", msg.Header.Get("From"), err)
			}
			if from.Address != tc.want || from.Name != "Mail Delivery System" {
				t.Fatalf("the bounce's From is %q <%s>, want Mail Delivery System <%s>", from.Name, from.Address, tc.want)
			}
		})
	}
}

// TestQueuedAfterAFailedAttempt checks what `queue list` shows for a
// message queued after its live attempt failed: one attempt, and the next
// try when the account's server is next tried (what the log says), not a
// full backoff later.
func TestQueuedAfterAFailedAttempt(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	sim.SetFault(upstreamsim.Refuse)
	pool := newPool(t, sim, pass)
	out := Deliver(context.Background(), pool, user, []string{"bob@example.net"}, &smtp.MailOptions{}, bytes.NewReader(body(100)))
	h := pool.Health()
	if len(out.Temp) != 1 || h.Healthy {
		t.Fatalf("the attempt did not fail for now: %+v, health %+v", out, h)
	}
	sp, err := spool.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	q := New(Options{Spool: sp, Bus: &events.Bus{}, Pool: func(string) *upstream.Pool { return pool },
		RetryMin: time.Minute, RetryMax: time.Hour, MaxAge: time.Hour})
	w, _ := sp.Create()
	w.Write(body(100))
	m := &spool.Meta{Account: user, From: user, Rcpts: out.Temp, LastError: out.Err.Error(), Attempts: 1}
	if err := q.Add(w, m, false); err != nil {
		t.Fatal(err)
	}
	got, _ := q.Get(m.ID)
	if got.Attempts != 1 {
		t.Errorf("ATTEMPTS %d after a failed attempt, want 1", got.Attempts)
	}
	if !got.NextTry.Equal(h.NextProbe) {
		t.Errorf("next try in %s, but the account's server is tried again in %s", time.Until(got.NextTry).Round(time.Second), time.Until(h.NextProbe).Round(time.Second))
	}
}
