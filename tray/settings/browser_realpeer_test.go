//go:build realpeer

package settings_test

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
	"github.com/smtpshim/smtpshim/tray"
	"github.com/smtpshim/smtpshim/tray/settings"
)

// chromium finds Debian's headless Chromium (chromium-headless-shell).
func chromium(t *testing.T) string {
	for _, p := range []string{"chromium-headless-shell", "/usr/lib/chromium/chromium-headless-shell", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("no headless Chromium: run .ci/deps (Debian package chromium-headless-shell)")
	return ""
}

// screenshotDir is where the pictures go: SMTPSHIM_SCREENSHOTS (make
// screenshots points it at docs/), or a directory the test names.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("SMTPSHIM_SCREENSHOTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	d, err := os.MkdirTemp("", "smtpshim-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", d)
	return d
}

// desk is a real engine with the settings page, as plain smtpshim runs
// them, against the provider simulator. The passwords live in an
// in-memory store shared by the page and the engine; the OS keychain has
// its own real-peer tests.
type desk struct {
	sim   *upstreamsim.Server
	page  *settings.Server
	smtp  string
	store *secrets.Memory
	caf   string
	cfg   string // the config file's path
}

func startDesk(t *testing.T) *desk {
	t.Helper()
	return startDeskWith(t, "", nil, nil)
}

// startDeskWith adds extra to the config, opens sign-in pages with open,
// and has the provider take the OAuth2 access tokens that tokens accepts
// (with XOAUTH2), when it is not nil.
func startDeskWith(t *testing.T, extra string, open func(string) error, tokens func(string) (string, bool)) *desk {
	t.Helper()
	so := upstreamsim.Options{Users: map[string]string{"alice@example.com": "pw-alice"}}
	if tokens != nil {
		so.Mechanisms, so.Tokens = []string{"PLAIN", "LOGIN", upstreamsim.XOAUTH2}, tokens
	}
	sim, err := upstreamsim.Start(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	caf := filepath.Join(dir, "provider-ca.pem")
	os.WriteFile(caf, sim.Cert.CAPEM, 0o644)
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("spool_dir = %q\nsync_wait = \"5s\"\nretry_min = \"1s\"\nretry_max = \"2s\"\n%s", filepath.Join(dir, "spool"), extra)), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	store := secrets.NewMemory()
	eng, err := shim.New(cfg, shim.Options{Secrets: store, Listeners: []net.Listener{ln}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	client, err := tray.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	page, err := settings.New(settings.Options{Engine: client, ConfigPath: cfgPath, Store: store, Version: "test", OpenBrowser: open})
	if err != nil {
		t.Fatal(err)
	}
	pageDone := make(chan error, 1)
	go func() { pageDone <- page.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-pageDone
		<-engDone
	})
	return &desk{sim: sim, page: page, smtp: ln.Addr().String(), store: store, caf: caf, cfg: cfgPath}
}

func (d *desk) send(t *testing.T, from, to, subject string) error {
	t.Helper()
	msg := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\nHello from an old client.\r\n"
	return smtp.SendMail(d.smtp, nil, from, []string{to}, []byte(msg))
}

func browserCtx(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(width, height),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	// The first action starts the browser, which lives as long as the
	// context it started on: start it here, not under a step's deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromium(t), err)
	}
	return ctx
}

func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// do runs steps with a deadline; on failure it saves a screenshot and
// the page's text, so the reason is visible.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		png, _ := chromedp.Run(ctx, chromedp.FullScreenshot(90))
		p := filepath.Join(os.TempDir(), "smtpshim-failure-"+strings.ReplaceAll(what, " ", "-")+".png")
		os.WriteFile(p, png, 0o644)
		t.Fatalf("%s: %v\npage (screenshot %s):\n%s", what, err, p, body)
	}
}

