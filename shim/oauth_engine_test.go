package shim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/internal/oauthsim"
	"github.com/smtpshim/smtpshim/shim/internal/testlog"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// oauthRig is an engine whose account signs in with OAuth2 at a local
// authorization server, in front of a provider that takes only XOAUTH2 and
// OAUTHBEARER and checks each token with that server.
type oauthRig struct {
	*rig
	auth  *oauthsim.Server
	store *secrets.Memory
	cfg   *config.Config
	mu    sync.Mutex
	now   time.Time
}

func (r *oauthRig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *oauthRig) advance(d time.Duration) {
	r.mu.Lock()
	r.now = r.now.Add(d)
	r.mu.Unlock()
}

func startOAuthRig(t *testing.T, mechs ...string) *oauthRig {
	t.Helper()
	r := &oauthRig{store: secrets.NewMemory(), now: time.Now()}
	r.auth = oauthsim.Start(oauthsim.Options{ClientID: "smtpshim-test", User: simUser, Now: r.clock})
	t.Cleanup(r.auth.Close)
	sim, err := upstreamsim.Start(upstreamsim.Options{Mechanisms: mechs, Tokens: r.auth.Validate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	authURL, tokenURL, _, _ := r.auth.Endpoints()
	r.rig = startRig(t, sim, rigOptions{
		store: r.store,
		oauth: oauth.Options{Now: r.clock},
		tune: func(c *config.Config) {
			c.OAuthProviders = []config.OAuthProvider{{Name: "sim", AuthURL: authURL, TokenURL: tokenURL, ClientID: "smtpshim-test", Scopes: []string{"smtp.send", "offline_access"}}}
			c.Accounts[0].OAuth = "sim"
			r.cfg = c
		},
	})
	r.login(t)
	return r
}

// login signs in the way `smtpshim account login` does, with an HTTP
// client following the redirects as the browser.
func (r *oauthRig) login(t *testing.T) {
	t.Helper()
	p, err := oauth.Resolve(r.cfg, "sim")
	if err != nil {
		t.Fatal(err)
	}
	err = oauth.Login(context.Background(), p, simUser, r.store, oauth.LoginOptions{Timeout: 10 * time.Second, OpenBrowser: func(u string) error {
		resp, err := http.Get(u)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}})
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	rt, _ := r.store.Get(context.Background(), simUser)
	testlog.Secret(rt)
}

// dropConnections makes the next send open (and authenticate) a new
// upstream connection.
func (r *oauthRig) dropConnections() { r.eng.pool(simUser).Close() }

func TestOAuthRelayWithEachMechanism(t *testing.T) {
	for _, mech := range []string{upstreamsim.XOAUTH2, upstreamsim.OAUTHBEARER} {
		t.Run(mech, func(t *testing.T) {
			r := startOAuthRig(t, mech)
			mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("oauth", 1000)))
			msgs := r.sim.Messages()
			if len(msgs) != 1 || msgs[0].User != simUser || msgs[0].Mechanism != mech {
				t.Fatalf("provider saw %+v, want one message from %s over %s", msgs, simUser, mech)
			}
		})
	}
}

func TestOAuthRefreshAtExpiryRotatesTheKeychainToken(t *testing.T) {
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	ctx := context.Background()
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("first", 500)))
	old, _ := r.store.Get(ctx, simUser)
	r.dropConnections()
	r.advance(2 * time.Hour) // the access token expired
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("second", 500)))
	cur, _ := r.store.Get(ctx, simUser)
	testlog.Secret(cur)
	if cur == old || !r.auth.IsLiveRefreshToken(cur) {
		t.Fatal("the keychain does not hold the rotated refresh token")
	}
	if r.auth.IsLiveRefreshToken(old) {
		t.Fatal("the provider still honours the refresh token that was rotated away")
	}
	if n := r.auth.Refreshes(); n != 2 {
		t.Fatalf("%d refreshes, want 2 (one at start, one at expiry)", n)
	}
}

func TestOAuthConcurrentSendsAcrossExpiryRefreshOnce(t *testing.T) {
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("warm", 500)))
	r.dropConnections()
	before := r.auth.Refreshes()
	r.advance(2 * time.Hour)
	var wg sync.WaitGroup
	results := make([]sent, 20)
	for i := range 20 {
		wg.Go(func() { results[i] = send(t, r.addr, simUser, []string{"bob@example.net"}, message("burst", 500)) })
	}
	wg.Wait()
	for _, s := range results {
		if s.err != nil {
			t.Fatalf("a send failed: %v", s.err)
		}
	}
	waitUntil(t, outcomeWait, "all 21 messages at the provider", func() bool { return len(r.sim.Messages()) == 21 })
	if n := r.auth.Refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes at the token endpoint for 20 concurrent sends, want exactly 1", n)
	}
}

func TestOAuthRevokedGrantHoldsMailUntilSignIn(t *testing.T) {
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	rec := record(t, r.eng.Bus())
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("before", 500)))
	r.dropConnections()
	r.auth.Revoke(simUser)
	body := message("held", 500)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	// Retries keep failing to get a token; nothing bounces meanwhile.
	time.Sleep(500 * time.Millisecond)
	if n := rec.count(isEvent(events.Bounced, "")); n != 0 {
		t.Fatalf("a revoked grant bounced mail: %+v", rec.all())
	}
	m, ok := r.eng.Get(id)
	if !ok {
		t.Fatal("the held message left the queue")
	}
	if !strings.Contains(m.LastError, "smtpshim account login "+simUser) {
		t.Errorf("the queue entry says %q, want the sign-in command", m.LastError)
	}
	if messagesWith(r.sim, body) != 0 {
		t.Fatal("the held message was delivered without a token")
	}
	r.login(t)
	waitUntil(t, outcomeWait, "the held message delivered after sign-in", func() bool { return messagesWith(r.sim, body) == 1 })
	waitSpoolEmpty(t, r.rig)
}

// A provider that refuses even a token issued a moment ago (SMTP AUTH off
// for the mailbox) gets one new token, then the account needs attention:
// the mail is kept, the client hears "queued", and the hint says where SMTP
// AUTH is turned on.
func TestOAuthFreshTokenRefusedHoldsMail(t *testing.T) {
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("before", 500)))
	r.dropConnections()
	r.sim.SetTokens(func(string) (string, bool) { return "", false })
	failed := r.sim.AuthFailures()
	before := r.auth.Refreshes()
	body := message("refused", 500)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	time.Sleep(500 * time.Millisecond) // retries meanwhile must not ask again
	m, ok := r.eng.Get(id)
	if !ok {
		t.Fatal("the message left the queue")
	}
	if !strings.Contains(m.LastError, "smtpshim account login "+simUser) {
		t.Errorf("the queue entry says %q, want the sign-in command", m.LastError)
	}
	if h := hints.For(errors.New(m.LastError)); !strings.Contains(h, "SMTP AUTH") {
		t.Errorf("hint %q does not say where to turn SMTP AUTH on", h)
	}
	if n := r.auth.Refreshes() - before; n != 1 {
		t.Errorf("%d refreshes after the refusal, want exactly 1 (one new token, then a sign-in)", n)
	}
	if n := r.sim.AuthFailures() - failed; n != 2 {
		t.Errorf("%d AUTH attempts refused, want 2", n)
	}
}
