package shim_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// TestRefusedPasswordHoldsMail: when the provider refuses the password,
// the client's message is kept and the client hears 250 queued with what
// to do (as Postfix's smtp_sasl_auth_soft_bounce); the account needs
// attention; its mail is held, not retried in a loop and not bounced; a
// reload with the new password sends it at once. A refused recipient still
// goes back to the client unchanged.
func TestRefusedPasswordHoldsMail(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	dir := t.TempDir()
	r := startRig(t, sim, rigOptions{password: "expired-password", tune: func(c *config.Config) {
		c.SetPath(filepath.Join(dir, "config.toml"))
		c.MaxAge = config.Duration(500 * time.Millisecond)
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
	}})
	rec := rig.Record(t, r.eng.Bus())

	var ids []string
	for _, subject := range []string{"scan 1", "scan 2"} {
		s := send(t, r.addr, simUser, []string{"bob@example.net"}, message(subject, 500))
		id := mustQueued(t, s)
		want := "2.0.0 queued as " + id + `: the provider refused the password for alice@example.com; update it with "smtpshim account add alice@example.com"`
		if s.text != want {
			t.Fatalf("reply %q, want %q", s.text, want)
		}
		ids = append(ids, id)
	}
	ev := rec.WaitFor(t, eventWait, "an account_health event asking for attention", func(e events.Event) bool {
		return e.Kind == events.AccountHealth && e.Attention
	})
	if ev.Account != simUser || ev.Problem != "password rejected" || ev.Error == "" || ev.Hint == "" {
		t.Fatalf("event %+v", ev)
	}
	st := accountOf(t, r.eng.Status(), simUser)
	if st.State != api.AccountNeedsAttention || st.Problem != "password rejected" {
		t.Fatalf("status %+v", st)
	}

	// Held: past retry_max and max_age, nothing is tried and nothing bounces.
	time.Sleep(time.Second)
	if n := sim.AuthFailures(); n != 1 {
		t.Fatalf("the refused password was tried %d times, want once", n)
	}
	if n := len(r.eng.Queue().List()); n != 2 {
		t.Fatalf("%d messages queued, want both held", n)
	}
	if n := rec.Count(func(e events.Event) bool { return e.Kind == events.Bounced }); n != 0 {
		t.Fatalf("%d bounces of held mail", n)
	}

	if err := r.store.Set(context.Background(), simUser, simPass); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		rec.WaitFor(t, eventWait, "the held message delivered after the new password", rig.IsEvent(events.Delivered, id))
	}
	waitSpoolEmpty(t, r)
	if st := accountOf(t, r.eng.Status(), simUser); st.State != api.AccountOK {
		t.Fatalf("status after the fix %+v", st)
	}

	// A refused recipient is the message's problem: unchanged, at once.
	sim.SetFault(upstreamsim.RejectSomeRcpt)
	s := send(t, r.addr, simUser, []string{"reject@example.net"}, message("refused rcpt", 100))
	var se *smtp.SMTPError
	if err := s.rcptErr["reject@example.net"]; !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("refused recipient: %v, want the provider's 550", err)
	}
}

// lockedStore is a keychain that cannot answer, as with no session bus.
type lockedStore struct{ secrets.Store }

func (lockedStore) Get(context.Context, string) (string, error) {
	return "", fmt.Errorf("no D-Bus session: %w", secrets.ErrUnavailable)
}

// TestCredentialSourceCheckedAtStart: an account whose password can't be
// read is reported at start, by name, as "keychain unavailable" (or
// "password command failed"), not as an unreachable server, without
// connecting; its mail is kept.
func TestCredentialSourceCheckedAtStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		o       rigOptions
		problem string
	}{
		{"keychain", rigOptions{store: lockedStore{secrets.NewMemory()}}, "keychain unavailable"},
		{"password-command", rigOptions{tune: func(c *config.Config) { c.Accounts[0].PasswordCommand = "exit 3" }}, "password command failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, false)
			warned := make(chan struct{})
			tc.o.onLog = map[string]func(){
				"cannot get the password of an account; its mail cannot go out until this is fixed": func() { close(warned) },
			}
			r := startRig(t, sim, tc.o)
			rig.WaitUntil(t, outcomeWait, "the account's status to name the problem", func() bool {
				return accountOf(t, r.eng.Status(), simUser).Problem == tc.problem
			})
			select {
			case <-warned:
			case <-time.After(outcomeWait):
				t.Fatal("no start-up warning naming the account")
			}
			st := accountOf(t, r.eng.Status(), simUser)
			if st.State != api.AccountNeedsAttention || st.Hint == "" || strings.Contains(st.Hint, "unreachable") {
				t.Fatalf("status %+v", st)
			}
			if sim.Connections() != 0 {
				t.Fatal("checking the credential connected to the provider")
			}
			id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("kept", 100)))
			if m, ok := r.eng.Queue().Get(id); !ok || m.LastError == "" {
				t.Fatalf("queued entry %+v", m)
			}
		})
	}
}

// accountOf finds an account in the status.
func accountOf(t testing.TB, st api.Status, key string) api.Account {
	t.Helper()
	for _, a := range st.Accounts {
		if a.Key == key {
			return a
		}
	}
	t.Fatalf("account %s is not in the status: %+v", key, st.Accounts)
	return api.Account{}
}
