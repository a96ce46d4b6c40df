//go:build realpeer

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/oauthsim"
	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// TestOAuthRealPeer signs an account in with the real binary (the browser
// is a script that follows the redirects), keeps the refresh token in the
// real Secret Service, and relays through Postfix whose Dovecot checks
// every token at the test authorization server's introspection endpoint.
// Then the grant is revoked: mail is held with "250 queued", nothing
// bounces, and `account login` lets it go.
func TestOAuthRealPeer(t *testing.T) {
	needKeyring(t)
	const erin = "erin@example.com"
	auth := oauthsim.Start(oauthsim.Options{ClientID: "smtpshim-e2e", User: erin, DevicePending: 1})
	t.Cleanup(auth.Close)
	authURL, tokenURL, deviceURL, introspect := auth.Endpoints()
	p := realpeer.StartPostfixOAuth(t, map[string]string{"nobody@example.com": "unused-password-9f3k"}, introspect)

	dir := t.TempDir()
	browser := filepath.Join(dir, "browser")
	if err := os.WriteFile(browser, []byte("#!/bin/sh\nexec curl -sSfL -o /dev/null \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	needTool(t, "curl")
	t.Setenv("BROWSER", browser)

	c := newConfig(t, fmt.Sprintf(`retry_min = "1s"
retry_max = "2s"

[[oauth_provider]]
name = "sim"
auth_url = %q
token_url = %q
device_url = %q
scopes = ["smtp.send", "offline_access"]
client_id = "smtpshim-e2e"
`, authURL, tokenURL, deviceURL))
	t.Cleanup(func() { deleteKeychainEntry(erin) })

	// A declined consent fails the sign-in and leaves the config alone.
	auth.DenyNext("access_denied", "AADSTS65004: User declined to consent to access the app")
	declined := shimKeychain(t, c.Path, "", "account", "add", erin, "--oauth", "sim", "--server", p.SubmissionAddr, "--ca-file", p.CAFile)
	if declined.Code == 0 || !strings.Contains(declined.Stderr, "AADSTS65004") {
		t.Fatalf("account add with a declined consent:\n%s", declined)
	}
	if cfgText, _ := os.ReadFile(c.Path); strings.Contains(string(cfgText), erin) {
		t.Fatalf("a failed sign-in added the account:\n%s", cfgText)
	}
	if code := shimKeychain(t, c.Path, "", "account", "login", "nobody@example.com"); code.Code == 0 || !strings.Contains(code.Stderr, "--oauth") {
		t.Errorf("account login for an unknown account:\n%s", code)
	}

	add := shimKeychain(t, c.Path, "", "account", "add", erin, "--oauth", "sim", "--server", p.SubmissionAddr, "--ca-file", p.CAFile)
	if add.Code != 0 || !strings.Contains(add.Stdout, erin+" is signed in to sim") {
		t.Fatalf("account add --oauth:\n%s", add)
	}
	rt, err := keychainGet(erin)
	if err != nil || !auth.IsLiveRefreshToken(rt) {
		t.Fatalf("the Secret Service does not hold a live refresh token for %s (%v)", erin, err)
	}
	cfgText, _ := os.ReadFile(c.Path)
	if strings.Contains(string(cfgText), rt) || !strings.Contains(string(cfgText), `oauth = "sim"`) {
		t.Fatalf("config file:\n%s", cfgText)
	}
	if strings.Contains(add.Stdout+add.Stderr, rt) {
		t.Fatal("account add printed the refresh token")
	}
	if list := shimKeychain(t, c.Path, "", "account", "list"); !strings.Contains(list.Stdout, "signed in (sim)") {
		t.Errorf("account list:\n%s", list)
	}

	r := startRelay(t, c)
	msg := message(erin, "frank@example.net", "oauth-1")
	if rep := sendMail(t, r.Addr, erin, []string{"frank@example.net"}, msg); rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
		t.Fatalf("end of DATA: %s; want Postfix's 250", rep)
	}
	m := waitMessage(t, p, "frank@example.net", "oauth-1")
	if got := m.AuthenticatedSender(); got != erin {
		t.Errorf("authenticated sender %q, want %s", got, erin)
	}
	now, _ := keychainGet(erin)
	if now == rt || !auth.IsLiveRefreshToken(now) || auth.IsLiveRefreshToken(rt) {
		t.Error("the rotated refresh token is not the one in the Secret Service")
	}

	// The device flow replaces the grant.
	dev := shimKeychain(t, c.Path, "", "account", "login", erin, "--device")
	if dev.Code != 0 || !strings.Contains(dev.Stderr, "ABCD-EFGH") {
		t.Fatalf("account login --device:\n%s", dev)
	}

	// Revoked: a new relay process has no access token and must refresh.
	r.stop(t)
	auth.Revoke(erin)
	r = startRelay(t, c)
	held := message(erin, "frank@example.net", "oauth-held")
	rep := sendMail(t, r.Addr, erin, []string{"frank@example.net"}, held)
	if rep.Code != 250 || !strings.Contains(rep.LastText(), "queued") {
		t.Fatalf("end of DATA with a revoked grant: %s; want 250 … queued", rep)
	}
	time.Sleep(3 * time.Second) // a few retries
	noMessage(t, p, "frank@example.net", "oauth-held")
	noMessage(t, p, erin, "oauth-held") // no bounce to the sender
	if !strings.Contains(r.Log(), "smtpshim account login "+erin) {
		t.Errorf("the relay's log does not say how to sign in again:\n%s", tail(r.Log(), 20))
	}
	login := shimKeychain(t, c.Path, "", "account", "login", erin)
	if login.Code != 0 {
		t.Fatalf("account login:\n%s", login)
	}
	m = waitMessage(t, p, "frank@example.net", "oauth-held")
	if got := m.AuthenticatedSender(); got != erin {
		t.Errorf("authenticated sender %q, want %s", got, erin)
	}
}
