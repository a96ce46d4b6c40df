package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/spool"
)

// running loads the config and returns a client for the relay that serves
// its spool, or an error that says no relay runs and how to start one.
func (a *app) running() (*config.Config, *control.Client, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return nil, nil, exit(exConfig, "%v", err)
	}
	c, err := control.Dial(dir)
	if err != nil {
		msg := fmt.Sprintf("smtpshim is not running (nothing answers on %s); start it with \"smtpshim serve\"", control.SocketPath(dir))
		if _, paused := spool.PausedIn(dir); paused {
			msg += "; delivery is paused, and stays paused when it starts"
		}
		return nil, nil, exit(exUnavailable, "%s", msg)
	}
	return cfg, c, nil
}

// sameFile reports whether two config paths name the same file.
func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if fa, err := os.Stat(a); err == nil {
		if fb, err := os.Stat(b); err == nil {
			return os.SameFile(fa, fb)
		}
	}
	aa, _ := filepath.Abs(a)
	bb, _ := filepath.Abs(b)
	return aa == bb
}

func (a *app) status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	asJSON := fs.Bool("json", false, "print JSON for scripts (with --watch: one JSON object per line)")
	follow := fs.Bool("watch", false, "keep running and print every event as it happens")
	if err := fs.Parse(args); err != nil {
		return exit(exUsage, "%v", err)
	}
	if fs.NArg() > 0 {
		return exit(exUsage, "usage: smtpshim status [--json] [--watch]")
	}
	_, c, err := a.running()
	if err != nil {
		return err
	}
	defer c.Close()
	if *follow {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return a.watch(ctx, c, *asJSON)
	}
	st, err := c.Status()
	if err != nil {
		return exit(exUnavailable, "%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(a.stdout, st, time.Now())
	return nil
}

// watch prints the status and then one line per event until ctx ends. A
// stream cut short because this reader fell behind is picked up again
// from a fresh status; a relay that stops ends the command.
func (a *app) watch(ctx context.Context, c *control.Client, asJSON bool) error {
	enc := json.NewEncoder(a.stdout)
	first := true
	for {
		err := c.Watch(ctx, func(it api.WatchItem) error {
			if asJSON {
				return enc.Encode(it)
			}
			switch {
			case it.Status != nil && first:
				printStatus(a.stdout, *it.Status, time.Now())
				fmt.Fprintln(a.stdout, "--- following events (Ctrl-C to stop) ---")
				first = false
			case it.Status != nil:
				fmt.Fprintf(a.stdout, "%s (events may have been missed; status: %s, %d queued)\n", time.Now().Format(time.TimeOnly), it.Status.State, it.Status.Queued)
			case it.Event != nil:
				fmt.Fprintln(a.stdout, formatEvent(*it.Event))
			}
			return nil
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, control.ErrStreamEnded):
			st, serr := c.Status()
			if serr != nil || st.State == api.Stopping {
				fmt.Fprintln(a.stderr, "smtpshim stopped")
				return nil
			}
			continue // fell behind: start over from a fresh status
		default:
			return exit(exUnavailable, "%v", err)
		}
	}
}

func printStatus(w io.Writer, st api.Status, now time.Time) {
	state := string(st.State)
	if st.State == api.Paused {
		state = "PAUSED: mail is accepted and queued, nothing is sent until \"smtpshim resume\""
		if !st.PausedSince.IsZero() {
			state = fmt.Sprintf("PAUSED for %s: mail is accepted and queued, nothing is sent until \"smtpshim resume\"", human(now.Sub(st.PausedSince)))
		}
	}
	fmt.Fprintf(w, "smtpshim %s: %s\n", st.Version, state)
	fmt.Fprintf(w, "listening on %s\n", strings.Join(st.Listen, ", "))
	if st.ConfigPath != "" {
		fmt.Fprintf(w, "config      %s\n", st.ConfigPath)
	}
	q := fmt.Sprintf("queue       %d message(s) waiting", st.Queued)
	if st.Queued > 0 && !st.OldestQueued.IsZero() {
		q += fmt.Sprintf(", the oldest for %s (smtpshim queue list)", human(now.Sub(st.OldestQueued)))
	}
	fmt.Fprintln(w, q)
	fmt.Fprintf(w, "since start %d delivered, %d bounced\n", st.Delivered, st.Bounced)
	if len(st.Accounts) == 0 {
		fmt.Fprintln(w, "no accounts: every sender is refused; add one with \"smtpshim account add you@example.com\"")
	} else {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCOUNT\tSTATE\tSERVER\tQUEUED\tDELIVERED\tPROBLEM")
		for _, ac := range st.Accounts {
			problem := ac.Problem
			if ac.LastError != "" {
				if problem != "" {
					problem += ": "
				}
				problem += clip(ac.LastError, 80)
			}
			state := accountState(ac.State)
			if ac.State != api.AccountOK && ac.State != api.AccountUnused && !ac.Since.IsZero() {
				state += " for " + human(now.Sub(ac.Since))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", ac.Key, state, ac.Server, ac.Queued, ac.Delivered, problem)
		}
		tw.Flush()
		for _, ac := range st.Accounts {
			if ac.Hint != "" {
				fmt.Fprintf(w, "hint for %s: %s\n", ac.Key, ac.Hint)
			}
		}
	}
	if le := st.LastError; le != nil {
		_, what, _ := strings.Cut(formatEvent(*le), " ") // without the time
		fmt.Fprintf(w, "\nlast problem (%s ago): %s\n", human(now.Sub(le.Time)), what)
	}
}

func accountState(s api.AccountState) string {
	switch s {
	case api.AccountUnused:
		return "not used yet"
	case api.AccountNeedsAttention:
		return "NEEDS ATTENTION"
	case api.AccountFailing:
		return "failing"
	}
	return string(s)
}

// formatEvent is one readable line for an event.
func formatEvent(e api.Event) string {
	var b strings.Builder
	b.WriteString(e.Time.Local().Format(time.TimeOnly))
	b.WriteString(" ")
	b.WriteString(string(e.Kind))
	if e.Account != "" {
		b.WriteString(" " + e.Account)
	}
	if e.MessageID != "" {
		b.WriteString(" id=" + e.MessageID)
	}
	if len(e.Rcpts) > 0 {
		b.WriteString(" to " + strings.Join(e.Rcpts, ", "))
	}
	switch e.Kind {
	case api.EventState:
		b.WriteString(": " + string(e.State))
	case api.EventQueueChanged:
		fmt.Fprintf(&b, ": %d waiting", e.Queued)
	case api.EventRetry:
		fmt.Fprintf(&b, ": %d message(s) due now", e.Count)
	case api.EventAccount:
		if as := e.AccountState; as != nil {
			b.WriteString(": " + accountState(as.State))
			if as.Problem != "" {
				b.WriteString(" (" + as.Problem + ")")
			}
		}
	case api.EventReloaded:
		if r := e.Reload; r != nil {
			if len(r.Applied) == 0 {
				b.WriteString(": nothing changed")
			} else {
				b.WriteString(": applied " + strings.Join(r.Applied, ", "))
			}
			for _, s := range r.NeedsRestart {
				b.WriteString("; " + s)
			}
		}
	}
	if e.Error != "" {
		b.WriteString(": " + clip(e.Error, 200))
	}
	if e.Hint != "" {
		b.WriteString(" (hint: " + e.Hint + ")")
	}
	return b.String()
}

func (a *app) pause(args []string, on bool) error {
	name := "resume"
	if on {
		name = "pause"
	}
	if len(args) > 0 {
		return exit(exUsage, "usage: smtpshim %s", name)
	}
	_, c, err := a.running()
	if err != nil {
		return err
	}
	defer c.Close()
	before, err := c.Status()
	if err != nil {
		return exit(exTempFail, "%v", err)
	}
	switch wasPaused := before.State == api.Paused; {
	case on && wasPaused:
		fmt.Fprintf(a.stdout, "smtpshim is already paused (for %s): %d message(s) waiting; \"smtpshim resume\" ends the pause\n", human(time.Since(before.PausedSince)), before.Queued)
		return nil
	case !on && !wasPaused && before.Queued == 0:
		fmt.Fprintln(a.stdout, "smtpshim is not paused: nothing to resume")
		return nil
	case !on && !wasPaused:
		fmt.Fprintf(a.stdout, "smtpshim is not paused: nothing to resume; to try the %d waiting message(s) now, run \"smtpshim queue retry\"\n", before.Queued)
		return nil
	}
	if on {
		st, err := c.Pause()
		if err != nil {
			return exit(exTempFail, "%v", err)
		}
		fmt.Fprintf(a.stdout, "paused: mail is still accepted and queued (%d waiting), and nothing is sent until \"smtpshim resume\"; this holds across restarts\n", st.Queued)
		return nil
	}
	st, err := c.Resume()
	if err != nil {
		return exit(exTempFail, "%v", err)
	}
	fmt.Fprintf(a.stdout, "resumed: sending the %d queued message(s) now\n", st.Queued)
	return nil
}

func (a *app) reload(args []string) error {
	if len(args) > 0 {
		return exit(exUsage, "usage: smtpshim reload")
	}
	cfg, c, err := a.running()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := a.checkSameConfig(c, cfg); err != nil {
		return exit(exUnavailable, "%v", err)
	}
	res, err := c.Reload()
	if err != nil {
		return exit(exConfig, "the running smtpshim kept its old settings: %v", err)
	}
	printReload(a.stdout, res)
	return nil
}

// checkSameConfig refuses to act on a relay that runs with another
// config file: it would not read the file the user means.
func (a *app) checkSameConfig(c *control.Client, cfg *config.Config) error {
	st, err := c.Status()
	if err != nil {
		return err
	}
	if !sameFile(st.ConfigPath, cfg.Path()) {
		return fmt.Errorf("no running smtpshim uses %s (the one using its spool directory runs with %s); start one with \"smtpshim --config %s serve\"", cfg.Path(), st.ConfigPath, cfg.Path())
	}
	return nil
}

func printReload(w io.Writer, res api.ReloadResult) {
	if len(res.Applied) == 0 {
		// Stored passwords are not in the file; a reload makes the relay
		// log in afresh, so a new one counts from the next message.
		fmt.Fprintln(w, "the running smtpshim reloaded its settings: no setting that applies while running changed; passwords are read again at the next login, so a new one is used from the next message")
	} else {
		fmt.Fprintf(w, "the running smtpshim now uses the new settings: %s\n", strings.Join(res.Applied, ", "))
	}
	for _, s := range res.NeedsRestart {
		fmt.Fprintln(w, s)
	}
}
