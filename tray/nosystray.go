//go:build darwin && !cgo

package tray

import "context"

// Run without cgo on macOS has no tray (fyne.io/systray needs cgo there):
// the relay runs headless with notifications and the first-run page. The
// README says how to build the tray version on a Mac.
func Run(ctx context.Context, o Options) error { return runWithoutTray(ctx, o) }

// Available reports false: this build has no tray.
func Available() bool { return false }
