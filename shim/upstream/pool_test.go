package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// TestHealthBackoff: the wait after n failures is 5 s doubling to 5 min,
// jittered into the upper half, so many relays don't retry in step.
func TestHealthBackoff(t *testing.T) {
	for n, base := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 4: 40 * time.Second,
		5: 80 * time.Second, 6: 160 * time.Second, 7: 5 * time.Minute, 8: 5 * time.Minute, 100: 5 * time.Minute,
	} {
		lo, hi := base/2, base
		seen := map[time.Duration]bool{}
		for range 200 {
			d := healthBackoff(n)
			if d < lo || d > hi {
				t.Fatalf("healthBackoff(%d) = %v, want within [%v, %v]", n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("healthBackoff(%d) gave only %d distinct waits in 200 tries: no jitter", n, len(seen))
		}
	}
}

func simPool(t *testing.T, sim *upstreamsim.Server, o Options, notify func(Health)) *Pool {
	t.Helper()
	acct := &config.Account{Address: "user@example.com", Server: sim.Addr, Security: config.SecurityStartTLS}
	o.Hostname = "pool.test"
	o.TLSConfig = &tls.Config{RootCAs: sim.Cert.Pool}
	p := NewPool(acct, o, notify)
	t.Cleanup(p.Close)
	return p
}

func startSim(t *testing.T) *upstreamsim.Server {
	t.Helper()
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{"user@example.com": "right"}, HashOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// TestPoolHealthAfterOutage: a refused connection marks the account down
// with a probe time in the backoff range; Begin does not dial until then,
// BeginProbe does, and a success makes it healthy again.
func TestPoolHealthAfterOutage(t *testing.T) {
	sim := startSim(t)
	store := secrets.NewMemory()
	store.Set(context.Background(), "user@example.com", "right")
	var seen []Health
	p := simPool(t, sim, Options{Secrets: store}, func(h Health) { seen = append(seen, h) })
	ctx := context.Background()

	sim.SetFault(upstreamsim.Refuse)
	before := time.Now()
	if _, err := p.Begin(ctx, "user@example.com", nil); err == nil || Classify(err) != Temporary {
		t.Fatalf("Begin against a refusing server: %v, want a temporary error", err)
	}
	h := p.Health()
	if h.Healthy || h.Failures != 1 || h.Problem != "" || h.Held {
		t.Fatalf("health after one refused connection: %+v", h)
	}
	if d := h.NextProbe.Sub(before); d < 2500*time.Millisecond || d > 6*time.Second {
		t.Fatalf("next probe %v after the failure, want 2.5-5 s", d)
	}
	if p.Available(time.Now()) {
		t.Fatal("Available right after the failure")
	}
	if !p.Available(h.NextProbe) {
		t.Fatal("not Available at the probe time")
	}
	conns := sim.Connections()
	if _, err := p.Begin(ctx, "user@example.com", nil); !errors.Is(err, ErrAccountDown) {
		t.Fatalf("Begin while down: %v, want ErrAccountDown", err)
	}
	if sim.Connections() != conns {
		t.Fatal("Begin while down dialed the server")
	}
	if _, err := p.BeginProbe(ctx, "user@example.com", nil); err == nil {
		t.Fatal("probe against a refusing server succeeded")
	}
	if h := p.Health(); h.Failures != 2 {
		t.Fatalf("failures after the probe = %d, want 2", h.Failures)
	}

	sim.SetFault(upstreamsim.None)
	tx, err := p.BeginProbe(ctx, "user@example.com", nil)
	if err != nil {
		t.Fatalf("probe against a recovered server: %v", err)
	}
	tx.Abort()
	if h := p.Health(); !h.Healthy || h.Failures != 0 || h.LastError != nil {
		t.Fatalf("health after recovery: %+v", h)
	}
	if len(seen) != 3 || !seen[2].Healthy {
		t.Fatalf("notifications = %+v, want two failures and a recovery", seen)
	}
}

// TestPoolHoldsRefusedCredential: after a 535 the pool neither dials nor
// backs off toward another try: it holds until the credential changes.
func TestPoolHoldsRefusedCredential(t *testing.T) {
	sim := startSim(t)
	store := secrets.NewMemory()
	store.Set(context.Background(), "user@example.com", "wrong")
	var seen []Health
	p := simPool(t, sim, Options{Secrets: store}, func(h Health) { seen = append(seen, h) })
	ctx := context.Background()

	_, err := p.Begin(ctx, "user@example.com", nil)
	if Classify(err) != CredentialRefused {
		t.Fatalf("Begin with a wrong password: %v (%v), want credential refused", err, Classify(err))
	}
	h := p.Health()
	if !h.Held || !h.Attention() || h.Problem != ProblemPasswordRejected || !h.Healthy {
		t.Fatalf("health after a refused password: %+v", h)
	}
	if len(seen) != 1 || seen[0].Problem != ProblemPasswordRejected {
		t.Fatalf("notifications = %+v", seen)
	}
	fails := sim.AuthFailures()
	for _, begin := range []func(context.Context, string, *smtp.MailOptions) (*Tx, error){p.Begin, p.BeginProbe} {
		if _, err := begin(ctx, "user@example.com", nil); !errors.Is(err, ErrCredentialHeld) || Classify(err) != CredentialRefused {
			t.Fatalf("Begin while held: %v, want ErrCredentialHeld", err)
		}
		// It still says which credential and how it was refused, so a
		// client's reply and the queue's hint can tell a password from
		// a sign-in.
		if _, err := begin(ctx, "user@example.com", nil); CredentialProblem(err) != ProblemPasswordRejected {
			t.Fatalf("Begin while held: %v names problem %q, want %q", err, CredentialProblem(err), ProblemPasswordRejected)
		}
	}
	if sim.AuthFailures() != fails {
		t.Fatal("the held credential was tried again")
	}
	if p.Available(time.Now().Add(time.Hour)) {
		t.Fatal("a held account is Available")
	}

	store.Set(ctx, "user@example.com", "right")
	if !p.CredentialChanged() {
		t.Fatal("CredentialChanged found nothing to lift")
	}
	if p.CredentialChanged() {
		t.Fatal("CredentialChanged lifted a hold twice")
	}
	tx, err := p.Begin(ctx, "user@example.com", nil)
	if err != nil {
		t.Fatalf("Begin after the new password: %v", err)
	}
	tx.Abort()
	if h := p.Health(); h.Held || h.Attention() {
		t.Fatalf("health after the fix: %+v", h)
	}
}

// TestCheckCredential: a keychain that cannot answer is found without
// connecting, and said as "keychain unavailable", not as an outage.
func TestCheckCredential(t *testing.T) {
	sim := startSim(t)
	p := simPool(t, sim, Options{Authenticator: func(*config.Account) (Authenticator, error) {
		return failingAuth{secrets.ErrUnavailable}, nil
	}}, nil)
	err := p.CheckCredential(context.Background())
	var de *DialError
	if !errors.As(err, &de) || de.Step != StepCredential || !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("CheckCredential = %v, want a DialError at the credential step", err)
	}
	if sim.Connections() != 0 {
		t.Fatal("checking the credential connected to the server")
	}
	if h := p.Health(); h.Problem != ProblemKeychainUnavailable || h.Held {
		t.Fatalf("health = %+v, want keychain unavailable, not held", h)
	}
	missing := simPool(t, sim, Options{Authenticator: func(*config.Account) (Authenticator, error) {
		return failingAuth{secrets.ErrNotFound}, nil
	}}, nil)
	if err := missing.CheckCredential(context.Background()); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("CheckCredential with no password stored = %v", err)
	}
	if h := missing.Health(); !h.Healthy || h.Problem != "" {
		t.Fatalf("health with no password stored yet = %+v, want unused (healthy) until mail arrives", h)
	}
	good := simPool(t, sim, Options{Authenticator: func(a *config.Account) (Authenticator, error) {
		return NewStaticPasswordAuth(a.Login(), "right"), nil
	}}, nil)
	if err := good.CheckCredential(context.Background()); err != nil {
		t.Fatalf("CheckCredential of a good password: %v", err)
	}
}

