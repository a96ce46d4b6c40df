//go:build realpeer && screenshots

package tray_test

import (
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestScreenshotTrayMenu runs inside `make screenshots` (.ci/screenshots):
// an X server, a session bus and an xfce4-panel as the tray host. It
// starts plain smtpshim, finds its icon on the panel by the badge's
// color, opens the menu with a right click, and saves the screen.
func TestScreenshotTrayMenu(t *testing.T) {
	out := os.Getenv("SMTPSHIM_SCREENSHOTS")
	if out == "" || os.Getenv("DISPLAY") == "" {
		t.Fatal("run through make screenshots: it sets DISPLAY and SMTPSHIM_SCREENSHOTS")
	}
	r := newRig(t)
	_, log, _ := r.start(t, "SMTPSHIM_TRAY_PANEL=dark")
	if err := r.send("hello"); err != nil {
		t.Fatalf("send: %v\n%s", err, log)
	}
	grab := func(name string) image.Image {
		p := filepath.Join(t.TempDir(), name)
		if b, err := exec.Command("import", "-window", "root", p).CombinedOutput(); err != nil {
			t.Fatalf("import: %v\n%s", err, b)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	// The relaying badge is green (#26a269); look for it in the panel.
	var x, y int
	found := false
	deadline := time.Now().Add(30 * time.Second)
	for !found && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		img := grab("panel.png")
		b := img.Bounds()
		for py := b.Min.Y; py < b.Min.Y+48 && !found; py++ {
			for px := b.Max.X - 1; px >= b.Min.X && !found; px-- {
				r, g, bl, _ := img.At(px, py).RGBA()
				if near(r, 0x26) && near(g, 0xa2) && near(bl, 0x69) {
					x, y, found = px, py, true
				}
			}
		}
	}
	if !found {
		t.Fatalf("no smtpshim icon on the panel\n%s", log)
	}
	xdo := func(args ...string) {
		if b, err := exec.Command("xdotool", args...).CombinedOutput(); err != nil {
			t.Fatalf("xdotool %v: %v\n%s", args, err, b)
		}
	}
	xdo("mousemove", strconv.Itoa(x-4), strconv.Itoa(y-4))
	xdo("click", "3")
	time.Sleep(2 * time.Second)
	p := filepath.Join(out, "tray-menu.png")
	if b, err := exec.Command("import", "-window", "root", "-crop", "440x300+370+0", "+repage", p).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, b)
	}
	t.Logf("screenshot: %s", p)
	xdo("key", "Escape")
}

func near(v uint32, want uint8) bool {
	d := int(v>>8) - int(want)
	return d > -24 && d < 24
}
