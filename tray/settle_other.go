//go:build windows || (darwin && cgo)

package tray

import (
	"context"
	"time"
)

// settle sets the icon, title and tooltip again a few times while the
// tray starts, in case the platform's tray took one of them too early.
func (t *systrayUI) settle(ctx context.Context) {
	for _, d := range []time.Duration{300 * time.Millisecond, time.Second, 3 * time.Second} {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
			t.reapply()
		}
	}
}
