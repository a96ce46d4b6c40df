//go:build realpeer

package settings_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/smtpshim/smtpshim/shim/oauth/oauthtest"
)

// "Sign in with Microsoft" in a real browser: the provider's page opens in
// a second tab of the same Chromium (the test authorization server signs
// the hinted user in at once), comes back to smtpshim's loopback listener,
// and the settings tab follows the progress to "Signed in".
func TestSignInWithMicrosoftInARealBrowser(t *testing.T) {
	const clientID = "smtpshim-browser-test"
	sim := oauthtest.Start(oauthtest.Options{ClientID: clientID})
	t.Cleanup(sim.Close)
	auth, token, _, _ := sim.Endpoints()
	shots := screenshotDir(t)
	ctx := browserCtx(t, 1000, 1000)

	var mu sync.Mutex
	var landed []string
	open := func(u string) error {
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
		os.WriteFile(shots+"/signin-provider-returned.png", png, 0o644)
		mu.Lock()
		landed = append(landed, s)
		mu.Unlock()
		return nil
	}
	d := startDeskWith(t, fmt.Sprintf("\n[[oauth_provider]]\nname = \"microsoft\"\nclient_id = %q\nauth_url = %q\ntoken_url = %q\n", clientID, auth, token), open)

	do(t, ctx, "open", chromedp.Navigate(d.page.OneTimeURL("/setup")), chromedp.WaitVisible(chromedp.CSS("#address")))
	// Without a provider chosen, no sign-in button shows.
	waitJS(t, ctx, "sign-in hidden", `document.getElementById("signin-options").hidden`)
	do(t, ctx, "choose Microsoft",
		chromedp.SendKeys(chromedp.CSS("#address"), "alice@contoso.example"),
		chromedp.SetValue(chromedp.CSS("#preset"), "Microsoft 365 (work or school)"),
	)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById("preset").dispatchEvent(new Event("change"))`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "only the Microsoft button", `!document.querySelector('button[data-oauth="microsoft"]').hidden && document.querySelector('button[data-oauth="google"]').hidden`)
	shoot(t, ctx, shots, "settings-signin-offer")

	do(t, ctx, "sign in", chromedp.Click(chromedp.CSS(`button[data-oauth="microsoft"]`)), chromedp.WaitVisible(chromedp.CSS("p.ok")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "Signed in: smtpshim now sends the mail of alice@contoso.example through Microsoft") {
		t.Errorf("after the sign-in: %q", s)
	}
	shoot(t, ctx, shots, "settings-signed-in")
	mu.Lock()
	if len(landed) != 1 || !strings.Contains(landed[0], "You can close this tab") {
		t.Errorf("the provider tab ended on %q", landed)
	}
	mu.Unlock()
	rt, err := d.store.Get(context.Background(), "alice@contoso.example")
	if err != nil || !sim.IsLiveRefreshToken(rt) {
		t.Fatalf("keychain: %q, %v", rt, err)
	}
	cfg, _ := os.ReadFile(d.cfg)
	if !strings.Contains(string(cfg), `oauth = "microsoft"`) || strings.Contains(string(cfg), rt) {
		t.Errorf("config after the sign-in:\n%s", cfg)
	}
	// The engine reloaded: it reports the account's state.
	waitFor(t, "the engine to know the account", func() bool {
		do(t, ctx, "accounts", chromedp.Navigate(d.page.URL()+"/accounts/alice@contoso.example"), chromedp.WaitVisible(chromedp.CSS("form.account-form")))
		s := text(t, ctx, "main")
		return strings.Contains(s, "State: ") && strings.Contains(s, "Sign in again")
	})
	shoot(t, ctx, shots, "settings-oauth-account")
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
