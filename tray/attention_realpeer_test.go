//go:build realpeer

package tray_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// A provider that refuses the password puts the account in "needs
// attention": the icon, the tooltip and the account's menu line say so,
// and its mail is kept. A fixed password and a reload send it.
func TestTrayShowsARejectedPassword(t *testing.T) {
	r := newRig(t)
	os.WriteFile(r.pwFile, []byte("wrong-password-9Xz\n"), 0o600)
	secret("wrong-password-9Xz")
	addr := sessionBus(t)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := &watcher{}
	conn.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher")
	conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue)
	notes := &notifications{}
	conn.Export(notes, "/org/freedesktop/Notifications", "org.freedesktop.Notifications")
	conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue)
	_, out, _ := r.start(t, "DBUS_SESSION_BUS_ADDRESS="+addr)
	h := registered(t, conn, w, out)
	h.menu()
	time.Sleep(300 * time.Millisecond) // the full layout follows the shallow first one
	waitFor(t, "the relaying tooltip", func() bool { return strings.Contains(h.tooltip(), "relaying") }, out)
	relaying := h.pixmap()

	// The client hears 250 queued; the scan must not be lost.
	if err := r.send("scan from the copier"); err != nil {
		t.Fatalf("sending with a rejected password: %v\n%s", err, out)
	}
	h.waitItem("the account line to say the password was rejected", func(item) bool { return true }, "alice@example.com: password rejected")
	waitFor(t, "the attention tooltip", func() bool {
		return strings.Contains(h.tooltip(), "alice@example.com needs attention (password rejected)")
	}, out)
	if bytes.Equal(h.pixmap(), relaying) {
		t.Error("the icon did not change")
	}
	waitFor(t, "the needs-attention notification", func() bool {
		_, ok := notes.with("smtpshim: alice@example.com needs attention")
		return ok
	}, out)
	if n, _ := notes.with("smtpshim: alice@example.com needs attention"); !strings.Contains(n, "password rejected") {
		t.Errorf("notification %q does not say what is wrong", n)
	}
	if n := len(r.sim.Messages()); n != 0 {
		t.Fatalf("provider got %d messages", n)
	}

	// Fixed: the held mail goes out after a reload.
	os.WriteFile(r.pwFile, []byte("pw-alice-7Kq2\n"), 0o600)
	if b, err := exec.Command(r.bin, "--config", r.cfg, "reload").CombinedOutput(); err != nil {
		t.Fatalf("reload: %v\n%s", err, b)
	}
	waitFor(t, "the held mail to go out", func() bool { return len(r.sim.Messages()) == 1 }, out)
	h.waitItem("the account line to say it works", func(item) bool { return true }, "alice@example.com: working")
	waitFor(t, "the relaying icon", func() bool { return bytes.Equal(h.pixmap(), relaying) }, out)
	notes.mu.Lock()
	defer notes.mu.Unlock()
	if len(notes.shown) != 1 {
		t.Errorf("notifications %q, want exactly one", notes.shown)
	}
}
