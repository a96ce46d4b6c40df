//go:build realpeer

package settings_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/smtpshim/smtpshim/shim/oauth/oauthtest"
)

// "Sign in with Microsoft" in a real browser, end to end: the provider's
// page opens in a second tab of the same Chromium (the test authorization
// server signs the hinted user in at once) and comes back to smtpshim's
// loopback listener, while the settings tab follows the progress. The
// engine then sends with the token. When the provider revokes the grant,
// mail is held, the account's page offers "Sign in again", and signing in
// again sends the held mail.
func TestSignInWithMicrosoftInARealBrowser(t *testing.T) {
	const clientID = "smtpshim-browser-test"
	const user = "alice@contoso.example"
	sim := oauthtest.Start(oauthtest.Options{ClientID: clientID})
	t.Cleanup(sim.Close)
	auth, token, _, _ := sim.Endpoints()
	shots := screenshotDir(t)
	ctx := browserCtx(t, 1000, 1000)

	// The "system browser": a second tab, opened when the test says so,
	// so that the settings page can be seen waiting first.
	proceed := make(chan struct{})
	var mu sync.Mutex
	var landed []string
	open := func(u string) error {
		select {
		case <-proceed:
		case <-time.After(time.Minute):
			return fmt.Errorf("the test never let the browser open")
		}
		tab, cancel := chromedp.NewContext(ctx)
		defer cancel()
		tctx, cancelT := context.WithTimeout(tab, 30*time.Second)
		defer cancelT()
		if err := chromedp.Do(tctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
			return err
		}
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS("body")))
		if err != nil {
			return err
		}
		png, _ := chromedp.Run(tctx, chromedp.FullScreenshot(90))
		os.WriteFile(filepath.Join(shots, "settings-signin-provider-page.png"), png, 0o644)
		mu.Lock()
		landed = append(landed, s)
		mu.Unlock()
		return nil
	}
	d := startDeskWith(t, fmt.Sprintf("\n[[oauth_provider]]\nname = \"microsoft\"\nclient_id = %q\nauth_url = %q\ntoken_url = %q\n", clientID, auth, token), open, sim.Validate)

	do(t, ctx, "open", chromedp.Navigate(d.page.OneTimeURL("/setup")), chromedp.WaitVisible(chromedp.CSS("#address")))
	// Without a provider chosen, no sign-in button shows.
	waitJS(t, ctx, "sign-in hidden", `document.getElementById("signin-options").hidden`)
	do(t, ctx, "choose Microsoft",
		chromedp.SendKeys(chromedp.CSS("#address"), user),
		chromedp.SetValue(chromedp.CSS("#preset"), "Microsoft 365 (work or school)"),
	)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById("preset").dispatchEvent(new Event("change"))`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "only the Microsoft button", `!document.querySelector('button[data-oauth="microsoft"]').hidden && !document.getElementById("signin-options").hidden`)
	if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#server"))); v != "smtp.office365.com:587" {
		t.Errorf("server for Microsoft 365: %q", v)
	}
	shoot(t, ctx, shots, "settings-signin-offer")

	// The test's mail server stands in for Microsoft's.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.querySelector("#server").value = ""`)); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.CSS("#server"), d.sim.Addr),
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SendKeys(chromedp.CSS("#ca_file"), d.caf),
		chromedp.Click(chromedp.CSS(`button[data-oauth="microsoft"]`)),
		chromedp.WaitVisible(chromedp.CSS("#signin-link")),
	)
	if s := text(t, ctx, "main"); !strings.Contains(s, "Finish signing in to Microsoft") {
		t.Errorf("while waiting: %q", s)
	}
	shoot(t, ctx, shots, "settings-signin-waiting")
	proceed <- struct{}{}
	do(t, ctx, "signed in", chromedp.WaitVisible(chromedp.CSS("p.ok")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "Signed in: smtpshim now sends the mail of "+user+" through Microsoft") {
		t.Errorf("after the sign-in: %q", s)
	}
	shoot(t, ctx, shots, "settings-signed-in")
	mu.Lock()
	if len(landed) != 1 || !strings.Contains(landed[0], "You can close this tab") {
		t.Errorf("the provider tab ended on %q", landed)
	}
	mu.Unlock()
	rt, err := d.store.Get(context.Background(), user)
	if err != nil || !sim.IsLiveRefreshToken(rt) {
		t.Fatalf("keychain: %q, %v", rt, err)
	}
	cfg, _ := os.ReadFile(d.cfg)
	if !strings.Contains(string(cfg), `oauth = "microsoft"`) || strings.Contains(string(cfg), rt) {
		t.Errorf("config after the sign-in:\n%s", cfg)
	}

	// The provider ends the grant (before smtpshim has connected, so no
	// open connection carries on): mail is held and the page asks for a
	// new sign-in, not a password.
	sim.Revoke(user)
	if err := d.send(t, user, "carol@example.net", "while signed out"); err != nil {
		t.Fatalf("sending while signed out: %v", err)
	}
	defer func() {
		if t.Failed() {
			chromedp.Do(ctx, chromedp.Navigate(d.page.URL()+"/activity"), chromedp.WaitVisible(chromedp.CSS("#activity")))
			s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
			t.Logf("provider has %d messages; activity:\n%s", len(d.sim.Messages()), s)
		}
	}()
	waitFor(t, "the account to need a sign-in", func() bool {
		do(t, ctx, "account page", chromedp.Navigate(d.page.URL()+"/accounts/"+user), chromedp.WaitVisible(chromedp.CSS("form.account-form")))
		return strings.Contains(text(t, ctx, "main"), "sign-in needed")
	})
	if s := text(t, ctx, ".attention"); !strings.Contains(s, "Sign in again") || strings.Contains(s, "New password") {
		t.Errorf("the attention box: %q", s)
	}
	shoot(t, ctx, shots, "settings-signin-needed")
	if n := len(d.sim.Messages()); n != 0 {
		t.Fatalf("the provider got %d messages while the sign-in was revoked", n)
	}
	do(t, ctx, "accounts list", chromedp.Navigate(d.page.URL()+"/accounts"), chromedp.WaitVisible(chromedp.CSS("ul.cards")))
	if s := text(t, ctx, "ul.cards"); !strings.Contains(s, "sign-in needed") || !strings.Contains(s, "Sign in again") {
		t.Errorf("the accounts list: %q", s)
	}
	shoot(t, ctx, shots, "settings-signin-needed-list")
	do(t, ctx, "account page again", chromedp.Navigate(d.page.URL()+"/accounts/"+user), chromedp.WaitVisible(chromedp.CSS("#signin-again")))
	do(t, ctx, "sign in again", chromedp.Click(chromedp.CSS("#signin-again")), chromedp.WaitVisible(chromedp.CSS("#signin-link")))
	proceed <- struct{}{}
	do(t, ctx, "signed in again", chromedp.WaitVisible(chromedp.CSS("p.ok")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "goes out now") {
		t.Errorf("after signing in again: %q", s)
	}
	waitFor(t, "the held mail to go out", func() bool { return len(d.sim.Messages()) == 1 })

	// And new mail goes out at once, with the provider's token.
	if err := d.send(t, user, "bob@example.net", "signed in again"); err != nil {
		t.Fatalf("sending after the new sign-in: %v", err)
	}
	msgs := d.sim.Messages()
	if len(msgs) != 2 || msgs[1].Mechanism != "XOAUTH2" || msgs[1].User != user {
		t.Fatalf("the provider has %+v, want the second message sent as %s with XOAUTH2", msgs, user)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A copy of smtpshim without a client ID for Google says, on the page,
// what to put in the config.
func TestSignInWithoutAClientIDInARealBrowser(t *testing.T) {
	d := startDeskWith(t, "\n[[account]]\naddress = \"dan@gmail.example\"\nserver = \"smtp.gmail.com:465\"\noauth = \"google\"\n", func(string) error {
		return fmt.Errorf("no browser should open")
	}, nil)
	shots := screenshotDir(t)
	ctx := browserCtx(t, 1000, 800)
	do(t, ctx, "open", chromedp.Navigate(d.page.OneTimeURL("/accounts/dan@gmail.example")), chromedp.WaitVisible(chromedp.CSS("form.account-form")))
	do(t, ctx, "sign in again", chromedp.Click(chromedp.CSS(`form[action$="/signin"] button`)), chromedp.WaitVisible(chromedp.CSS("div.error")))
	if s := text(t, ctx, "div.error"); !strings.Contains(s, "no OAuth2 client ID for Google") || !strings.Contains(s, `name = "google"`) {
		t.Errorf("the error: %q", s)
	}
	shoot(t, ctx, shots, "settings-signin-no-client-id")
}
