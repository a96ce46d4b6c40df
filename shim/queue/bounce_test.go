package queue

import (
	"bytes"
	"io"
	"net/mail"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/spool"
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
