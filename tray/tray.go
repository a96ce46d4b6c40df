package tray

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/tray/notify"
)

// Options configure Run.
type Options struct {
	Engine    Engine
	Pages     Pages
	Autostart Autostart // nil: no "Start at login" item
	// Notify shows a desktop notification; nil shows none.
	Notify func(title, body string)
	Log    *slog.Logger
	// LogPath is the file "Open log" opens; empty opens the Activity page.
	LogPath string
	// FirstRun opens the setup page by itself when no account is
	// configured. It is off when smtpshim was started at login, which
	// opens no window.
	FirstRun bool
	// Quit is called when the user picks "Quit": it stops the engine.
	Quit func()
	// OpenFile opens a file with the desktop's default application.
	OpenFile func(path string) error
}

// action is a menu click, as the controller sees it.
type action struct {
	kind string // "account", "outbox", "sendnow", "pause", "settings", "guide", "log", "autostart", "quit"
	key  string // the account, for "account"
}

// ui is what the controller drives: the real tray, or nothing at all when
// the desktop has no tray host.
type ui interface {
	apply(View)
	setAutostart(on bool)
	quit()
}

// controller turns engine state into views and clicks into commands.
type controller struct {
	o     Options
	ui    ui
	now   func() time.Time
	notes *notify.Notifier

	mu   sync.Mutex
	st   api.Status
	have bool
	view View
	// wake is when the view or a notice next changes by the clock alone
	// (see clockChange), or zero: then the tray arms no timer at all.
	wake time.Time
}

func newController(o Options, u ui) *controller {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Notify == nil {
		o.Notify = func(string, string) {}
	}
	return &controller{o: o, ui: u, now: time.Now, notes: notify.New(o.Notify)}
}

// run watches the engine and handles actions until ctx ends.
func (c *controller) run(ctx context.Context, actions <-chan action) {
	items := make(chan api.WatchItem, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watch(ctx, items)
	}()
	defer wg.Wait()

	if c.o.Autostart != nil {
		if on, err := c.o.Autostart.Enabled(); err == nil {
			c.ui.setAutostart(on)
		}
	}
	refresh := time.NewTimer(time.Hour)
	refresh.Stop()
	// The clock changes what the tray shows only while mail waits ("mail
	// waiting" after an hour, and its notice): one timer, armed for that
	// moment, and none while nothing is queued. An idle tray must not
	// wake the machine.
	clock := time.NewTimer(time.Hour)
	clock.Stop()
	defer clock.Stop()
	var armed time.Time
	rearm := func() {
		c.mu.Lock()
		next := c.wake
		c.mu.Unlock()
		if next.Equal(armed) {
			return
		}
		armed = next
		clock.Stop()
		if !next.IsZero() {
			clock.Reset(min(time.Until(next), maxClockWait))
		}
	}
	firstRunDone := !c.o.FirstRun
	for {
		rearm()
		select {
		case <-ctx.Done():
			return
		case it := <-items:
			switch {
			case it.Status != nil:
				c.setStatus(*it.Status)
				if !firstRunDone {
					firstRunDone = true
					if len(it.Status.Accounts) == 0 {
						c.open("/setup")
					}
				}
			case it.Event != nil:
				c.notes.Event(*it.Event)
				// The snapshot says it all in one consistent piece; a
				// burst of events costs one read of it.
				refresh.Reset(150 * time.Millisecond)
			}
		case <-refresh.C:
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := c.o.Engine.Status(rctx)
			cancel()
			if err == nil {
				c.setStatus(s)
			}
		case <-clock.C:
			armed = time.Time{}
			c.mu.Lock()
			s, have := c.st, c.have
			c.mu.Unlock()
			if have {
				c.setStatus(s)
			}
		case a := <-actions:
			c.handle(ctx, a)
		}
	}
}

func (c *controller) setStatus(s api.Status) {
	now := c.now()
	v := ViewOf(s, now)
	c.mu.Lock()
	c.st, c.have, c.view, c.wake = s, true, v, clockChange(s, now)
	c.mu.Unlock()
	c.ui.apply(v)
	c.notes.Status(s, now)
}