type failingAuth struct{ err error }

func (f failingAuth) Mechanisms() []string { return PasswordMechanisms }
func (f failingAuth) Client(context.Context, string) (sasl.Client, error) {
	return nil, f.err
}
func (f failingAuth) Refused() {}

// TestAuthenticatorChoosesMechanism: the pool offers only what both the
// server and the credential can do, in the credential's order.
func TestAuthenticatorChoosesMechanism(t *testing.T) {
	sim := startSim(t)
	var asked []string
	p := simPool(t, sim, Options{Authenticator: func(a *config.Account) (Authenticator, error) {
		return recordingAuth{Authenticator: NewStaticPasswordAuth(a.Login(), "right"), mechs: []string{MechXOAUTH2, MechLogin, MechPlain}, asked: &asked}, nil
	}}, nil)
	tx, err := p.Begin(context.Background(), "user@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := tx.Info().Mechanism; got != MechLogin {
		t.Errorf("mechanism = %s, want LOGIN (the credential's first that the server offers)", got)
	}
	tx.Abort()
	if len(asked) != 1 || asked[0] != MechLogin {
		t.Errorf("the authenticator was asked for %v", asked)
	}
}

type recordingAuth struct {
	Authenticator
	mechs []string
	asked *[]string
}

func (r recordingAuth) Mechanisms() []string { return r.mechs }
func (r recordingAuth) Client(ctx context.Context, mech string) (sasl.Client, error) {
	*r.asked = append(*r.asked, mech)
	return r.Authenticator.Client(ctx, mech)
}

