package oauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/oauthsim"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

const (
	testClient = "client-123"
	testUser   = "alice@example.com"
)

// rig is an authorization server, a provider pointing at it, a keychain
// and a clock the test moves.
type rig struct {
	sim   *oauthsim.Server
	p     *Provider
	store *secrets.Memory
	mu    sync.Mutex
	now   time.Time
}

func newRig(t *testing.T, so oauthsim.Options) *rig {
	t.Helper()
	r := &rig{store: secrets.NewMemory(), now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	so.ClientID, so.User = testClient, testUser
	so.Now = r.clock
	r.sim = oauthsim.Start(so)
	t.Cleanup(r.sim.Close)
	auth, token, device, _ := r.sim.Endpoints()
	r.p = &Provider{Name: "sim", Title: "the test provider", AuthURL: auth, TokenURL: token, DeviceURL: device,
		Scopes: []string{"smtp.send", "offline_access"}, ClientID: testClient, ClientSecret: so.ClientSecret,
		Mechanisms: []string{upstream.MechOAuthBearer, upstream.MechXOAUTH2}}
	return r
}

func (r *rig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *rig) advance(d time.Duration) {
	r.mu.Lock()
	r.now = r.now.Add(d)
	r.mu.Unlock()
}

func (r *rig) session(t *testing.T) *Session {
	t.Helper()
	s, err := NewSession(r.p, testUser, r.store, Options{Now: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// browser plays the person's browser: it follows the redirects from the
// sign-in address back to smtpshim's listener and returns the final page.
func browser(t *testing.T, page *string) func(string) error {
	return func(u string) error {
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if page != nil {
			*page = string(b)
		}
		return nil
	}
}

func (r *rig) login(t *testing.T) {
	t.Helper()
	var page string
	if err := Login(context.Background(), r.p, testUser, r.store, LoginOptions{OpenBrowser: browser(t, &page), Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	if !strings.Contains(page, "You can close this tab") {
		t.Fatalf("the browser was left with %q, want the close-this-tab page", page)
	}
}

func TestCodeFlowStoresALiveRefreshToken(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	var out bytes.Buffer
	var page string
	err := Login(context.Background(), r.p, testUser, r.store, LoginOptions{OpenBrowser: browser(t, &page), Out: &out, LoginHint: testUser, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := r.store.Get(context.Background(), testUser)
	if err != nil {
		t.Fatal(err)
	}
	if !r.sim.IsLiveRefreshToken(rt) {
		t.Fatal("the keychain holds a refresh token the provider does not know")
	}
	if !strings.Contains(out.String(), r.sim.URL+"/authorize?") {
		t.Errorf("the instructions do not show the sign-in address:\n%s", out.String())
	}
	if strings.Contains(out.String(), rt) || strings.Contains(page, rt) {
		t.Error("the refresh token was shown to the person")
	}
}

func TestCodeFlowIgnoresAForeignStateAndWaitsForTheRealRedirect(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	pe, err := StartLogin(r.p, testUser, r.store, LoginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pe.URL)
	redirect := u.Query().Get("redirect_uri")
	if !strings.HasPrefix(redirect, "http://127.0.0.1:") {
		t.Fatalf("redirect_uri %q is not a loopback address", redirect)
	}
	if u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("code_challenge") == "" {
		t.Fatalf("the sign-in address has no PKCE challenge: %s", pe.URL)
	}
	// A page that guessed the port, with a code of its own.
	resp, err := http.Get(redirect + "?code=stolen&state=guess")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a redirect with a foreign state got %d, want 400", resp.StatusCode)
	}
	if resp, err := http.Get(strings.TrimSuffix(redirect, "/") + "/favicon.ico"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("another path got %d, want 404", resp.StatusCode)
		}
	}
	if err := browser(t, nil)(pe.URL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pe.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Get(ctx, testUser); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(redirect); err == nil {
		t.Error("the redirect listener still answers after the sign-in")
	}
}

func TestCodeFlowTimesOut(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	err := Login(context.Background(), r.p, testUser, r.store, LoginOptions{OpenBrowser: func(string) error { return nil }, Timeout: 200 * time.Millisecond})
	if !IsSignInNeeded(err) || !strings.Contains(err.Error(), "not finished in the browser in time") {
		t.Fatalf("got %v, want a timed-out sign-in", err)
	}
}

func TestCodeFlowReportsTheProvidersRefusal(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	r.sim.DenyNext("consent_required", "AADSTS65001: The user or administrator has not consented to use the application")
	var page string
	err := Login(context.Background(), r.p, testUser, r.store, LoginOptions{OpenBrowser: browser(t, &page), Timeout: 10 * time.Second})
	if !IsSignInNeeded(err) || !strings.Contains(err.Error(), "AADSTS65001") {
		t.Fatalf("got %v, want the provider's AADSTS65001", err)
	}
	if !strings.Contains(page, "Sign-in failed") {
		t.Errorf("the browser shows %q", page)
	}
}

func TestPublicClientSendsNoSecret(t *testing.T) {
	// The simulator refuses any secret from a public client (AADSTS700025).
	r := newRig(t, oauthsim.Options{})
	r.login(t)
	r.p.ClientSecret = "not-for-public-clients"
	err := Login(context.Background(), r.p, testUser, r.store, LoginOptions{OpenBrowser: browser(t, nil), Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700025") {
		t.Fatalf("the simulator did not notice a secret: %v", err)
	}
}

func TestConfidentialSecretIsSent(t *testing.T) {
	r := newRig(t, oauthsim.Options{ClientSecret: "desktop-secret"})
	r.login(t)
	if _, err := r.session(t).AccessToken(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceFlow(t *testing.T) {
	for _, tc := range []struct {
		name string
		so   oauthsim.Options
	}{
		{"pending then success", oauthsim.Options{DevicePending: 1}},
		{"slow down", oauthsim.Options{DeviceSlowDown: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.so.DeviceSlowDown {
				t.Skip("slow_down adds 5 seconds to the poll interval")
			}
			r := newRig(t, tc.so)
			var out bytes.Buffer
			if err := Login(context.Background(), r.p, testUser, r.store, LoginOptions{Device: true, Out: &out, Timeout: 30 * time.Second}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "ABCD-EFGH") || !strings.Contains(out.String(), "/devicelogin") {
				t.Errorf("the instructions lack the code or the address:\n%s", out.String())
			}
			rt, err := r.store.Get(context.Background(), testUser)
			if err != nil || !r.sim.IsLiveRefreshToken(rt) {
				t.Fatalf("no live refresh token after the device sign-in (%v)", err)
			}
		})
	}
}

func TestGoogleRefusesTheDeviceFlowAndSaysWhy(t *testing.T) {
	c := &config.Config{OAuthProviders: []config.OAuthProvider{{Name: "google", ClientID: "x.apps.googleusercontent.com", ClientSecret: "s"}}}
	p, err := Resolve(c, "google")
	if err != nil {
		t.Fatal(err)
	}
	err = Login(context.Background(), p, testUser, secrets.NewMemory(), LoginOptions{Device: true})
	if err == nil || !strings.Contains(err.Error(), "does not allow the device flow for the mail scope") {
		t.Fatalf("got %v", err)
	}
}

func TestRefreshRotatesAndSavesTheNewTokenFirst(t *testing.T) {
	r := newRig(t, oauthsim.Options{AccessTTL: time.Hour})
	r.login(t)
	s := r.session(t)
	ctx := context.Background()
	first, _ := r.store.Get(ctx, testUser)

	tok1, err := s.AccessToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := r.sim.Validate(tok1); !ok || u != testUser {
		t.Fatal("the access token does not validate")
	}
	second, _ := r.store.Get(ctx, testUser)
	if second == first || !r.sim.IsLiveRefreshToken(second) || r.sim.IsLiveRefreshToken(first) {
		t.Fatal("the rotated refresh token is not the one in the keychain")
	}
	// Well within its life: no new refresh.
	r.advance(30 * time.Minute)
	if tok, _ := s.AccessToken(ctx); tok != tok1 || r.sim.Refreshes() != 1 {
		t.Fatalf("refreshed early: %d refreshes", r.sim.Refreshes())
	}
	// Within the margin before expiry: refresh.
	r.advance(26 * time.Minute)
	tok2, err := s.AccessToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok1 || r.sim.Refreshes() != 2 {
		t.Fatalf("no refresh near expiry (%d refreshes)", r.sim.Refreshes())
	}
	third, _ := r.store.Get(ctx, testUser)
	if third == second || !r.sim.IsLiveRefreshToken(third) || r.sim.IsLiveRefreshToken(second) {
		t.Fatal("the keychain does not hold the newest refresh token")
	}
}

func TestConcurrentSendsShareOneRefresh(t *testing.T) {
	r := newRig(t, oauthsim.Options{AccessTTL: time.Hour})
	r.login(t)
	s := r.session(t)
	if _, err := s.AccessToken(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := r.sim.Refreshes()
	r.advance(2 * time.Hour)
	var wg sync.WaitGroup
	toks := make([]string, 20)
	errs := make([]error, 20)
	for i := range 20 {
		wg.Go(func() { toks[i], errs[i] = s.AccessToken(context.Background()) })
	}
	wg.Wait()
	for i := range 20 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if toks[i] != toks[0] {
			t.Fatalf("concurrent sends got different tokens: %d %q %q", i, toks[i], toks[0])
		}
	}
	if n := r.sim.Refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes at the token endpoint, want exactly 1", n)
	}
}

func TestRevokedGrantNeedsSignInAndStopsAsking(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	r.login(t)
	s := r.session(t)
	r.sim.Revoke(testUser)
	_, err := s.AccessToken(context.Background())
	if !IsSignInNeeded(err) || !strings.Contains(err.Error(), "smtpshim account login "+testUser) {
		t.Fatalf("got %v, want sign-in needed with the command that fixes it", err)
	}
	n := r.sim.Refreshes()
	if _, err := s.AccessToken(context.Background()); !IsSignInNeeded(err) || r.sim.Refreshes() != n {
		t.Fatalf("asked the provider again with a refused grant (%v)", err)
	}
	// A new sign-in (as `smtpshim account login` in another process does)
	// puts a new refresh token in the keychain; the session picks it up.
	r.login(t)
	if _, err := s.AccessToken(context.Background()); err != nil {
		t.Fatalf("after signing in again: %v", err)
	}
}

func TestMissingRefreshTokenNeedsSignIn(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	_, err := r.session(t).AccessToken(context.Background())
	if !IsSignInNeeded(err) || !strings.Contains(err.Error(), "not been signed in") {
		t.Fatalf("got %v", err)
	}
}

func TestUnreachableTokenEndpointIsTemporary(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	r.login(t)
	r.sim.Close()
	_, err := r.session(t).AccessToken(context.Background())
	if !IsTemporary(err) || IsSignInNeeded(err) {
		t.Fatalf("got %v, want a temporary credential failure", err)
	}
}

// flakyStore refuses writes while fail is set, like a keychain that locked.
type flakyStore struct {
	*secrets.Memory
	mu   sync.Mutex
	fail bool
}

func (f *flakyStore) Set(ctx context.Context, k, v string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return secrets.ErrUnavailable
	}
	return f.Memory.Set(ctx, k, v)
}

func TestRotatedTokenIsKeptUntilTheKeychainTakesIt(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	r.login(t)
	fs := &flakyStore{Memory: r.store, fail: true}
	s, _ := NewSession(r.p, testUser, fs, Options{Now: r.clock})
	_, err := s.AccessToken(context.Background())
	if !IsTemporary(err) {
		t.Fatalf("got %v, want a temporary failure while the keychain refuses the new token", err)
	}
	fs.mu.Lock()
	fs.fail = false
	fs.mu.Unlock()
	tok, err := s.AccessToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.sim.Validate(tok); !ok {
		t.Fatal("the kept access token is not valid")
	}
	if r.sim.Refreshes() != 1 {
		t.Fatalf("%d refreshes; the rotated token should have been saved, not fetched again", r.sim.Refreshes())
	}
	rt, _ := r.store.Get(context.Background(), testUser)
	if !r.sim.IsLiveRefreshToken(rt) {
		t.Fatal("the keychain does not hold the live refresh token")
	}
}

func TestRefusedTokenIsReplacedOnceThenSignInIsNeeded(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	r.login(t)
	s := r.session(t)
	ctx := context.Background()
	if _, err := s.AccessToken(ctx); err != nil {
		t.Fatal(err)
	}
	s.Refused() // the server may have revoked just this token
	if _, err := s.AccessToken(ctx); err != nil || r.sim.Refreshes() != 2 {
		t.Fatalf("an old refused token was not replaced (%v, %d refreshes)", err, r.sim.Refreshes())
	}
	s.Refused() // refused its replacement too
	if _, err := s.AccessToken(ctx); !IsSignInNeeded(err) {
		t.Fatalf("got %v, want sign-in needed after a fresh token was refused", err)
	}
}

func TestResolve(t *testing.T) {
	MicrosoftClientID = ""
	_, err := Resolve(&config.Config{}, "microsoft")
	if !errors.Is(err, ErrNoClientID) || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("got %v, want a missing client ID that says how to set one", err)
	}
	c := &config.Config{OAuthProviders: []config.OAuthProvider{
		{Name: "microsoft", ClientID: "app-id", Tenant: "organizations"},
		{Name: "example", AuthURL: "https://login.example.com/authorize", TokenURL: "https://login.example.com/token", Scopes: []string{"smtp.send"}, ClientID: "ex"},
	}}
	p, err := Resolve(c, "Microsoft")
	if err != nil {
		t.Fatal(err)
	}
	if p.ClientID != "app-id" || p.ClientSecret != "" || !strings.Contains(p.TokenURL, "/organizations/oauth2/v2.0/token") ||
		p.Server != "smtp.office365.com:587" || p.Scopes[0] != "https://outlook.office.com/SMTP.Send" {
		t.Fatalf("microsoft override: %+v", p)
	}
	if ok, _ := p.CanDevice(); !ok {
		t.Error("Microsoft allows the device flow")
	}
	p, err = Resolve(c, "example")
	if err != nil || p.TokenURL != "https://login.example.com/token" {
		t.Fatalf("custom: %+v %v", p, err)
	}
	if ok, why := p.CanDevice(); ok || !strings.Contains(why, "device_url") {
		t.Errorf("custom provider without device_url: %v %q", ok, why)
	}
	if _, err := Resolve(c, "nope"); err == nil {
		t.Error("an unknown provider resolved")
	}
	MicrosoftClientID = "built-in"
	defer func() { MicrosoftClientID = "" }()
	if p, err := Resolve(&config.Config{}, "microsoft"); err != nil || p.ClientID != "built-in" {
		t.Fatalf("the build-time client ID is not used: %+v %v", p, err)
	}
}

func TestOpenBrowserHonoursBROWSER(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "opened")
	script := filepath.Join(dir, "browser")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s' \"$1\" > "+out+"\n"), 0o755)
	t.Setenv("BROWSER", filepath.Join(dir, "missing")+":"+script)
	if err := OpenBrowser("http://127.0.0.1:1/x?a=b"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != "http://127.0.0.1:1/x?a=b" {
		t.Fatalf("the browser got %q", got)
	}
	t.Setenv("BROWSER", "false")
	if err := OpenBrowser("http://127.0.0.1:1/"); err == nil {
		t.Fatal("a failing $BROWSER counted as success")
	}
}

func TestStartAccountLoginForTheSettingsPage(t *testing.T) {
	r := newRig(t, oauthsim.Options{})
	auth, token, _, _ := r.sim.Endpoints()
	cfg := &config.Config{OAuthProviders: []config.OAuthProvider{{Name: "sim", AuthURL: auth, TokenURL: token, ClientID: testClient, Scopes: []string{"smtp.send"}}}}
	acct := &config.Account{Address: testUser, Server: "127.0.0.1:1", OAuth: "sim"}
	pe, err := StartAccountLogin(cfg, acct, r.store, LoginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(pe.URL); u.Query().Get("login_hint") != testUser {
		t.Errorf("the sign-in address has no login_hint: %s", pe.URL)
	}
	if err := browser(t, nil)(pe.URL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pe.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Get(ctx, testUser); err != nil {
		t.Fatal(err)
	}
	if _, err := StartAccountLogin(cfg, &config.Account{Address: "p@example.com", Server: "x:1"}, r.store, LoginOptions{}); err == nil {
		t.Error("a password account started an OAuth2 sign-in")
	}
}
