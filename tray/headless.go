package tray

import (
	"context"
	"os"
	"runtime"

	"github.com/smtpshim/smtpshim/tray/icons"
)

// runWithoutTray serves a desktop that has no tray: notifications and the
// first-run page still work, and the relay goes on.
func runWithoutTray(ctx context.Context, o Options) error {
	if o.Log != nil {
		why := "no D-Bus session bus"
		if runtime.GOOS == "darwin" {
			why = "this build has no tray; see the README to build one with it"
		}
		o.Log.Warn("no system tray here (" + why + "): smtpshim keeps relaying without an icon; open the settings with \"smtpshim settings\"")
	}
	c := newController(o, nullUI{})
	c.run(ctx, nil)
	return nil
}

type nullUI struct{}

func (nullUI) apply(View)        {}
func (nullUI) setAutostart(bool) {}
func (nullUI) quit()             {}

// Panel returns the kind of panel the tray icon sits on. Most panels are
// dark (Windows 10 and 11, GNOME, KDE Plasma and Xfce by default);
// SMTPSHIM_TRAY_PANEL=light picks the dark envelope for a light one, and
// on Windows the personalisation setting decides.
func Panel() icons.Panel {
	switch os.Getenv("SMTPSHIM_TRAY_PANEL") {
	case "light":
		return icons.Light
	case "dark":
		return icons.Dark
	}
	if runtime.GOOS == "windows" && systemUsesLightTheme() {
		return icons.Light
	}
	return icons.Dark
}
