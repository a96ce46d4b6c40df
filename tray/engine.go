// Package tray is smtpshim's desktop face: an icon in the system tray
// whose picture, tooltip and menu follow the engine's state, with the
// settings page (tray/settings), start at login (tray/autostart) and
// notifications (tray/notify) beside it.
//
// The tray is a client of the engine's local status API, the same one
// the command line uses: a snapshot and then a stream of events, with
// commands back. It never reaches into the engine, and the engine
// (shim/) knows nothing of it.
package tray

import (
	"context"

	"github.com/smtpshim/smtpshim/shim/api"
)

// Engine is the part of the status API the tray uses. The control
// socket's client provides it.
type Engine interface {
	// Status returns the current snapshot.
	Status(ctx context.Context) (api.Status, error)
	// Watch calls fn with the snapshot first and then once per event,
	// until ctx ends or the stream breaks.
	Watch(ctx context.Context, fn func(api.WatchItem)) error
	// Retry makes every waiting message due now.
	Retry(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Pages opens the settings page in the user's browser.
type Pages interface {
	// Open opens path (e.g. "/", "/outbox", "/guide", "/accounts/KEY")
	// with a fresh one-time link.
	Open(path string) error
}

// Autostart turns starting smtpshim at login on and off.
type Autostart interface {
	Enabled() (bool, error)
	Set(on bool) error
}