// A pool that a reload replaced (closed) opens no new connection: a
// transaction that was still waiting for one of its slots must not reach
// the server with the account's old settings (an old server or security).
func TestClosedPoolOpensNoConnection(t *testing.T) {
	sim := startSim(t)
	store := secrets.NewMemory()
	store.Set(context.Background(), "user@example.com", "right")
	p := simPool(t, sim, Options{Secrets: store}, nil)
	p.Close()
	for _, begin := range []func(context.Context, string, *smtp.MailOptions) (*Tx, error){p.Begin, p.BeginProbe} {
		tx, err := begin(context.Background(), "user@example.com", nil)
		if err == nil {
			tx.Abort()
			t.Fatal("Begin on a closed pool opened a transaction")
		}
		if Classify(err) != Temporary {
			t.Fatalf("Begin on a closed pool: %v (%v), want temporary", err, Classify(err))
		}
	}
	if n := sim.Connections(); n != 0 {
		t.Fatalf("a closed pool made %d connections", n)
	}
}

// closeSpy records whether the connection it dialed was closed; with
// slow set, every write takes 300 ms.
type closeSpy struct {
	net.Dialer
	closed atomic.Bool
	slow   atomic.Bool
}

type spiedConn struct {
	net.Conn
	spy *closeSpy
}

func (c spiedConn) Close() error { c.spy.closed.Store(true); return c.Conn.Close() }

func (c spiedConn) Write(p []byte) (int, error) {
	if c.spy.slow.Load() {
		time.Sleep(300 * time.Millisecond)
	}
	return c.Conn.Write(p)
}

func (d *closeSpy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return spiedConn{c, d}, nil
}

// spiedPool is a pool over sim whose connections spy reports on.
func spiedPool(t *testing.T, sim *upstreamsim.Server, idle time.Duration) (*Pool, *closeSpy) {
	t.Helper()
	store := secrets.NewMemory()
	store.Set(context.Background(), "user@example.com", "right")
	spy := &closeSpy{}
	return simPool(t, sim, Options{Secrets: store, Dialer: spy, IdleTimeout: idle}, nil), spy
}

