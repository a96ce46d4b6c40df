// Package notify decides when smtpshim tells the user something through
// a desktop notification, and shows it. It speaks up once per change of
// state, never once per message: an account starts needing attention,
// mail starts bouncing, mail has waited for more than an hour.
package notify

import (
	"fmt"
	"sync"
	"time"

	"github.com/gen2brain/beeep"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/tray/internal/sessionbus"
)

// StaleAfter is how long mail may wait before the user hears of it.
const StaleAfter = time.Hour

// bounceQuiet is how long after one bounce notice further bounces are
// only counted, so a mail merge to dead addresses gives one notice.
const bounceQuiet = 10 * time.Minute

// Notifier turns status snapshots and events into notifications.
type Notifier struct {
	send func(title, body string)

	mu        sync.Mutex
	attention map[string]bool // accounts already announced as needing attention
	stale     bool            // "mail waiting" already announced
	lastBounc time.Time
	bounces   int // since the last bounce notice
	now       func() time.Time
}

// New returns a Notifier that shows notifications with send.
func New(send func(title, body string)) *Notifier {
	return &Notifier{send: send, attention: map[string]bool{}, now: time.Now}
}

// Status takes a snapshot at time now.
func (n *Notifier) Status(s api.Status, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[string]bool{}
	for _, a := range s.Accounts {
		if a.State != api.AccountNeedsAttention {
			continue
		}
		seen[a.Key] = true
		if n.attention[a.Key] {
			continue
		}
		n.attention[a.Key] = true
		what := a.Problem
		if what == "" {
			what = "it needs attention"
		}
		if a.Problem == upstream.ProblemSignInNeeded {
			// The provider refused the OAuth2 grant (a password change,
			// revoked consent, a sign-in policy): only the person can
			// sign in again.
			kept := "Its mail is kept"
			if a.Queued > 0 {
				kept = fmt.Sprintf("%d message(s) are kept", a.Queued)
			}
			n.send("Sign-in needed for "+a.Key, fmt.Sprintf("The provider wants you to sign in again before smtpshim can send mail from %s. %s until you do: click %s in the smtpshim menu, then Sign in again.", a.Key, kept, a.Key))
			continue
		}
		body := fmt.Sprintf("%s: %s. Its mail is kept until you fix it: open Settings from the smtpshim icon.", a.Key, what)
		if a.Queued > 0 {
			body = fmt.Sprintf("%s: %s. %d message(s) are kept until you fix it: open Settings from the smtpshim icon.", a.Key, what, a.Queued)
		}
		n.send("smtpshim: "+a.Key+" needs attention", body)
	}
	for k := range n.attention {
		if !seen[k] {
			delete(n.attention, k) // fixed: a new failure is news again
		}
	}

	stale := s.Queued > 0 && !s.OldestQueued.IsZero() && now.Sub(s.OldestQueued) >= StaleAfter
	if stale && !n.stale {
		n.send("smtpshim: mail is waiting",
			fmt.Sprintf("%d message(s) could not be sent for over an hour. smtpshim keeps trying; the Outbox in Settings says why.", s.Queued))
	}
	n.stale = stale
}

// Event takes one event from the stream.
func (n *Notifier) Event(e api.Event) {
	if e.Kind != api.EventBounced {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := e.Time
	if now.IsZero() {
		now = n.now()
	}
	n.bounces++
	if !n.lastBounc.IsZero() && now.Sub(n.lastBounc) < bounceQuiet {
		return
	}
	body := "The provider refused a message for good; the sender got a bounce explaining why."
	if e.Error != "" {
		body = "The provider refused a message for good: " + e.Error + ". The sender got a bounce."
	}
	if n.bounces > 1 {
		body = fmt.Sprintf("%d messages were refused for good; their senders got bounces. The latest: %s", n.bounces, e.Error)
	}
	n.send("smtpshim: a message could not be delivered", body)
	n.lastBounc, n.bounces = now, 0
}

// Desktop shows a notification with the platform's notification service
// (D-Bus on Linux, the notification centre on macOS, toasts on Windows).
// A desktop without one gets nothing, and smtpshim carries on.
//
// It returns at once: a slow notification service never holds up the
// tray. Without a session bus (on Linux) it shows nothing, since asking
// for one would start a stray dbus-daemon.
func Desktop(appIcon []byte) func(title, body string) {
	beeep.AppName = "smtpshim"
	return func(title, body string) {
		if !sessionbus.Available() {
			return
		}
		go beeep.Notify(title, body, appIcon)
	}
}
