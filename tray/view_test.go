package tray

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/tray/icons"
)

var now = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func TestViewNamesTheStateInIconTooltipAndMenu(t *testing.T) {
	alice := api.Account{Key: "alice@example.com", State: api.AccountOK}
	bob := api.Account{Key: "@example.org", State: api.AccountUnused}
	rejected := api.Account{Key: "alice@example.com", State: api.AccountNeedsAttention, Problem: "password rejected", Queued: 2}
	down := api.Account{Key: "alice@example.com", State: api.AccountFailing, Problem: "server unreachable", Queued: 1}
	listen := []string{"127.0.0.1:2525", "[::1]:2525"}
	for _, tc := range []struct {
		name       string
		st         api.Status
		icon       icons.State
		tooltip    string
		statusLine string
		accounts   []string
		outbox     string
		sendNow    bool
		paused     bool
	}{
		{
			name: "relaying", st: api.Status{State: api.Running, Listen: listen, Accounts: []api.Account{alice, bob}},
			icon: icons.Relaying, tooltip: "relaying on localhost:2525",
			statusLine: "Relaying on localhost:2525 · 2 accounts",
			accounts:   []string{"alice@example.com: working", "@example.org: not used yet"},
			outbox:     "Outbox: empty",
		},
		{
			name: "no account yet", st: api.Status{State: api.Running, Listen: listen},
			icon: icons.Relaying, tooltip: "add an account", statusLine: "Listening on localhost:2525 · no account yet",
			outbox: "Outbox: empty",
		},
		{
			name: "password rejected", st: api.Status{State: api.Running, Listen: listen, Accounts: []api.Account{rejected}, Queued: 2, OldestQueued: now.Add(-time.Minute)},
			icon: icons.Attention, tooltip: "alice@example.com needs attention (password rejected)",
			statusLine: "Relaying on localhost:2525 · 1 account",
			accounts:   []string{"alice@example.com: password rejected"},
			outbox:     "Outbox: 2 waiting", sendNow: false, // held for the user
		},
		{
			name: "sign-in needed", st: api.Status{State: api.Running, Listen: listen, Accounts: []api.Account{
				{Key: "bob@contoso.example", Auth: "oauth2", State: api.AccountNeedsAttention, Problem: "sign-in needed", Queued: 1}}, Queued: 1},
			icon: icons.Attention, tooltip: "sign-in needed for bob@contoso.example",
			statusLine: "Relaying on localhost:2525 · 1 account",
			accounts:   []string{"bob@contoso.example: sign-in needed, click to sign in"},
			outbox:     "Outbox: 1 waiting", sendNow: false,
		},
		{
			name: "attention wins over paused", st: api.Status{State: api.Paused, Listen: listen, Accounts: []api.Account{rejected}, Queued: 2},
			icon: icons.Attention, tooltip: "needs attention", statusLine: "Paused: accepting on localhost:2525, sending nothing",
			accounts: []string{"alice@example.com: password rejected"}, outbox: "Outbox: 2 waiting", paused: true,
		},
		{
			name: "paused", st: api.Status{State: api.Paused, Listen: listen, Accounts: []api.Account{alice}, Queued: 1},
			icon: icons.Paused, tooltip: "paused, 1 message waiting", statusLine: "Paused: accepting on localhost:2525, sending nothing",
			accounts: []string{"alice@example.com: working"}, outbox: "Outbox: 1 waiting", paused: true,
		},
		{
			name: "server down, mail waiting", st: api.Status{State: api.Running, Listen: listen, Accounts: []api.Account{down}, Queued: 1, OldestQueued: now.Add(-5 * time.Minute)},
			icon: icons.Waiting, tooltip: "1 message waiting to be sent",
			statusLine: "Relaying on localhost:2525 · 1 account",
			accounts:   []string{"alice@example.com: server unreachable"}, outbox: "Outbox: 1 waiting", sendNow: true,
		},
		{
			name: "retrying briefly is still relaying", st: api.Status{State: api.Running, Listen: listen, Accounts: []api.Account{alice}, Queued: 3, OldestQueued: now.Add(-10 * time.Minute)},
			icon: icons.Relaying, tooltip: "3 messages being retried", statusLine: "Relaying on localhost:2525 · 1 account",
			accounts: []string{"alice@example.com: working"}, outbox: "Outbox: 3 waiting", sendNow: true,
		},
		{
			name: "waiting over an hour", st: api.Status{State: api.Running, Listen: listen, Accounts: []api.Account{alice}, Queued: 3, OldestQueued: now.Add(-3 * time.Hour)},
			icon: icons.Waiting, tooltip: "3 messages waiting to be sent, the oldest for 3 hours", statusLine: "Relaying on localhost:2525 · 1 account",
			accounts: []string{"alice@example.com: working"}, outbox: "Outbox: 3 waiting", sendNow: true,
		},
		{
			name: "LAN listener", st: api.Status{State: api.Running, Listen: []string{"192.168.1.5:25"}, Accounts: []api.Account{alice}},
			icon: icons.Relaying, tooltip: "relaying on 192.168.1.5:25", statusLine: "Relaying on 192.168.1.5:25 · 1 account",
			accounts: []string{"alice@example.com: working"}, outbox: "Outbox: empty",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ViewOf(tc.st, now)
			if v.Icon != tc.icon {
				t.Errorf("icon %s, want %s", v.Icon, tc.icon)
			}
			if !strings.Contains(v.Tooltip, tc.tooltip) {
				t.Errorf("tooltip %q, want it to contain %q", v.Tooltip, tc.tooltip)
			}
			if v.StatusLine != tc.statusLine {
				t.Errorf("status line %q, want %q", v.StatusLine, tc.statusLine)
			}
			var got []string
			for _, a := range v.Accounts {
				got = append(got, a.Label)
			}
			if strings.Join(got, "|") != strings.Join(tc.accounts, "|") {
				t.Errorf("accounts %q, want %q", got, tc.accounts)
			}
			if v.Outbox != tc.outbox || v.SendNow != tc.sendNow || v.Paused != tc.paused {
				t.Errorf("outbox %q sendNow %v paused %v, want %q %v %v", v.Outbox, v.SendNow, v.Paused, tc.outbox, tc.sendNow, tc.paused)
			}
			if v.Icon != icons.Relaying && v.Title == "" {
				t.Error("a state other than relaying has no title")
			}
		})
	}
}
