//go:build !darwin || cgo

package tray

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"fyne.io/systray"

	"github.com/smtpshim/smtpshim/tray/icons"
	"github.com/smtpshim/smtpshim/tray/internal/sessionbus"
)

// maxAccountLines is how many account lines the menu holds; the items
// are made once (systray cannot insert items later) and hidden when
// unused. More accounts than that get one "and N more…" line.
const maxAccountLines = 8

// Run shows the tray icon and menu and runs until ctx ends or the user
// picks Quit. When the desktop has no tray host it says so once, keeps
// the relay running, and returns only when ctx ends: smtpshim never fails
// for lack of a tray.
//
// On macOS it must be called from the main goroutine.
func Run(ctx context.Context, o Options) error {
	if !Available() {
		return runWithoutTray(ctx, o)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &systrayUI{actions: make(chan action, 16), panel: Panel()}
	c := newController(o, t)
	if runtime.GOOS != "windows" && runtime.GOOS != "darwin" {
		if ok, err := sessionbus.HasOwner("org.kde.StatusNotifierWatcher"); err == nil && !ok && o.Log != nil {
			o.Log.Warn("no tray host on this desktop (GNOME needs the AppIndicator extension): smtpshim keeps relaying, and its icon appears when a tray host starts; open the settings with \"smtpshim settings\"")
		}
	}
	var wg sync.WaitGroup
	onReady := func() {
		t.build(o.Autostart != nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx, t.actions)
		}()
		go func() {
			<-ctx.Done()
			t.quit()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.settle(ctx)
		}()
	}
	systray.Run(onReady, func() { cancel() })
	wg.Wait()
	return nil
}

// Available reports whether a tray can be shown at all: on Linux that
// needs a session bus. (Whether a tray host is listening on it is found
// out later; the icon appears when one starts.)
func Available() bool { return sessionbus.Available() }

type systrayUI struct {
	actions chan action
	panel   icons.Panel

	mu       sync.Mutex
	built    bool
	quitOnce sync.Once

	status, outbox, sendNow, pause, settings, guide, log, autostart, quitItem *systray.MenuItem
	accounts                                                                  [maxAccountLines]*systray.MenuItem
	more                                                                      *systray.MenuItem
	accountPages                                                              [maxAccountLines]string
	last                                                                      View
}

// forward relays an item's clicks to the controller. The loop is always
// waiting on ClickedCh, since systray drops a click nobody is waiting
// for; a click the controller has no room for is dropped here instead.
func (t *systrayUI) forward(item *systray.MenuItem, a func() action) {
	go func() {
		for range item.ClickedCh {
			select {
			case t.actions <- a():
			default:
			}
		}
	}()
}

func (t *systrayUI) build(withAutostart bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setIcon(icons.Relaying)
	systray.SetTooltip("smtpshim")
	t.status = systray.AddMenuItem("Starting…", "")
	t.status.Disable()
	for i := range t.accounts {
		i := i
		t.accounts[i] = systray.AddMenuItem("", "Open this account's settings")
		t.accounts[i].Hide()
		t.forward(t.accounts[i], func() action {
			t.mu.Lock()
			defer t.mu.Unlock()
			return action{kind: "account", key: t.accountPages[i]}
		})
	}
	t.more = systray.AddMenuItem("", "Open the accounts page")
	t.more.Hide()
	t.forward(t.more, func() action { return action{kind: "settings"} })
	systray.AddSeparator()
	t.outbox = systray.AddMenuItem("Outbox: empty", "Open the outbox")
	t.forward(t.outbox, func() action { return action{kind: "outbox"} })
	t.sendNow = systray.AddMenuItem("Send now", "Retry every waiting message now")
	t.sendNow.Disable()
	t.forward(t.sendNow, func() action { return action{kind: "sendnow"} })
	t.pause = systray.AddMenuItemCheckbox("Pause sending", "Keep accepting mail, send nothing until unticked", false)
	t.forward(t.pause, func() action { return action{kind: "pause"} })
	systray.AddSeparator()
	t.settings = systray.AddMenuItem("Settings…", "Accounts, outbox and activity, in your browser")
	t.forward(t.settings, func() action { return action{kind: "settings"} })
	t.guide = systray.AddMenuItem("How to set up your mail client…", "Step-by-step settings for your mail program or scanner")
	t.forward(t.guide, func() action { return action{kind: "guide"} })
	t.log = systray.AddMenuItem("Open log", "What smtpshim did, message by message")
	t.forward(t.log, func() action { return action{kind: "log"} })
	if withAutostart {
		t.autostart = systray.AddMenuItemCheckbox("Start at login", "Start smtpshim when you log in", false)
		t.forward(t.autostart, func() action { return action{kind: "autostart"} })
	}
	systray.AddSeparator()
	t.quitItem = systray.AddMenuItem("Quit", "Stop relaying mail and remove the icon")
	t.forward(t.quitItem, func() action { return action{kind: "quit"} })
	// What the tray shows now, so that apply changes only what differs.
	t.last = View{Icon: icons.Relaying, Tooltip: "smtpshim", StatusLine: "Starting…", Outbox: "Outbox: empty"}
	t.built = true
}

