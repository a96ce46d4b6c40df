package settings

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/oauth/oauthtest"
)

const testClientID = "smtpshim-settings-test"

// signinRig is a settings server whose "microsoft" provider is the test
// authorization server, and whose "browser" is an HTTP client that
// follows the provider's redirects back to smtpshim.
type signinRig struct {
	s     *Server
	eng   *fakeEngine
	sim   *oauthtest.Server
	store interface {
		Get(context.Context, string) (string, error)
	}

	mu     sync.Mutex
	opened []string // addresses the browser was sent to
	landed string   // the last page the browser ended on
}

func newSigninRig(t *testing.T, accounts string) *signinRig {
	t.Helper()
	r := &signinRig{sim: oauthtest.Start(oauthtest.Options{ClientID: testClientID})}
	t.Cleanup(r.sim.Close)
	s, eng, store := startServerWith(t, Options{OpenBrowser: r.open})
	r.s, r.eng, r.store = s, eng, store
	auth, token, _, _ := r.sim.Endpoints()
	cfg := fmt.Sprintf("[[oauth_provider]]\nname = \"microsoft\"\nclient_id = %q\nauth_url = %q\ntoken_url = %q\n\n%s", testClientID, auth, token, accounts)
	if err := os.WriteFile(s.o.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *signinRig) open(u string) error {
	resp, err := http.Get(u) // follows the redirect to smtpshim's listener
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r.mu.Lock()
	r.opened = append(r.opened, u)
	r.landed = string(b)
	r.mu.Unlock()
	return nil
}

// finish follows a started sign-in's progress page until it ends and
// returns the pages it showed.
func (r *signinRig) finish(t *testing.T, c *http.Client, resp *http.Response) []string {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin/") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("starting the sign-in: %s to %q\n%s", resp.Status, resp.Header.Get("Location"), b)
	}
	var pages []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body := get(t, c, r.s.URL()+resp.Header.Get("Location"))
		pages = append(pages, body)
		if !strings.Contains(body, `http-equiv="refresh"`) {
			return pages
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sign-in did not finish; the page says:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *signinRig) checkNoToken(t *testing.T, key string, pages ...string) string {
	t.Helper()
	rt, err := r.store.Get(context.Background(), key)
	if err != nil || !r.sim.IsLiveRefreshToken(rt) {
		t.Fatalf("keychain entry for %s: %q, %v; want the live refresh token", key, rt, err)
	}
	cfg, _ := os.ReadFile(r.s.o.ConfigPath)
	if strings.Contains(string(cfg), rt) {
		t.Error("the refresh token is in the config file")
	}
	for _, p := range pages {
		if strings.Contains(p, rt) {
			t.Error("a settings page shows the refresh token")
		}
	}
	return string(cfg)
}

// Choosing Microsoft on the setup form and pressing "Sign in with
// Microsoft" opens the provider's page; when the browser comes back the
// account is saved with oauth = "microsoft", the refresh token is in the
// keychain only, and the engine reloads.
func TestSignInWithMicrosoftAddsTheAccount(t *testing.T) {
	r := newSigninRig(t, "")
	c := login(t, r.s, "/setup")
	_, form := get(t, c, r.s.URL()+"/setup")
	for _, want := range []string{"Sign in with Microsoft", `formaction="/signin"`, `data-oauth="microsoft"`} {
		if !strings.Contains(form, want) {
			t.Errorf("the setup form lacks %q", want)
		}
	}
	// This copy has no client ID for Google, so it offers no button
	// that could only fail.
	if strings.Contains(form, `name="oauth" value="google"`) {
		t.Error("the setup form offers Google without a client ID for it")
	}
	resp, err := c.PostForm(r.s.URL()+"/signin", url.Values{
		"csrf": {csrfOf(t, form)}, "setup": {"1"}, "address": {"alice@contoso.example"},
		"preset": {"Microsoft 365 (work or school)"}, "oauth": {"microsoft"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pages := r.finish(t, c, resp)
	last := pages[len(pages)-1]
	if !strings.Contains(last, "Signed in: smtpshim now sends the mail of alice@contoso.example through Microsoft") || !strings.Contains(last, "Set up my mail program") {
		t.Fatalf("the sign-in ended with:\n%s", last)
	}
	if len(pages) > 1 && !strings.Contains(pages[0], `id="signin-link"`) {
		t.Errorf("the progress page has no fallback link:\n%s", pages[0])
	}
	cfg := r.checkNoToken(t, "alice@contoso.example", pages...)
	for _, want := range []string{`address = "alice@contoso.example"`, `oauth = "microsoft"`, `server = "smtp.office365.com:587"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s:\n%s", want, cfg)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.opened) != 1 || !strings.Contains(r.opened[0], "login_hint=alice%40contoso.example") {
		t.Errorf("browser opened %q, want one sign-in for alice", r.opened)
	}
	if !strings.Contains(r.landed, "You can close this tab") {
		t.Errorf("the browser was left on %q", r.landed)
	}
	r.eng.mu.Lock()
	defer r.eng.mu.Unlock()
	if r.eng.reloads != 1 {
		t.Errorf("%d reloads, want 1", r.eng.reloads)
	}
}

// An OAuth2 account whose grant was refused shows "Sign in again" rather
// than a password field; signing in stores a fresh token and reloads the
// engine, which sends the held mail.
func TestSignInAgainForAnAccountThatNeedsIt(t *testing.T) {
	r := newSigninRig(t, "[[account]]\naddress = \"bob@contoso.example\"\nserver = \"smtp.office365.com:587\"\noauth = \"microsoft\"\n")
	r.eng.mu.Lock()
	r.eng.st.Accounts = []api.Account{{Key: "bob@contoso.example", Auth: "oauth2", State: api.AccountNeedsAttention, Problem: "sign-in needed", Queued: 1}}
	r.eng.mu.Unlock()
	c := login(t, r.s, "/accounts")
	if _, list := get(t, c, r.s.URL()+"/accounts"); !strings.Contains(list, `action="/accounts/bob@contoso.example/signin"`) {
		t.Errorf("the accounts list offers no new sign-in:\n%s", list)
	}
	_, body := get(t, c, r.s.URL()+"/accounts/bob@contoso.example")
	if !strings.Contains(body, "Sign in again and send the waiting mail") || strings.Contains(body, `<label for="newpw">`) || strings.Contains(body, `id="password"`) {
		t.Fatalf("the account page should offer a new sign-in, not a password field:\n%s", body)
	}
	resp, err := c.PostForm(r.s.URL()+"/accounts/bob@contoso.example/signin", url.Values{"csrf": {csrfOf(t, body)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pages := r.finish(t, c, resp)
	if last := pages[len(pages)-1]; !strings.Contains(last, "any mail kept for it goes out now") {
		t.Fatalf("the sign-in ended with:\n%s", last)
	}
	r.checkNoToken(t, "bob@contoso.example", pages...)
	r.eng.mu.Lock()
	defer r.eng.mu.Unlock()
	if r.eng.reloads != 1 {
		t.Errorf("%d reloads, want 1", r.eng.reloads)
	}
}

// A sign-in the provider refuses leaves the config as it was and says why.
func TestARefusedSignInChangesNothing(t *testing.T) {
	r := newSigninRig(t, "")
	r.sim.DenyNext("access_denied", "AADSTS65004: User declined to consent to access the app.")
	c := login(t, r.s, "/accounts/new")
	_, form := get(t, c, r.s.URL()+"/accounts/new")
	before, _ := os.ReadFile(r.s.o.ConfigPath)
	resp, err := c.PostForm(r.s.URL()+"/signin", url.Values{"csrf": {csrfOf(t, form)}, "address": {"carol@contoso.example"}, "oauth": {"microsoft"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pages := r.finish(t, c, resp)
	last := pages[len(pages)-1]
	if !strings.Contains(last, "did not finish; nothing was changed") || !strings.Contains(last, "AADSTS65004") {
		t.Fatalf("the refused sign-in ended with:\n%s", last)
	}
	if after, _ := os.ReadFile(r.s.o.ConfigPath); string(after) != string(before) {
		t.Errorf("config changed:\n%s", after)
	}
	r.eng.mu.Lock()
	defer r.eng.mu.Unlock()
	if r.eng.reloads != 0 {
		t.Errorf("%d reloads after a refused sign-in", r.eng.reloads)
	}
}

// The sign-in route is a write like the others: no CSRF token, no sign-in.
func TestSignInNeedsTheCSRFToken(t *testing.T) {
	r := newSigninRig(t, "")
	c := login(t, r.s, "/setup")
	resp, err := c.PostForm(r.s.URL()+"/signin", url.Values{"address": {"eve@contoso.example"}, "oauth": {"microsoft"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the CSRF token: %s", resp.Status)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.opened) != 0 {
		t.Errorf("a browser was opened: %v", r.opened)
	}
}

// Without a client ID for the provider, Sign in again says what to set up
// and changes nothing.
func TestSignInWithoutAClientIDSaysWhatToSetUp(t *testing.T) {
	r := newSigninRig(t, "[[account]]\naddress = \"dan@gmail.example\"\nserver = \"smtp.gmail.com:465\"\noauth = \"google\"\n")
	c := login(t, r.s, "/accounts/dan@gmail.example")
	_, body := get(t, c, r.s.URL()+"/accounts/dan@gmail.example")
	before, _ := os.ReadFile(r.s.o.ConfigPath)
	resp, err := c.PostForm(r.s.URL()+"/accounts/dan@gmail.example/signin", url.Values{"csrf": {csrfOf(t, body)}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), "no OAuth2 client ID for Google") || !strings.Contains(string(b), "[[oauth_provider]]") {
		t.Errorf("%s:\n%s", resp.Status, b)
	}
	if after, _ := os.ReadFile(r.s.o.ConfigPath); string(after) != string(before) {
		t.Errorf("config changed:\n%s", after)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.opened) != 0 {
		t.Errorf("a browser was opened: %v", r.opened)
	}
}