// bodySent opens a transaction on p and sends a message body, up to the
// final dot; err is from DATA.
func bodySent(t *testing.T, p *Pool) (*Tx, error) {
	t.Helper()
	tx, err := p.Begin(context.Background(), "user@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt("bob@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := tx.Data(5 * time.Second)
	if err == nil {
		io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	}
	return tx, err
}

// A connection that comes back to a pool already closed (a reload replaced
// it while a message was on the way) is closed before release returns:
// nobody waits for a closed pool's background work any more, so it would
// outlive the engine's Run.
func TestClosedPoolClosesReturnedConnectionAtOnce(t *testing.T) {
	sim := startSim(t)
	p, spy := spiedPool(t, sim, 0)
	tx, err := bodySent(t, p)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if !spy.closed.Load() {
		t.Fatal("the connection was still open when Commit returned on a closed pool")
	}

	// The same for a connection that failed (not reusable).
	p, spy = spiedPool(t, sim, 0)
	sim.SetFault(upstreamsim.DropMidData)
	defer sim.SetFault(upstreamsim.None)
	tx, err = bodySent(t, p)
	p.Close()
	if err != nil {
		tx.Abort()
	} else if _, err := tx.Commit(); err == nil {
		t.Fatal("Commit succeeded although the server dropped the connection")
	}
	if !spy.closed.Load() {
		t.Fatal("a failed connection was still open when its release on a closed pool returned")
	}
}

// Close waits for an idle connection that the idle reaper is closing at
// that moment, as it waits for every other close it started.
func TestPoolCloseWaitsForTheIdleReaper(t *testing.T) {
	sim := startSim(t)
	p, spy := spiedPool(t, sim, 100*time.Millisecond)
	tx, err := bodySent(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	spy.slow.Store(true) // the reaper's QUIT now takes a while
	time.Sleep(200 * time.Millisecond)
	p.Close()
	if !spy.closed.Load() {
		t.Fatal("Close returned while the idle reaper was still closing a connection")
	}
}

// Health notifications arrive in the order the health changed: a failure
// noted just before a success must not be delivered after it, or the
// status would say "unreachable" about a server that works.
func TestPoolHealthNotificationsKeepTheirOrder(t *testing.T) {
	sim := startSim(t)
	store := secrets.NewMemory()
	store.Set(context.Background(), "user@example.com", "right")
	var mu sync.Mutex
	var seen []bool
	calls := 0
	release := make(chan struct{})
	notify := func(h Health) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-release // the failure's notification is slow to be delivered
		}
		mu.Lock()
		seen = append(seen, h.Healthy)
		mu.Unlock()
	}
	p := simPool(t, sim, Options{Secrets: store}, notify)
	ctx := context.Background()
	begin := func() {
		if tx, err := p.BeginProbe(ctx, "user@example.com", nil); err == nil {
			tx.Abort()
		}
	}
	sim.SetFault(upstreamsim.Refuse)
	failed := make(chan struct{})
	go func() { defer close(failed); begin() }()
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	sim.SetFault(upstreamsim.None)
	worked := make(chan struct{})
	go func() { defer close(worked); begin() }()
	time.Sleep(200 * time.Millisecond)
	close(release)
	<-failed
	<-worked
	mu.Lock()
	defer mu.Unlock()
	if h := p.Health(); len(seen) != 2 || seen[len(seen)-1] != h.Healthy {
		t.Fatalf("notifications (healthy?) %v, but the pool's health is %+v: the last one must match it", seen, h)
	}
}

// TestPoolUsesANewCredentialAtOnce: after the credential changes, the
// next message logs in with it rather than reusing a connection that
// logged in with the old one.
func TestPoolUsesANewCredentialAtOnce(t *testing.T) {
	sim := startSim(t)
	store := secrets.NewMemory()
	store.Set(context.Background(), "user@example.com", "right")
	p := simPool(t, sim, Options{Secrets: store}, nil)
	ctx := context.Background()
	tx, err := p.Begin(ctx, "user@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rcpt("bob@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := tx.Data(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: first\r\n\r\nsent with the old password\r\n")
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if !p.Warm() {
		t.Fatal("no idle connection after a transaction")
	}

	store.Set(ctx, "user@example.com", "wrong")
	if p.CredentialChanged() {
		t.Fatal("CredentialChanged lifted a hold that was not there")
	}
	if _, err := p.Begin(ctx, "user@example.com", nil); Classify(err) != CredentialRefused {
		t.Fatalf("Begin after a new, wrong password: %v, want credential refused (not a reused login)", err)
	}
}
