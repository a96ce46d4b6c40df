package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/spool"
)

// queueBackend is the running engine (over its control socket) or, when
// none runs, the spool itself under its lock.
type queueBackend interface {
	List() ([]api.QueueEntry, error)
	Get(id string) (api.QueueEntry, error)
	Retry(id string) (int, error)
	Delete(id string) error
}

type offlineQueue struct{ s *spool.Spool }

func (o offlineQueue) entry(m *spool.Meta) api.QueueEntry {
	e := shim.QueueEntryOf(m, o.s.Subject(m.ID))
	if _, paused := o.s.Paused(); paused {
		e.Held, e.HeldBy = true, "paused"
	}
	return e
}

func (o offlineQueue) List() ([]api.QueueEntry, error) {
	ms, err := o.s.List()
	out := make([]api.QueueEntry, len(ms))
	for i, m := range ms {
		out[i] = o.entry(m)
	}
	return out, err
}

func (o offlineQueue) Get(id string) (api.QueueEntry, error) {
	m, err := o.s.Get(id)
	if err != nil {
		return api.QueueEntry{}, err
	}
	return o.entry(m), nil
}

func (o offlineQueue) Retry(id string) (int, error) {
	if id != "" {
		if _, err := o.s.Get(id); err != nil {
			return 0, err
		}
		return 1, nil
	}
	ms, err := o.s.List()
	return len(ms), err
}

func (o offlineQueue) Delete(id string) error { return o.s.Remove(id) }

func (a *app) queueBackend() (queueBackend, func(), bool, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, false, err
	}
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return nil, nil, false, exit(exConfig, "%v", err)
	}
	if c, err := control.Dial(dir); err == nil {
		return c, func() {}, true, nil
	}
	s, err := spool.Open(dir)
	if errors.Is(err, spool.ErrLocked) {
		return nil, nil, false, exit(exTempFail, "smtpshim is running but does not answer on %s; try again in a moment", control.SocketPath(dir))
	}
	if err != nil {
		return nil, nil, false, exit(exIOErr, "%v", err)
	}
	return offlineQueue{s}, func() { s.Close() }, false, nil
}

func (a *app) queue(args []string) error {
	if len(args) == 0 {
		args = []string{"list"}
	}
	switch args[0] {
	case "list", "ls":
		if err := noArgs("queue list", args[1:]); err != nil {
			return err
		}
	case "retry", "flush":
		if len(args) > 2 {
			return exit(exUsage, "usage: smtpshim queue retry [ID] (one ID, or none for all)")
		}
	}
	b, done, running, err := a.queueBackend()
	if err != nil {
		return err
	}
	defer done()
	switch args[0] {
	case "list", "ls":
		ms, err := b.List()
		if err != nil && len(ms) == 0 {
			return exit(exIOErr, "%v", err)
		}
		printQueue(a.stdout, ms, time.Now(), running)
		if err != nil {
			fmt.Fprintf(a.stderr, "some entries could not be read: %v\n", err)
		}
		return nil
	case "show":
		if len(args) != 2 {
			return exit(exUsage, "usage: smtpshim queue show ID")
		}
		m, err := b.Get(args[1])
		if err != nil {
			return exit(exNoUser, "%v (see \"smtpshim queue list\")", err)
		}
		printEntry(a.stdout, m, time.Now(), running)
		return nil
	case "retry", "flush":
		id := ""
		if len(args) > 1 {
			id = args[1]
		}
		// What is about to be retried, read first: a retry that works
		// takes the messages out of the queue.
		var ms []api.QueueEntry
		if id != "" {
			if m, err := b.Get(id); err == nil {
				ms = []api.QueueEntry{m}
			}
		} else {
			ms, _ = b.List()
		}
		n, err := b.Retry(id)
		if err != nil {
			return exit(exNoUser, "%v (see \"smtpshim queue list\")", err)
		}
		printRetry(a.stdout, n, ms, running)
		return nil
	case "delete", "rm", "remove":
		if len(args) != 2 {
			return exit(exUsage, "usage: smtpshim queue delete ID")
		}
		if err := b.Delete(args[1]); err != nil {
			return exit(exNoUser, "%v (see \"smtpshim queue list\")", err)
		}
		fmt.Fprintf(a.stdout, "deleted %s; it will not be sent\n", args[1])
		return nil
	}
	return exit(exUsage, "unknown queue command %q (list, show, retry, delete)", args[0])
}

// notRunning is said under the queue when no relay runs: the times of
// the next tries are then moot.
const notRunning = "smtpshim is not running: queued mail is tried as soon as \"smtpshim serve\" starts"