// waitJS waits until the JavaScript expression is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(sctx, chromedp.Poll[bool](expr)); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage:\n%s", what, err, body)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func TestFirstRunInARealBrowser(t *testing.T) {
	d := startDesk(t)
	shots := screenshotDir(t)
	ctx := browserCtx(t, 1000, 900)

	// The one-time link lands on the setup page: no account yet.
	do(t, ctx, "open", chromedp.Navigate(d.page.OneTimeURL("/")), chromedp.WaitVisible(chromedp.CSS("#address")))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasSuffix(loc, "/setup") {
		t.Fatalf("first run landed on %s, want /setup", loc)
	}
	shoot(t, ctx, shots, "settings-setup")

	// A gmail.com address picks the Gmail preset, from the CLI's table.
	do(t, ctx, "preset",
		chromedp.SendKeys(chromedp.CSS("#address"), "someone@gmail.com"),
		chromedp.Focus(chromedp.CSS("#password")),
	)
	if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#server"))); v != "smtp.gmail.com:587" {
		t.Errorf("server after a gmail.com address: %q", v)
	}

	// The real account: the simulator, trusted through its CA file.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.querySelector("#address").value = ""; document.querySelector("#server").value = ""`)); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "add account",
		chromedp.SendKeys(chromedp.CSS("#address"), "alice@example.com"),
		chromedp.SendKeys(chromedp.CSS("#server"), d.sim.Addr),
		chromedp.SendKeys(chromedp.CSS("#password"), "pw-alice"),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SendKeys(chromedp.CSS("#ca_file"), d.caf),
		chromedp.Click(chromedp.CSS("form.account-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("p.ok")),
	)
	if s := text(t, ctx, "p.ok"); !strings.Contains(s, "It works") || !strings.Contains(s, "alice@example.com") {
		t.Errorf("test result %q", s)
	}
	shoot(t, ctx, shots, "settings-tested")
	if pw, _ := d.store.Get(context.Background(), "alice@example.com"); pw != "pw-alice" {
		t.Errorf("password in the store: %q", pw)
	}

	// The guide follows, and tells them not to tick the box.
	do(t, ctx, "guide", chromedp.Click(chromedp.CSS("main a.button")), chromedp.WaitVisible(chromedp.CSS("table.settings-table")))
	do(t, ctx, "outlook express guide", chromedp.Navigate(d.page.URL()+"/guide/outlook-express"), chromedp.WaitVisible(chromedp.CSS("ol.steps")))
	if s := text(t, ctx, "ol.steps"); !strings.Contains(s, "is not ticked") {
		t.Errorf("the Outlook Express guide does not say to leave authentication off:\n%s", s)
	}
	shoot(t, ctx, shots, "settings-guide")

	// The provider rejects the password (it was changed there): the mail
	// is kept, and the account's page shows the provider's reply and asks
	// for the new password, which sends the held mail.
	d.store.Set(context.Background(), "alice@example.com", "changed-elsewhere")
	if err := d.send(t, "alice@example.com", "dave@example.net", "scan from the copier"); err != nil {
		t.Fatalf("sending with a rejected password: %v", err)
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("the account to need attention", func() bool {
		chromedp.Do(ctx, chromedp.Navigate(d.page.URL()+"/accounts/alice@example.com"))
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		return strings.Contains(s, "This account needs you")
	})
	if s := text(t, ctx, ".attention"); !strings.Contains(s, "535") || !strings.Contains(s, "password rejected") {
		t.Errorf("the attention box: %q", s)
	}
	shoot(t, ctx, shots, "settings-password-rejected")
	if n := len(d.sim.Messages()); n != 0 {
		t.Fatalf("the provider got %d messages with a rejected password", n)
	}
	do(t, ctx, "new password",
		chromedp.SendKeys(chromedp.CSS("#newpw"), "pw-alice"),
		chromedp.Click(chromedp.CSS(".attention button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("p.ok")),
	)
	if s := text(t, ctx, "main"); !strings.Contains(s, "It works") || !strings.Contains(s, "on their way") {
		t.Errorf("after the new password: %q", s)
	}
	waitFor("the held mail to go out", func() bool { return len(d.sim.Messages()) == 1 })

	// Mail from the account goes out, and Activity shows it as it
	// happens, without a reload.
	do(t, ctx, "activity", chromedp.Navigate(d.page.URL()+"/activity"), chromedp.WaitVisible(chromedp.CSS("#activity")))
	waitJS(t, ctx, "activity live", `document.getElementById("live-state").textContent.startsWith("Live")`)
	if err := d.send(t, "alice@example.com", "bob@example.net", "first"); err != nil {
		t.Fatalf("sending through smtpshim: %v", err)
	}
	if n := len(d.sim.Messages()); n != 2 {
		t.Fatalf("provider got %d messages", n)
	}
	waitJS(t, ctx, "delivery in activity", `document.getElementById("activity").innerText.includes("Sent: from alice@example.com to bob@example.net")`)
	shoot(t, ctx, shots, "settings-activity")

	// The account is listed, and says it works.
	do(t, ctx, "accounts", chromedp.Navigate(d.page.URL()+"/accounts"), chromedp.WaitVisible(chromedp.CSS("ul.cards")))
	if s := text(t, ctx, "ul.cards"); !strings.Contains(s, "alice@example.com") || !strings.Contains(s, "Working") {
		t.Errorf("accounts page: %q", s)
	}
	shoot(t, ctx, shots, "settings-accounts")
	do(t, ctx, "overview", chromedp.Navigate(d.page.URL()+"/"), chromedp.WaitVisible(chromedp.CSS("ul.facts")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "Relaying mail") || !strings.Contains(s, "alice@example.com") {
		t.Errorf("overview: %q", s)
	}
	shoot(t, ctx, shots, "settings-overview")

	// A provider that answers 451 leaves the mail in the outbox.
	d.sim.SetFault(upstreamsim.TempFail)
	if err := d.send(t, "alice@example.com", "carol@example.net", "Quarterly report"); err != nil {
		t.Fatalf("sending while the provider fails: %v", err)
	}
	do(t, ctx, "outbox", chromedp.Navigate(d.page.URL()+"/outbox"), chromedp.WaitVisible(chromedp.CSS("ul.cards")))
	if s := text(t, ctx, "ul.cards"); !strings.Contains(s, "carol@example.net") || !strings.Contains(s, "451") || !strings.Contains(s, "Quarterly report") {
		t.Errorf("outbox: %q", s)
	}
	shoot(t, ctx, shots, "settings-outbox")
	d.sim.SetFault(upstreamsim.None)
	do(t, ctx, "send all now", chromedp.Click(chromedp.CSS("main > form button")), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	deadline := time.Now().Add(30 * time.Second)
	for len(d.sim.Messages()) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(d.sim.Messages()); n != 3 {
		t.Errorf("after Send all now the provider has %d messages, want 2", n)
	}

	// At 400 px the pages still work: one column, nothing cut off.
	narrow := browserCtx(t, 400, 800)
	do(t, narrow, "narrow", chromedp.Navigate(d.page.OneTimeURL("/accounts/alice@example.com")), chromedp.WaitVisible(chromedp.CSS("form.account-form")))
	w, err := chromedp.Run(narrow, chromedp.Evaluate[float64](`document.documentElement.scrollWidth`))
	if err != nil || w > 400 {
		t.Errorf("at 400 px the page is %v px wide (%v)", w, err)
	}
	shoot(t, narrow, shots, "settings-account-400px")

	// Removing the account takes it out of the list and the store.
	do(t, ctx, "account page", chromedp.Navigate(d.page.URL()+"/accounts/alice@example.com"), chromedp.WaitVisible(chromedp.CSS("button.danger")))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.confirm = () => true`)); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "remove", chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "No accounts yet") {
		t.Errorf("after removal: %q", s)
	}
	if _, err := d.store.Get(context.Background(), "alice@example.com"); err == nil {
		t.Error("the password stayed in the store")
	}
}