func (t *systrayUI) setIcon(s icons.State) {
	switch runtime.GOOS {
	case "windows":
		systray.SetIcon(icons.ICO(s, t.panel))
	case "darwin":
		systray.SetTemplateIcon(icons.Template(s), icons.PNG(s, icons.Light))
	default:
		systray.SetIcon(icons.PNG(s, t.panel))
	}
}

// apply shows v, touching only what differs from what is shown. Each
// setter of fyne.io/systray emits D-Bus signals whether or not the value
// changed (a property change, and for a menu item ItemsPropertiesUpdated
// and LayoutUpdated too), and the tray host answers each burst by reading
// the properties and the whole menu again: a refresh that changes
// nothing must cost nothing.
func (t *systrayUI) apply(v View) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.built {
		return
	}
	old := t.last
	if v.Icon != old.Icon {
		t.setIcon(v.Icon)
	}
	if title := trayTitle(v); title != trayTitle(old) {
		systray.SetTitle(title)
	}
	if v.Tooltip != old.Tooltip {
		systray.SetTooltip(v.Tooltip)
	}
	if v.StatusLine != old.StatusLine {
		t.status.SetTitle(v.StatusLine)
	}
	for i, item := range t.accounts {
		shown := i < len(old.Accounts)
		switch {
		case i < len(v.Accounts):
			t.accountPages[i] = v.Accounts[i].Key
			if !shown || old.Accounts[i].Label != v.Accounts[i].Label {
				item.SetTitle(v.Accounts[i].Label)
			}
			if !shown {
				item.Show()
			}
		case shown:
			item.Hide()
		}
	}
	if more, was := moreLabel(v), moreLabel(old); more != was {
		if more != "" {
			t.more.SetTitle(more)
		}
		switch {
		case more != "" && was == "":
			t.more.Show()
		case more == "":
			t.more.Hide()
		}
	}
	if v.Outbox != old.Outbox {
		t.outbox.SetTitle(v.Outbox)
	}
	if v.SendNow != old.SendNow {
		if v.SendNow {
			t.sendNow.Enable()
		} else {
			t.sendNow.Disable()
		}
	}
	if v.Paused != old.Paused {
		if v.Paused {
			t.pause.Check()
		} else {
			t.pause.Uncheck()
		}
	}
	t.last = v
}

// trayTitle is the text next to the icon. It is kept empty while all is
// well, so the icon stays small; it shows on macOS and some Linux panels.
func trayTitle(v View) string {
	if v.Icon == icons.Relaying {
		return ""
	}
	return v.Title
}

// moreLabel is the "and N more…" line for accounts past the menu's
// lines, or "" when they all fit.
func moreLabel(v View) string {
	if n := len(v.Accounts) - maxAccountLines; n > 0 {
		return fmt.Sprintf("and %d more…", n)
	}
	return ""
}

// reapply sets the icon, title and tooltip of the last view again.
func (t *systrayUI) reapply() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.built {
		return
	}
	t.setIcon(t.last.Icon)
	systray.SetTitle(trayTitle(t.last))
	systray.SetTooltip(t.last.Tooltip)
}

func (t *systrayUI) setAutostart(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.autostart == nil {
		return
	}
	if on {
		t.autostart.Check()
	} else {
		t.autostart.Uncheck()
	}
}

func (t *systrayUI) quit() {
	// Only reached when a bus exists (Run checks first): systray.Quit
	// panics without one.
	t.quitOnce.Do(systray.Quit)
}