// maxClockWait bounds one wait of the clock timer. A monotonic timer
// stands still while the machine sleeps, so a long wait would end late
// by the length of a suspend; mail that waits is checked at least this
// often.
const maxClockWait = 5 * time.Minute

// clockChange returns the first moment after now at which the tray's
// view of s (ViewOf) or a notice about it (notify.Notifier.Status)
// changes with nothing but time passing, or the zero time when none
// will: with nothing queued, what the tray shows depends on the engine's
// events alone.
func clockChange(s api.Status, now time.Time) time.Time {
	if s.Queued == 0 || s.OldestQueued.IsZero() {
		return time.Time{}
	}
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	consider(s.OldestQueued.Add(Waiting))           // "mail waiting"
	consider(s.OldestQueued.Add(notify.StaleAfter)) // its notice
	if age := now.Sub(s.OldestQueued); age >= Waiting {
		// The tooltip says how long the oldest has waited (see ago): in
		// hours up to two days, then in days.
		step := time.Hour
		if age >= 48*time.Hour {
			step = 24 * time.Hour
		}
		consider(s.OldestQueued.Add(age.Truncate(step) + step))
	}
	return next
}

// watch keeps a Watch stream open, reconnecting after a break: the engine
// may be restarting, or still starting up.
func (c *controller) watch(ctx context.Context, items chan<- api.WatchItem) {
	wait := 250 * time.Millisecond
	said := false
	for ctx.Err() == nil {
		got := false
		err := c.o.Engine.Watch(ctx, func(it api.WatchItem) {
			got = true
			select {
			case items <- it:
			case <-ctx.Done():
			}
		})
		if ctx.Err() != nil {
			return
		}
		if got {
			wait, said = 250*time.Millisecond, false
		}
		if !said && err != nil {
			c.o.Log.Warn("the tray lost touch with the relay; reconnecting", "err", err)
			said = true
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (c *controller) handle(ctx context.Context, a action) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.mu.Lock()
	paused := c.view.Paused
	c.mu.Unlock()
	switch a.kind {
	case "account":
		c.open("/accounts/" + a.key)
	case "outbox":
		c.open("/outbox")
	case "settings":
		c.open("/")
	case "guide":
		c.open("/guide")
	case "log":
		if c.o.LogPath != "" && c.o.OpenFile != nil {
			if err := c.o.OpenFile(c.o.LogPath); err == nil {
				return
			}
		}
		c.open("/activity")
	case "sendnow":
		if err := c.o.Engine.Retry(cctx); err != nil {
			c.fail("Could not send now", err)
		}
	case "pause":
		// A checkbox does not toggle itself: it shows what the engine
		// says, once the engine has done it.
		var err error
		if paused {
			err = c.o.Engine.Resume(cctx)
		} else {
			err = c.o.Engine.Pause(cctx)
		}
		if err != nil {
			c.fail("Could not pause or resume sending", err)
			return
		}
		if s, err := c.o.Engine.Status(cctx); err == nil {
			c.setStatus(s)
		}
	case "autostart":
		if c.o.Autostart == nil {
			return
		}
		on, err := c.o.Autostart.Enabled()
		if err == nil {
			err = c.o.Autostart.Set(!on)
		}
		if err != nil {
			c.fail("Could not change start at login", err)
		}
		if on, err := c.o.Autostart.Enabled(); err == nil {
			c.ui.setAutostart(on)
		}
	case "quit":
		if c.o.Quit != nil {
			c.o.Quit()
		}
		c.ui.quit()
	}
}

func (c *controller) open(path string) {
	if c.o.Pages == nil {
		return
	}
	if err := c.o.Pages.Open(path); err != nil {
		c.o.Log.Warn("could not open the settings page in a browser", "err", err)
	}
}

func (c *controller) fail(what string, err error) {
	c.o.Log.Error(what, "err", err)
	c.o.Notify("smtpshim: "+what, err.Error())
}
