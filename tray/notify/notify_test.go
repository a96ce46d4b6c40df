package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
)

func collect() (*Notifier, *[]string) {
	var got []string
	return New(func(title, body string) { got = append(got, title+" | "+body) }), &got
}

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func TestNeedsAttentionIsToldOncePerChange(t *testing.T) {
	n, got := collect()
	ok := api.Account{Key: "alice@example.com", State: api.AccountOK}
	bad := api.Account{Key: "alice@example.com", State: api.AccountNeedsAttention, Problem: "password rejected", Queued: 2}
	n.Status(api.Status{Accounts: []api.Account{ok}}, t0)
	n.Status(api.Status{Accounts: []api.Account{bad}}, t0)
	n.Status(api.Status{Accounts: []api.Account{bad}}, t0.Add(time.Minute))
	if len(*got) != 1 || !strings.Contains((*got)[0], "password rejected") || !strings.Contains((*got)[0], "2 message(s)") {
		t.Fatalf("got %q, want one notice naming the problem and the held mail", *got)
	}
	n.Status(api.Status{Accounts: []api.Account{ok}}, t0.Add(2*time.Minute))
	n.Status(api.Status{Accounts: []api.Account{bad}}, t0.Add(3*time.Minute))
	if len(*got) != 2 {
		t.Errorf("a second failure after a fix: got %d notices, want 2", len(*got))
	}
}

// An OAuth2 account whose grant was refused gets one "Sign-in needed for
// ADDRESS" notice on the change, and a new one only after it worked again.
func TestSignInNeededIsToldOncePerChange(t *testing.T) {
	n, got := collect()
	ok := api.Account{Key: "bob@contoso.example", Auth: "oauth2", State: api.AccountOK}
	lapsed := api.Account{Key: "bob@contoso.example", Auth: "oauth2", State: api.AccountNeedsAttention, Problem: "sign-in needed", Queued: 3}
	n.Status(api.Status{Accounts: []api.Account{ok}}, t0)
	n.Status(api.Status{Accounts: []api.Account{lapsed}}, t0)
	n.Status(api.Status{Accounts: []api.Account{lapsed}}, t0.Add(time.Minute))
	if len(*got) != 1 || !strings.HasPrefix((*got)[0], "Sign-in needed for bob@contoso.example | ") ||
		!strings.Contains((*got)[0], "3 message(s) are kept") || !strings.Contains((*got)[0], "Sign in again") {
		t.Fatalf("got %q, want one sign-in notice naming the address and the held mail", *got)
	}
	n.Status(api.Status{Accounts: []api.Account{ok}}, t0.Add(2*time.Minute))
	n.Status(api.Status{Accounts: []api.Account{lapsed}}, t0.Add(3*time.Minute))
	if len(*got) != 2 {
		t.Errorf("a second lapse after signing in again: %d notices, want 2", len(*got))
	}
}

func TestMailWaitingOverAnHourIsToldOnce(t *testing.T) {
	n, got := collect()
	s := api.Status{Queued: 3, OldestQueued: t0}
	n.Status(s, t0.Add(30*time.Minute))
	if len(*got) != 0 {
		t.Fatalf("after 30 minutes: %q", *got)
	}
	n.Status(s, t0.Add(61*time.Minute))
	n.Status(s, t0.Add(90*time.Minute))
	if len(*got) != 1 || !strings.Contains((*got)[0], "3 message(s)") {
		t.Fatalf("got %q, want one notice", *got)
	}
	n.Status(api.Status{}, t0.Add(100*time.Minute)) // the queue emptied
	n.Status(api.Status{Queued: 1, OldestQueued: t0.Add(100 * time.Minute)}, t0.Add(170*time.Minute))
	if len(*got) != 2 {
		t.Errorf("mail stuck again after the queue emptied: %d notices, want 2", len(*got))
	}
}

func TestBouncesAreToldOnceForABurst(t *testing.T) {
	n, got := collect()
	for i := 0; i < 20; i++ {
		n.Event(api.Event{Kind: api.EventBounced, Time: t0.Add(time.Duration(i) * time.Second), Error: "550 5.1.1 no such user"})
		n.Event(api.Event{Kind: api.EventDelivered, Time: t0})
	}
	if len(*got) != 1 || !strings.Contains((*got)[0], "550 5.1.1") {
		t.Fatalf("got %q, want one notice with the refusal", *got)
	}
	n.Event(api.Event{Kind: api.EventBounced, Time: t0.Add(time.Hour), Error: "550 5.1.1 no such user"})
	if len(*got) != 2 || !strings.Contains((*got)[1], "20 messages") {
		t.Errorf("got %q, want a second notice counting the quiet ones", *got)
	}
}
