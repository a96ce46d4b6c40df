package shim_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/internal/oauthsim"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/internal/testlog"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// oauthRig is an engine whose account signs in with OAuth2 at a local
// authorization server, in front of a provider that takes only XOAUTH2 or
// OAUTHBEARER and checks each token with that server.
type oauthRig struct {
	*engineRig
	auth     *oauthsim.Server
	store    *secrets.Memory
	provider config.OAuthProvider
	mu       sync.Mutex
	now      time.Time
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
	authURL, tokenURL, _, _ := r.auth.Endpoints()
	r.provider = config.OAuthProvider{Name: "sim", AuthURL: authURL, TokenURL: tokenURL, ClientID: "smtpshim-test", Scopes: []string{"smtp.send", "offline_access"}}
	r.login(t)
	sim := rig.Sim(t, upstreamsim.Options{Mechanisms: mechs, Tokens: r.auth.Validate})
	dir := t.TempDir()
	r.engineRig = startRig(t, sim, rigOptions{
		store: r.store,
		oauth: oauth.Options{Now: r.clock},
		tune: func(c *config.Config) {
			c.OAuthProviders = []config.OAuthProvider{r.provider}
			c.Accounts[0].OAuth = "sim"
			c.SetPath(filepath.Join(dir, "config.toml"))
			if err := c.Save(); err != nil {
				t.Fatal(err)
			}
		},
	})
	return r
}

// login signs in the way `smtpshim account login` does, with an HTTP
// client following the redirects as the browser.
func (r *oauthRig) login(t *testing.T) {
	t.Helper()
	p, err := oauth.Resolve(&config.Config{OAuthProviders: []config.OAuthProvider{r.provider}}, "sim")
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
func (r *oauthRig) dropConnections() { shim.DropConnections(r.eng, simUser) }

func TestOAuthRelayWithEachMechanism(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	ctx := context.Background()
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("first", 500)))
	old, _ := r.store.Get(ctx, simUser)
	before := r.auth.Refreshes()
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
	if n := r.auth.Refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes at expiry, want 1", n)
	}
}

func TestOAuthConcurrentSendsAcrossExpiryRefreshOnce(t *testing.T) {
	t.Parallel()
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
	rig.WaitUntil(t, outcomeWait, "all 21 messages at the provider", func() bool { return len(r.sim.Messages()) == 21 })
	if n := r.auth.Refreshes() - before; n != 1 {
		t.Fatalf("%d refreshes at the token endpoint for 20 concurrent sends, want exactly 1", n)
	}
}

// A revoked grant holds the account's mail (250 queued, nothing bounced,
// status "sign-in needed") until a new sign-in and a reload, which
// `smtpshim account login` asks for.
func TestOAuthRevokedGrantHoldsMailUntilSignIn(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	rec := rig.Record(t, r.eng.Bus())
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("before", 500)))
	r.dropConnections()
	r.auth.Revoke(simUser)
	body := message("held", 500)
	s := send(t, r.addr, simUser, []string{"bob@example.net"}, body)
	id := mustQueued(t, s)
	if !strings.Contains(s.text, "refused the sign-in for "+simUser) || !strings.Contains(s.text, "smtpshim account login "+simUser) {
		t.Errorf("reply %q does not say to sign in again", s.text)
	}
	rec.WaitFor(t, eventWait, "the account asking for a sign-in", func(e events.Event) bool {
		return e.Kind == events.AccountHealth && e.Attention && e.Problem == "sign-in needed"
	})
	if st := accountOf(t, r.eng.Status(), simUser); st.State != api.AccountNeedsAttention || st.Problem != "sign-in needed" {
		t.Fatalf("status %+v", st)
	}
	time.Sleep(500 * time.Millisecond)
	if n := rec.Count(func(e events.Event) bool { return e.Kind == events.Bounced }); n != 0 {
		t.Fatalf("a revoked grant bounced mail: %+v", rec.All())
	}
	if _, ok := r.eng.Get(id); !ok {
		t.Fatal("the held message left the queue")
	}
	if messagesWith(r.sim, body) != 0 {
		t.Fatal("the held message was delivered without a token")
	}
	r.login(t)
	if _, err := r.eng.Reload(); err != nil {
		t.Fatal(err)
	}
	rig.WaitUntil(t, outcomeWait, "the held message delivered after sign-in", func() bool { return messagesWith(r.sim, body) == 1 })
	waitSpoolEmpty(t, r.engineRig)
}

// A provider that refuses even a token issued a moment ago (SMTP AUTH off
// for the mailbox) gets one new token, then the account needs attention:
// the mail is held, and the hint says where SMTP AUTH is turned on.
func TestOAuthFreshTokenRefusedHoldsMail(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("before", 500)))
	r.dropConnections()
	r.sim.SetTokens(func(string) (string, bool) { return "", false })
	failed := r.sim.AuthFailures()
	before := r.auth.Refreshes()
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("refused", 500)))
	time.Sleep(500 * time.Millisecond) // retries meanwhile must not ask again
	if _, ok := r.eng.Get(id); !ok {
		t.Fatal("the message left the queue")
	}
	st := accountOf(t, r.eng.Status(), simUser)
	if st.Problem != "sign-in needed" {
		t.Errorf("status %+v, want sign-in needed", st)
	}
	if h := hints.For(errors.New(st.LastError)); !strings.Contains(h, "SMTP AUTH") {
		t.Errorf("hint %q for %q does not say where to turn SMTP AUTH on", h, st.LastError)
	}
	if n := r.auth.Refreshes() - before; n != 1 {
		t.Errorf("%d refreshes after the refusal, want exactly 1 (one new token, then a sign-in)", n)
	}
	if n := r.sim.AuthFailures() - failed; n != 2 {
		t.Errorf("%d AUTH attempts refused, want 2", n)
	}
}

// A token endpoint that does not answer is a temporary problem of its own
// ("sign-in service unreachable"), not "server down" or "keychain
// unavailable": the mail is queued and goes out once it answers again.
func TestOAuthTokenEndpointDownIsTemporary(t *testing.T) {
	t.Parallel()
	r := startOAuthRig(t, upstreamsim.XOAUTH2)
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("before", 500)))
	r.dropConnections()
	r.advance(2 * time.Hour)
	r.auth.Close()
	mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("waiting", 500)))
	st := accountOf(t, r.eng.Status(), simUser)
	if st.Problem != "sign-in service unreachable" || st.State != api.AccountFailing || st.Auth != "oauth2" || !strings.Contains(st.Hint, "sign-in service") {
		t.Fatalf("status %+v, want a temporary \"sign-in service unreachable\"", st)
	}
}
