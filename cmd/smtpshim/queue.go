package main

import (
	"errors"
	"fmt"
	"io"
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
	_, e.Held = o.s.Paused()
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
		printQueue(a.stdout, ms, time.Now())
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
			return exit(exNoUser, "%v", err)
		}
		printEntry(a.stdout, m, time.Now())
		return nil
	case "retry", "flush":
		id := ""
		if len(args) > 1 {
			id = args[1]
		}
		n, err := b.Retry(id)
		if err != nil {
			return exit(exNoUser, "%v", err)
		}
		if !running {
			fmt.Fprintf(a.stdout, "smtpshim is not running: the %d queued message(s) will be tried as soon as it starts\n", n)
			return nil
		}
		fmt.Fprintf(a.stdout, "retrying %d message(s) now\n", n)
		return nil
	case "delete", "rm", "remove":
		if len(args) != 2 {
			return exit(exUsage, "usage: smtpshim queue delete ID")
		}
		if err := b.Delete(args[1]); err != nil {
			return exit(exNoUser, "%v", err)
		}
		fmt.Fprintf(a.stdout, "deleted %s; it will not be sent\n", args[1])
		return nil
	}
	return exit(exUsage, "unknown queue command %q (list, show, retry, delete)", args[0])
}

func printQueue(w io.Writer, ms []api.QueueEntry, now time.Time) {
	if len(ms) == 0 {
		fmt.Fprintln(w, "the queue is empty: all mail has been delivered")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tFROM\tRCPTS\tSIZE\tATTEMPTS\tNEXT TRY\tLAST ERROR")
	held := false
	for _, m := range ms {
		next := until(m.NextTry, now)
		if m.Held {
			next, held = "paused", true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", m.ID, human(now.Sub(m.Created)), m.From, len(m.Rcpts), m.Size, m.Attempts, next, clip(m.LastError, 70))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s) queued\n", len(ms))
	if held {
		fmt.Fprintln(w, "smtpshim is paused: nothing is sent until \"smtpshim resume\"")
	}
}

func printEntry(w io.Writer, m api.QueueEntry, now time.Time) {
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
	if m.Held {
		fmt.Fprintf(w, "Next try:    when smtpshim resumes (if it is paused), or when the account's problem is fixed (see smtpshim status)\n")
	} else {
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
