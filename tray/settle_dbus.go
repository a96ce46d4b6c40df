//go:build !windows && !darwin

package tray

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/png" // the icons are PNGs
	"os"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smtpshim/smtpshim/tray/icons"
)

// settle makes sure that the item on D-Bus shows what apply last set.
//
// fyne.io/systray v1.12.2 calls onReady before it exports the item's
// properties on D-Bus, and an icon, title or tooltip set between its
// reading them and its exporting them is lost. Setting them again on a
// timer would cost a burst of signals each time, and the tray host reads
// the item again after each. Instead settle reads the exported item as a
// tray host does, until it is there, and sets the three again only when
// they differ; it ends once the item shows the last view, within the
// first second as a rule.
func (t *systrayUI) settle(ctx context.Context) {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return
	}
	defer conn.Close()
	obj := conn.Object(fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid()), "/StatusNotifierItem")
	wait := 100 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	confirmed := false
	// A few tries: should the export ever differ for good (another
	// conversion of the icon in a later systray), this must not turn into
	// a stream of signals.
	tries := 3
	for tries > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		var props map[string]dbus.Variant
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := obj.CallWithContext(cctx, "org.freedesktop.DBus.Properties.GetAll", 0, "org.kde.StatusNotifierItem").Store(&props)
		cancel()
		if err != nil {
			wait = min(2*wait, time.Second) // not exported yet
			continue
		}
		t.mu.Lock()
		want := t.last
		t.mu.Unlock()
		switch {
		case !exportedShows(props, want, t.panel):
			t.reapply()
			tries--
			confirmed, wait = false, 100*time.Millisecond
		case confirmed:
			return
		default:
			// Once more a little later: the export is complete only
			// when systray has also stored it, just after this answer.
			confirmed, wait = true, 500*time.Millisecond
		}
	}
}

// exportedShows reports whether the item's properties on D-Bus show v's
// icon, title and tooltip.
func exportedShows(props map[string]dbus.Variant, v View, panel icons.Panel) bool {
	title, _ := props["Title"].Value().(string)
	if title != trayTitle(v) {
		return false
	}
	var tip struct {
		Icon   string
		Pixmap []pixmap
		Title  string
		Text   string
	}
	if dbus.Store([]any{props["ToolTip"].Value()}, &tip) != nil || tip.Title != v.Tooltip {
		return false
	}
	var px []pixmap
	if dbus.Store([]any{props["IconPixmap"].Value()}, &px) != nil || len(px) != 1 {
		return false
	}
	want, ok := argb(icons.PNG(v.Icon, panel))
	return ok && px[0].W == want.W && px[0].H == want.H && bytes.Equal(px[0].Data, want.Data)
}

// pixmap is an icon as the StatusNotifierItem specification sends it:
// width, height and ARGB32 pixels in network byte order.
type pixmap struct {
	W, H int32
	Data []byte
}

// argb converts a PNG as fyne.io/systray does for IconPixmap.
func argb(png []byte) (pixmap, bool) {
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		return pixmap{}, false
	}
	b := img.Bounds()
	p := pixmap{W: int32(b.Dx()), H: int32(b.Dy()), Data: make([]byte, 0, b.Dx()*b.Dy()*4)}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			p.Data = append(p.Data, byte(a), byte(r), byte(g), byte(bl))
		}
	}
	return p, true
}
