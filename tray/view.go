package tray

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/tray/icons"
)

// View is everything the tray shows, computed from one status snapshot.
// It is a plain value so the decisions can be tested without a tray.
type View struct {
	Icon    icons.State
	Title   string // next to the icon where the platform shows one
	Tooltip string
	// StatusLine is the first, inert menu line.
	StatusLine string
	Accounts   []AccountLine
	// Outbox is the "Outbox: 3 waiting" line; SendNow enables "Send now".
	Outbox  string
	SendNow bool
	Paused  bool
}

// AccountLine is one account's menu line; clicking it opens Page.
type AccountLine struct {
	Key   string
	Label string
	Page  string
}

// Waiting is how long mail may wait before the tray shows "mail waiting"
// rather than "relaying": a message that is retried within minutes is
// normal, one waiting for an hour is worth a look.
const Waiting = time.Hour

// ViewOf decides what the tray shows for s at now.
func ViewOf(s api.Status, now time.Time) View {
	v := View{Paused: s.State == api.Paused}

	var attention []api.Account
	failing, held := 0, 0
	for _, a := range s.Accounts {
		v.Accounts = append(v.Accounts, AccountLine{
			Key:   a.Key,
			Label: accountLabel(a),
			Page:  "/accounts/" + a.Key,
		})
		switch a.State {
		case api.AccountNeedsAttention:
			attention = append(attention, a)
			held += a.Queued
		case api.AccountFailing:
			failing++
		}
	}

	where := listenLabel(s.Listen)
	n := len(s.Accounts)
	switch {
	case s.State == api.Paused:
		v.StatusLine = fmt.Sprintf("Paused: accepting on %s, sending nothing", where)
	case s.State == api.Starting:
		v.StatusLine = "Starting…"
	case s.State == api.Stopping:
		v.StatusLine = "Stopping…"
	case n == 0:
		v.StatusLine = fmt.Sprintf("Listening on %s · no account yet", where)
	default:
		v.StatusLine = fmt.Sprintf("Relaying on %s · %s", where, plural(n, "account", "accounts"))
	}

	if s.Queued == 0 {
		v.Outbox = "Outbox: empty"
	} else {
		v.Outbox = fmt.Sprintf("Outbox: %d waiting", s.Queued)
		// Mail held for an account that needs attention waits for the
		// user, not for a retry.
		v.SendNow = s.State != api.Paused && s.Queued > held
	}

	stale := s.Queued > 0 && !s.OldestQueued.IsZero() && now.Sub(s.OldestQueued) >= Waiting
	switch {
	case len(attention) > 0:
		v.Icon = icons.Attention
		if len(attention) == 1 {
			a := attention[0]
			v.Tooltip = fmt.Sprintf("smtpshim: %s needs attention (%s)", a.Key, problem(a))
			if SignInNeeded(a) {
				v.Tooltip = "smtpshim: sign-in needed for " + a.Key
			}
		} else {
			v.Tooltip = fmt.Sprintf("smtpshim: %d accounts need attention", len(attention))
		}
		v.Title = "Needs attention"
	case s.State == api.Paused:
		v.Icon = icons.Paused
		v.Title = "Paused"
		v.Tooltip = "smtpshim: paused, " + plural(s.Queued, "message", "messages") + " waiting"
	case stale || failing > 0 && s.Queued > 0:
		v.Icon = icons.Waiting
		v.Title = "Mail waiting"
		v.Tooltip = fmt.Sprintf("smtpshim: %s waiting to be sent", plural(s.Queued, "message", "messages"))
		if !s.OldestQueued.IsZero() && stale {
			v.Tooltip += ", the oldest for " + ago(now.Sub(s.OldestQueued))
		}
	default:
		v.Icon = icons.Relaying
		v.Title = "Relaying"
		switch {
		case n == 0:
			v.Tooltip = "smtpshim: add an account in Settings to start sending"
		case s.Queued > 0:
			v.Tooltip = fmt.Sprintf("smtpshim: relaying on %s, %s being retried", where, plural(s.Queued, "message", "messages"))
		default:
			v.Tooltip = fmt.Sprintf("smtpshim: relaying on %s", where)
		}
	}
	return v
}

func accountLabel(a api.Account) string {
	if SignInNeeded(a) {
		// Its settings page, which the line opens, has "Sign in again".
		return a.Key + ": sign-in needed, click to sign in"
	}
	switch a.State {
	case api.AccountNeedsAttention, api.AccountFailing:
		return a.Key + ": " + problem(a)
	case api.AccountOK:
		if a.Queued > 0 {
			return fmt.Sprintf("%s: %d waiting", a.Key, a.Queued)
		}
		return a.Key + ": working"
	default:
		return a.Key + ": not used yet"
	}
}

// SignInNeeded reports whether a's provider refused its OAuth2 sign-in,
// so that only the person signing in again sends its mail.
func SignInNeeded(a api.Account) bool {
	return a.State == api.AccountNeedsAttention && a.Problem == upstream.ProblemSignInNeeded
}

func problem(a api.Account) string {
	if a.Problem != "" {
		return a.Problem
	}
	if a.State == api.AccountNeedsAttention {
		return "needs attention"
	}
	return "server unreachable"
}

// listenLabel names the first listen address the way a user types it into
// a mail client: "localhost:2525" for loopback.
func listenLabel(listen []string) string {
	if len(listen) == 0 {
		return "localhost"
	}
	host, port, err := net.SplitHostPort(listen[0])
	if err != nil {
		return listen[0]
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		host = "localhost"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "all interfaces"
		return "port " + port + " on " + host
	}
	return net.JoinHostPort(host, port)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func ago(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return plural(int(d/(24*time.Hour)), "day", "days")
	case d >= 2*time.Hour:
		return plural(int(d/time.Hour), "hour", "hours")
	case d >= time.Hour:
		return "over an hour"
	default:
		return strings.TrimSuffix(plural(int(d/time.Minute), "minute", "minutes"), "")
	}
}
