//go:build realpeer

package tray_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// build compiles ./cmd/smtpshim into dir.
func build(dir string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	bin := filepath.Join(dir, "smtpshim")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/smtpshim")
	cmd.Dir = strings.TrimSpace(string(out))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return bin, nil
}

// buffer collects what a process prints while the test reads it.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buffer) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// secret registers a password with make test's log scan
// (.ci/scan-secrets), which fails the run if it appears in any log line.
func secret(pw string) {
	d := os.Getenv("SMTPSHIM_TEST_LOGDIR")
	if d == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(d, fmt.Sprintf("secrets-%d.txt", os.Getpid())), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		fmt.Fprintln(f, pw)
		f.Close()
	}
}

// rig is a built smtpshim, a provider simulator with one account, and a
// config that reaches it (the password comes from a password_command, so
// no keychain is involved).
type rig struct {
	bin, dir, cfg, smtpAddr, pwFile string
	sim                             *upstreamsim.Server
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func newRig(t *testing.T) *rig {
	t.Helper()
	buildOnce.Do(func() {
		d, err := os.MkdirTemp("", "smtpshim-tray-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath, buildErr = build(d)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	secret("pw-alice-7Kq2")
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{"alice@example.com": "pw-alice-7Kq2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	r := &rig{bin: binPath, dir: dir, sim: sim, pwFile: filepath.Join(dir, "pw"), cfg: filepath.Join(dir, "config.toml")}
	os.WriteFile(r.pwFile, []byte("pw-alice-7Kq2\n"), 0o600)
	caf := filepath.Join(dir, "ca.pem")
	os.WriteFile(caf, sim.Cert.CAPEM, 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.smtpAddr = l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`listen = [%q]
spool_dir = %q
sync_wait = "5s"
retry_min = "1s"
retry_max = "2s"

[[account]]
address = "alice@example.com"
server = %q
ca_file = %q
password_command = %q
`, r.smtpAddr, filepath.Join(dir, "spool"), sim.Addr, caf, "cat "+r.pwFile)
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs plain smtpshim (the desktop face) with env added.
func (r *rig) start(t *testing.T, env ...string) (*exec.Cmd, *buffer, chan error) {
	t.Helper()
	cmd := exec.Command(r.bin, "--config", r.cfg)
	cmd.Env = append(os.Environ(), "HOME="+r.dir, "XDG_CONFIG_HOME="+filepath.Join(r.dir, "xdg"), "XDG_CONFIG_DIRS="+filepath.Join(r.dir, "xdg-system"), "BROWSER=true")
	cmd.Env = append(cmd.Env, env...)
	out := &buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	waitFor(t, "the relay to listen", func() bool {
		c, err := net.DialTimeout("tcp", r.smtpAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, out)
	return cmd, out, done
}

func (r *rig) send(subject string) error {
	msg := "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: " + subject + "\r\n\r\nfrom an old client\r\n"
	return smtp.SendMail(r.smtpAddr, nil, "alice@example.com", []string{"bob@example.net"}, []byte(msg))
}

func waitFor(t *testing.T, what string, cond func() bool, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; smtpshim printed:\n%s", what, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionBus starts a private dbus-daemon and returns its address.
func sessionBus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatal("dbus-daemon not found: run .ci/deps")
	}
	addr := "unix:path=" + filepath.Join(t.TempDir(), "bus")
	cmd := exec.Command(bin, "--session", "--nofork", "--nopidfile", "--address="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sock := strings.TrimPrefix(addr, "unix:path=")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("the private session bus did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watcher is a StatusNotifierWatcher, the part of a tray host that items
// register with.
type watcher struct {
	mu    sync.Mutex
	items []string // "sender path"
}

func (w *watcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	w.mu.Lock()
	w.items = append(w.items, string(sender)+" "+service)
	w.mu.Unlock()
	return nil
}

func (w *watcher) RegisterStatusNotifierHost(service string) *dbus.Error { return nil }

func (w *watcher) first() (sender, path string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.items) == 0 {
		return "", "", false
	}
	sender, path, _ = strings.Cut(w.items[0], " ")
	return sender, path, true
}

// notifications is a desktop notification service
// (org.freedesktop.Notifications) that records what it is asked to show.
type notifications struct {
	mu    sync.Mutex
	shown []string // "summary | body"
}

func (n *notifications) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.shown = append(n.shown, summary+" | "+body)
	return uint32(len(n.shown)), nil
}

func (n *notifications) GetCapabilities() ([]string, *dbus.Error) { return []string{"body"}, nil }

func (n *notifications) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "test", "smtpshim", "1", "1.2", nil
}

func (n *notifications) CloseNotification(id uint32) *dbus.Error { return nil }

func (n *notifications) with(summary string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.shown {
		if strings.HasPrefix(s, summary) {
			return s, true
		}
	}
	return "", false
}

type layout struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []dbus.Variant
}

// item is one menu entry as a tray host sees it.
type item struct {
	id      int32
	label   string
	checked bool
	enabled bool
	visible bool
}

type host struct {
	t      *testing.T
	conn   *dbus.Conn
	sender string
	sigs   chan *dbus.Signal
	out    fmt.Stringer
}

func (h *host) prop(name string) dbus.Variant {
	h.t.Helper()
	var v dbus.Variant
	err := h.conn.Object(h.sender, "/StatusNotifierItem").Call("org.freedesktop.DBus.Properties.Get", 0, "org.kde.StatusNotifierItem", name).Store(&v)
	if err != nil {
		h.t.Fatalf("reading %s: %v", name, err)
	}
	return v
}

func (h *host) tooltip() string {
	var tt struct {
		Icon   string
		Pixmap []struct {
			W, H int32
			Data []byte
		}
		Title, Text string
	}
	if err := dbus.Store([]any{h.prop("ToolTip").Value()}, &tt); err != nil {
		h.t.Fatalf("ToolTip: %v", err)
	}
	return tt.Title + " " + tt.Text
}

func (h *host) pixmap() []byte {
	var px []struct {
		W, H int32
		Data []byte
	}
	if err := dbus.Store([]any{h.prop("IconPixmap").Value()}, &px); err != nil || len(px) == 0 {
		h.t.Fatalf("IconPixmap: %v (%d images)", err, len(px))
	}
	return px[0].Data
}

// menuPath is where the item says its menu is (the "Menu" property).
func (h *host) menuPath() dbus.ObjectPath {
	p, _ := h.prop("Menu").Value().(dbus.ObjectPath)
	return p
}

func (h *host) menu() []item {
	h.t.Helper()
	var rev uint32
	var l layout
	err := h.conn.Object(h.sender, h.menuPath()).Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &l)
	if err != nil {
		h.t.Fatalf("GetLayout: %v", err)
	}
	var items []item
	for _, c := range l.Children {
		var cl layout
		if err := dbus.Store([]any{c.Value()}, &cl); err != nil {
			h.t.Fatalf("menu item: %v", err)
		}
		it := item{id: cl.ID, enabled: true, visible: true}
		if v, ok := cl.Props["label"]; ok {
			it.label, _ = v.Value().(string)
		}
		if v, ok := cl.Props["toggle-state"]; ok {
			n, _ := v.Value().(int32)
			it.checked = n == 1
		}
		if v, ok := cl.Props["enabled"]; ok {
			it.enabled, _ = v.Value().(bool)
		}
		if v, ok := cl.Props["visible"]; ok {
			it.visible, _ = v.Value().(bool)
		}
		items = append(items, it)
	}
	return items
}

func (h *host) find(label string) (item, bool) {
	for _, it := range h.menu() {
		if it.visible && (it.label == label || strings.HasPrefix(it.label, label)) {
			return it, true
		}
	}
	return item{}, false
}

func (h *host) click(label string) {
	h.t.Helper()
	it, ok := h.find(label)
	if !ok {
		h.t.Fatalf("no menu item %q in %+v", label, h.menu())
	}
	err := h.conn.Object(h.sender, h.menuPath()).Call("com.canonical.dbusmenu.Event", 0, it.id, "clicked", dbus.MakeVariant(""), uint32(time.Now().Unix())).Err
	if err != nil {
		h.t.Fatalf("clicking %q: %v", label, err)
	}
}

func (h *host) waitItem(what string, cond func(item) bool, label string) {
	h.t.Helper()
	waitFor(h.t, what, func() bool {
		it, ok := h.find(label)
		return ok && cond(it)
	}, h.out)
}

// trayHost connects to the session bus at addr as a tray host does: it
// owns the StatusNotifierWatcher name, where the tray item registers.
func trayHost(t *testing.T, addr string) (*dbus.Conn, *watcher) {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &watcher{}
	if err := conn.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("becoming the watcher: %v %v", reply, err)
	}
	return conn, w
}

// registered waits for the tray item to register with w, and returns a
// host that reads it over conn.
func registered(t *testing.T, conn *dbus.Conn, w *watcher, out fmt.Stringer) *host {
	t.Helper()
	var sender string
	waitFor(t, "the tray item to register", func() bool {
		var ok bool
		sender, _, ok = w.first()
		return ok
	}, out)
	return &host{t: t, conn: conn, sender: sender, out: out}
}

func TestTrayOverDBus(t *testing.T) {
	r := newRig(t)
	addr := sessionBus(t)
	conn, w := trayHost(t, addr)
	notes := &notifications{}
	if err := conn.Export(notes, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	conn.AddMatchSignal(dbus.WithMatchInterface("com.canonical.dbusmenu"), dbus.WithMatchMember("LayoutUpdated"))

	cmd, out, done := r.start(t, "DBUS_SESSION_BUS_ADDRESS="+addr)
	var sender, path string
	waitFor(t, "the tray item to register", func() bool {
		var ok bool
		sender, path, ok = w.first()
		return ok
	}, out)
	if path != "/StatusNotifierItem" {
		t.Errorf("registered path %q, want /StatusNotifierItem", path)
	}
	h := &host{t: t, conn: conn, sender: sender, sigs: sigs, out: out}

	if s, _ := h.prop("Status").Value().(string); s != "Active" {
		t.Errorf("Status %q", s)
	}
	waitFor(t, "the relaying tooltip", func() bool { return strings.Contains(h.tooltip(), "relaying on localhost") }, out)
	relayingIcon := h.pixmap()

	// The first GetLayout is shallow by design; the full menu follows a
	// LayoutUpdated.
	h.menu()
	select {
	case <-sigs:
	case <-time.After(10 * time.Second):
		t.Log("no LayoutUpdated within 10s; asking again anyway")
	}
	_, port, _ := net.SplitHostPort(r.smtpAddr)
	for _, label := range []string{
		"Relaying on localhost:" + port + " · 1 account",
		"alice@example.com: not used yet",
		"Outbox: empty", "Send now", "Pause sending", "Settings…",
		"How to set up your mail client…", "Open log", "Start at login", "Quit",
	} {
		if _, ok := h.find(label); !ok {
			t.Errorf("no menu item %q in %+v", label, h.menu())
		}
	}

	// Pause: mail is accepted and kept, nothing reaches the provider.
	h.click("Pause sending")
	h.waitItem("Pause sending to be ticked", func(it item) bool { return it.checked }, "Pause sending")
	waitFor(t, "the paused tooltip", func() bool { return strings.Contains(h.tooltip(), "paused") }, out)
	if bytes.Equal(h.pixmap(), relayingIcon) {
		t.Error("the icon did not change when paused")
	}
	if err := r.send("while paused"); err != nil {
		t.Fatalf("sending while paused: %v", err)
	}
	h.waitItem("the outbox line to count it", func(item) bool { return true }, "Outbox: 1 waiting")
	time.Sleep(2 * time.Second) // past retry_min: a retry would have gone out by now
	if n := len(r.sim.Messages()); n != 0 {
		t.Fatalf("the provider got %d message(s) while paused", n)
	}

	// Unpause: it is delivered.
	h.click("Pause sending")
	h.waitItem("Pause sending to be unticked", func(it item) bool { return !it.checked }, "Pause sending")
	waitFor(t, "the delivery after resuming", func() bool { return len(r.sim.Messages()) == 1 }, out)
	h.waitItem("the account line to say it works", func(item) bool { return true }, "alice@example.com: working")
	h.waitItem("the outbox to empty", func(item) bool { return true }, "Outbox: empty")
	waitFor(t, "the relaying icon again", func() bool { return bytes.Equal(h.pixmap(), relayingIcon) }, out)

	// A message the provider refuses for good after smtpshim queued it
	// bounces, and the desktop hears of it once.
	r.sim.SetFault(upstreamsim.TempFail)
	if err := r.send("will bounce"); err != nil {
		t.Fatalf("sending while the provider answers 451: %v", err)
	}
	h.waitItem("the outbox line to count it", func(item) bool { return true }, "Outbox: 1 waiting")
	r.sim.SetFault(upstreamsim.PermFail)
	h.click("Send now")
	waitFor(t, "the bounce notification", func() bool {
		_, ok := notes.with("smtpshim: a message could not be delivered")
		return ok
	}, out)
	if n, _ := notes.with("smtpshim: a message could not be delivered"); !strings.Contains(n, "554") {
		t.Errorf("the notification does not give the provider's reply: %q", n)
	}
	r.sim.SetFault(upstreamsim.None)

	// Start at login: the checkbox shows what the autostart file says.
	h.click("Start at login")
	h.waitItem("Start at login to be ticked", func(it item) bool { return it.checked }, "Start at login")
	desktop := filepath.Join(r.dir, "xdg", "autostart", "smtpshim.desktop")
	if b, err := os.ReadFile(desktop); err != nil || !strings.Contains(string(b), "--at-login") {
		t.Errorf("autostart file: %v\n%s", err, b)
	}
	h.click("Start at login")
	h.waitItem("Start at login to be unticked", func(it item) bool { return !it.checked }, "Start at login")
	if _, err := os.Stat(desktop); !os.IsNotExist(err) {
		t.Errorf("autostart file left: %v", err)
	}

	// Quit stops relaying and the process.
	h.click("Quit")
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("smtpshim exited with %v after Quit:\n%s", err, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("smtpshim still runs 20s after Quit:\n%s", out)
	}
	if strings.Contains(out.String(), "panic") {
		t.Errorf("smtpshim panicked:\n%s", out)
	}
	_ = cmd
}

func TestWithoutASessionBusItKeepsRelaying(t *testing.T) {
	r := newRig(t)
	// A fake dbus-launch first on PATH tells if smtpshim tried to start a
	// session bus of its own (godbus does that when the address is unset).
	fake := t.TempDir()
	marker := filepath.Join(fake, "dbus-launch-was-run")
	os.WriteFile(filepath.Join(fake, "dbus-launch"), []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755)
	env := []string{"PATH=" + fake + ":" + os.Getenv("PATH")}
	var clean []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DBUS_SESSION_BUS_ADDRESS=") && !strings.HasPrefix(e, "PATH=") {
			clean = append(clean, e)
		}
	}
	cmd := exec.Command(r.bin, "--config", r.cfg)
	cmd.Env = append(append(clean, "HOME="+r.dir, "XDG_CONFIG_HOME="+filepath.Join(r.dir, "xdg"), "BROWSER=true"), env...)
	out := &buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-done }()
	waitFor(t, "the relay to listen", func() bool {
		c, err := net.DialTimeout("tcp", r.smtpAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, out)
	if err := r.send("no tray"); err != nil {
		t.Fatalf("sending without a tray: %v\n%s", err, out)
	}
	if n := len(r.sim.Messages()); n != 1 {
		t.Fatalf("provider got %d messages", n)
	}
	if got := strings.Count(out.String(), "no system tray here"); got != 1 {
		t.Errorf("said %d times that there is no tray, want once:\n%s", got, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM:\n%s", out)
	}
	if strings.Contains(out.String(), "panic") {
		t.Errorf("panicked:\n%s", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("smtpshim ran dbus-launch: it would leave a stray dbus-daemon behind")
	}
}

func TestWithoutATrayTheFirstRunOpensTheSettingsPage(t *testing.T) {
	r := newRig(t)
	os.WriteFile(r.cfg, []byte(fmt.Sprintf("listen = [%q]\nspool_dir = %q\n", r.smtpAddr, filepath.Join(r.dir, "spool"))), 0o600)
	// BROWSER is how the page is opened; this one writes the link down.
	opened := filepath.Join(r.dir, "opened")
	browser := filepath.Join(r.dir, "browser.sh")
	os.WriteFile(browser, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" >> "+opened+"\n"), 0o755)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DBUS_SESSION_BUS_ADDRESS=") {
			env = append(env, e)
		}
	}
	cmd := exec.Command(r.bin, "--config", r.cfg)
	cmd.Env = append(env, "HOME="+r.dir, "XDG_CONFIG_HOME="+filepath.Join(r.dir, "xdg"), "BROWSER="+browser)
	out := &buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	var link string
	waitFor(t, "the settings page to be opened", func() bool {
		b, _ := os.ReadFile(opened)
		link = strings.TrimSpace(string(b))
		return link != ""
	}, out)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Errorf("the opened link: %s to %q, want the setup page", resp.Status, resp.Header.Get("Location"))
	}
	// smtpshim settings --print-url reaches the same page.
	u, err := exec.Command(r.bin, "--config", r.cfg, "settings", "--print-url").Output()
	if err != nil || !strings.HasPrefix(string(u), "http://127.0.0.1:") {
		t.Errorf("settings --print-url: %q %v", u, err)
	}
}

// An idle tray is quiet on the bus: once it shows the relay's state it
// sends no signal while nothing changes, not even when it reads the
// status again after an event that changes nothing it shows (a reload),
// so the tray host has nothing to read again and the desktop sleeps.
func TestAnIdleTrayIsQuietOnTheBus(t *testing.T) {
	r := newRig(t)
	addr := sessionBus(t)
	conn, w := trayHost(t, addr)
	_, out, _ := r.start(t, "DBUS_SESSION_BUS_ADDRESS="+addr)
	h := registered(t, conn, w, out)
	waitFor(t, "the relaying tooltip", func() bool { return strings.Contains(h.tooltip(), "relaying on localhost") }, out)
	h.menu()
	time.Sleep(2 * time.Second) // start-up done: the first full menu, the check of the export

	sigs := make(chan *dbus.Signal, 256)
	conn.Signal(sigs)
	if err := conn.AddMatchSignal(dbus.WithMatchSender(h.sender)); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(r.bin, "--config", r.cfg, "reload").CombinedOutput(); err != nil {
		t.Fatalf("smtpshim reload: %v\n%s", err, b)
	}
	var got []string
	quiet := time.After(3 * time.Second)
	for done := false; !done; {
		select {
		case s := <-sigs:
			if s.Sender == h.sender {
				got = append(got, s.Name)
			}
		case <-quiet:
			done = true
		}
	}
	if len(got) > 0 {
		t.Errorf("the idle tray sent %d signal(s) on the bus: %v", len(got), got)
	}
	if !strings.Contains(h.tooltip(), "relaying on localhost") {
		t.Errorf("tooltip %q after the reload", h.tooltip())
	}
}
