//go:build realpeer && screenshots

package tray_test

import (
	"fmt"
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
	// First with a password the provider rejects: the attention state.
	os.WriteFile(r.pwFile, []byte("wrong-password-9Xz\n"), 0o600)
	_, log, _ := r.start(t, "SMTPSHIM_TRAY_PANEL=dark")
	if err := r.send("scan"); err != nil {
		t.Fatalf("send: %v\n%s", err, log)
	}
	menuShot(t, log, [3]uint8{0xe0, 0x1b, 0x24}, filepath.Join(out, "tray-menu-attention.png"))

	// Then fixed: the held mail goes out, and all is well.
	os.WriteFile(r.pwFile, []byte("pw-alice-7Kq2\n"), 0o600)
	if b, err := exec.Command(r.bin, "--config", r.cfg, "reload").CombinedOutput(); err != nil {
		t.Fatalf("reload: %v\n%s", err, b)
	}
	waitFor(t, "the held mail to go out", func() bool { return len(r.sim.Messages()) == 1 }, log)
	menuShot(t, log, [3]uint8{0x26, 0xa2, 0x69}, filepath.Join(out, "tray-menu.png"))
}

// menuShot finds the icon on the panel by its badge color, opens the
// menu with a right click, and saves the top right of the screen.
func menuShot(t *testing.T, log fmt.Stringer, badge [3]uint8, path string) {
	t.Helper()
	grab := func() image.Image {
		p := filepath.Join(t.TempDir(), "screen.png")
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
	var x, y int
	found := false
	deadline := time.Now().Add(30 * time.Second)
	for !found && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		img := grab()
		b := img.Bounds()
		for py := b.Min.Y; py < b.Min.Y+48 && !found; py++ {
			for px := b.Max.X - 1; px >= b.Min.X && !found; px-- {
				r, g, bl, _ := img.At(px, py).RGBA()
				if near(r, badge[0]) && near(g, badge[1]) && near(bl, badge[2]) {
					x, y, found = px, py, true
				}
			}
		}
	}
	if !found {
		t.Fatalf("no smtpshim icon with badge %x on the panel\n%s", badge, log)
	}
	xdo := func(args ...string) {
		if b, err := exec.Command("xdotool", args...).CombinedOutput(); err != nil {
			t.Fatalf("xdotool %v: %v\n%s", args, err, b)
		}
	}
	xdo("mousemove", strconv.Itoa(x-4), strconv.Itoa(y-4))
	xdo("click", "3")
	time.Sleep(2 * time.Second)
	if b, err := exec.Command("import", "-window", "root", "-crop", "440x300+370+0", "+repage", path).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, b)
	}
	t.Logf("screenshot: %s", path)
	xdo("key", "Escape")
	time.Sleep(500 * time.Millisecond)
}

func near(v uint32, want uint8) bool {
	d := int(v>>8) - int(want)
	return d > -24 && d < 24
}