func printQueue(w io.Writer, ms []api.QueueEntry, now time.Time, running bool) {
	if len(ms) == 0 {
		fmt.Fprintln(w, "the queue is empty: no message is waiting")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tFROM\tRCPTS\tSIZE\tATTEMPTS\tNEXT TRY\tLAST ERROR")
	for _, m := range ms {
		next := until(m.NextTry, now)
		switch {
		case isPaused(m):
			next = "paused"
		case m.Held:
			next = "held"
		case !running:
			next = "at start"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", m.ID, human(now.Sub(m.Created)), m.From, len(m.Rcpts), m.Size, m.Attempts, next, clip(m.LastError, 70))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s) queued\n", len(ms))
	for _, h := range holds(ms) {
		fmt.Fprintln(w, h.why())
	}
	if !running && slices.ContainsFunc(ms, func(m api.QueueEntry) bool { return !m.Held }) {
		fmt.Fprintln(w, notRunning)
	}
}

// isPaused reports whether m waits for "smtpshim resume". A relay too old
// to say why a message is held was paused or had an account problem; say
// paused, as it did.
func isPaused(m api.QueueEntry) bool {
	return m.HeldBy == "paused" || (m.Held && m.HeldBy == "")
}

// hold is one reason messages wait for the user, and how many wait for it.
type hold struct {
	account, problem string // account "" means paused
	n                int
}

func (h hold) why() string {
	if h.account == "" {
		return "smtpshim is paused: nothing is sent until \"smtpshim resume\""
	}
	return fmt.Sprintf("%d message(s) of %s held (%s): they go out by themselves once the account is fixed; see \"smtpshim status\"", h.n, h.account, h.problem)
}

// holds groups the held messages of ms by reason: the pause first, then
// each account in the order met.
func holds(ms []api.QueueEntry) []hold {
	var out []hold
	add := func(account, problem string) {
		for i := range out {
			if out[i].account == account {
				out[i].n++
				return
			}
		}
		out = append(out, hold{account, problem, 1})
	}
	for _, m := range ms {
		if isPaused(m) {
			add("", "")
		}
	}
	for _, m := range ms {
		if m.Held && !isPaused(m) {
			add(m.Account, m.HeldBy)
		}
	}
	return out
}

// printRetry says what a retry of the n messages ms does: held ones stay
// held, whatever the retry.
func printRetry(w io.Writer, n int, ms []api.QueueEntry, running bool) {
	if n == 0 {
		fmt.Fprintln(w, "the queue is empty: nothing to retry")
		return
	}
	hs := holds(ms)
	held := 0
	for _, h := range hs {
		held += h.n
	}
	switch {
	case held >= n:
	case !running:
		fmt.Fprintf(w, "smtpshim is not running: the %d queued message(s) will be tried as soon as it starts\n", n-held)
	default:
		fmt.Fprintf(w, "retrying %d message(s) now\n", n-held)
	}
	for _, h := range hs {
		fmt.Fprintln(w, h.why())
	}
}

func printEntry(w io.Writer, m api.QueueEntry, now time.Time, running bool) {
	fmt.Fprintf(w, "ID:          %s\n", m.ID)
	fmt.Fprintf(w, "Account:     %s\n", m.Account)
	fmt.Fprintf(w, "From:        %s\n", m.From)
	fmt.Fprintf(w, "To:          %s\n", strings.Join(m.Rcpts, ", "))
	if m.Subject != "" {
		fmt.Fprintf(w, "Subject:     %s\n", m.Subject)
	}
	fmt.Fprintf(w, "Size:        %d bytes\n", m.Size)
	fmt.Fprintf(w, "Queued:      %s (%s ago)\n", m.Created.Local().Format(time.RFC1123), human(now.Sub(m.Created)))
	fmt.Fprintf(w, "Attempts:    %d\n", m.Attempts)
	switch {
	case isPaused(m):
		fmt.Fprintf(w, "Next try:    when smtpshim resumes: it is paused (\"smtpshim resume\")\n")
	case m.Held:
		fmt.Fprintf(w, "Next try:    held: %s for %s; it goes out by itself once the account is fixed (see \"smtpshim status\")\n", m.HeldBy, m.Account)
	case !running:
		fmt.Fprintf(w, "Next try:    when smtpshim starts (\"smtpshim serve\")\n")
	default:
		fmt.Fprintf(w, "Next try:    %s\n", until(m.NextTry, now))
	}
	if m.LastError != "" {
		fmt.Fprintf(w, "Last error:  %s\n", m.LastError)
	}
	if m.Hint != "" {
		fmt.Fprintf(w, "Hint:        %s\n", m.Hint)
	}
	for _, f := range m.Refused {
		fmt.Fprintf(w, "Refused:     %s: %s\n", f.Rcpt, f.Diagnostic)
	}
	if m.Bounce {
		fmt.Fprintf(w, "This is a bounce (delivery report) to the sender.\n")
	}
}

func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func until(t, now time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + human(t.Sub(now))
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
