package upstream

import (
	"context"
	"crypto/tls"
	"errors"
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
