package relay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/queue"
	"github.com/smtpshim/smtpshim/shim/relay"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	user = "alice@example.com"
	pass = "right-password"
)

// fixture is a relay over a spool, a queue (not running) and one pool,
// against a provider simulator: no local SMTP server, no client socket.
type fixture struct {
	sim    *upstreamsim.Server
	acct   *config.Account
	pool   *upstream.Pool
	spool  *spool.Spool
	queue  *queue.Queue
	relay  *relay.Relay
	bus    *events.Bus
	store  *secrets.Memory
	paused bool
}

func newFixture(t *testing.T, password string, syncWait time.Duration) *fixture {
	t.Helper()
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{user: pass}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	f := &fixture{sim: sim, bus: &events.Bus{}, store: secrets.NewMemory()}
	f.store.Set(context.Background(), user, password)
	f.acct = &config.Account{Address: user, Server: sim.Addr, Security: config.SecurityStartTLS}
	f.pool = upstream.NewPool(f.acct, upstream.Options{
		Hostname:  "relay.test",
		Secrets:   f.store,
		TLSConfig: &tls.Config{RootCAs: sim.Cert.Pool},
	}, nil)
	t.Cleanup(f.pool.Close)
	if f.spool, err = spool.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.spool.Close() })
	pools := func(key string) *upstream.Pool {
		if key == f.acct.Key() {
			return f.pool
		}
		return nil
	}
	f.queue = queue.New(queue.Options{Spool: f.spool, Pool: pools, Bus: f.bus})
	f.relay = relay.New(relay.Options{Pool: pools, Queue: f.queue, Spool: f.spool, Bus: f.bus,
		SyncWait: syncWait, Paused: func() bool { return f.paused }})
	t.Cleanup(f.relay.Close)
	return f
}

var msg = []byte("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: relay\r\n\r\nbody\r\n")

// deliver runs one whole transaction.
func (f *fixture) deliver(t *testing.T, rcpts ...string) (*relay.Receipt, []error, error) {
	t.Helper()
	d, err := f.relay.Start(f.acct, user, relay.StartOptions{Client: "test"})
	if err != nil {
		return nil, nil, err
	}
	var rcptErrs []error
	for _, r := range rcpts {
		rcptErrs = append(rcptErrs, d.AddRcpt(r))
	}
	rec, err := d.Body(bytes.NewReader(msg))
	return rec, rcptErrs, err
}

func TestRelayDeliversWhileClientWaits(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	rec, rerrs, err := f.deliver(t, "bob@example.net")
	if err != nil || rerrs[0] != nil {
		t.Fatalf("deliver: %v %v", err, rerrs)
	}
	if rec.Queued || rec.ID != "" || rec.Reply().Code != 250 {
		t.Fatalf("receipt = %+v, want delivered", rec)
	}
	if m := f.sim.Messages(); len(m) != 1 || !bytes.Equal(m[0].Data, msg) {
		t.Fatalf("the provider got %d messages", len(m))
	}
	if l, _ := f.spool.List(); len(l) != 0 {
		t.Fatalf("a delivered message left %d spool entries", len(l))
	}
}

func TestRelayPassesPermanentRefusalsUnchanged(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	f.sim.SetFault(upstreamsim.RejectSomeRcpt)
	rec, rerrs, err := f.deliver(t, "reject@example.net", "bob@example.net")
	var se *smtp.SMTPError
	if !errors.As(rerrs[0], &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("refused recipient: %v, want the provider's 550 5.1.1", rerrs[0])
	}
	if err != nil || rerrs[1] != nil || rec.Queued {
		t.Fatalf("the other recipient: %v %v %+v", err, rerrs[1], rec)
	}

	f.sim.SetFault(upstreamsim.PermFail)
	_, _, err = f.deliver(t, "bob@example.net")
	if !errors.As(err, &se) || se.Code != 554 {
		t.Fatalf("554 at the end of DATA: %v, want it unchanged", err)
	}
	if l, _ := f.spool.List(); len(l) != 0 {
		t.Fatalf("a refused message was kept: %d entries", len(l))
	}
}

func TestRelayQueuesTemporaryFailures(t *testing.T) {
	for _, fault := range []upstreamsim.Fault{upstreamsim.Refuse, upstreamsim.TempFail, upstreamsim.TempFailData, upstreamsim.DropMidData} {
		f := newFixture(t, pass, 10*time.Second)
		f.sim.SetFault(fault)
		rec, rerrs, err := f.deliver(t, "bob@example.net")
		if err != nil || rerrs[0] != nil || !rec.Queued || rec.ID == "" {
			t.Fatalf("fault %d: %+v %v %v, want queued", fault, rec, rerrs, err)
		}
		if !strings.HasPrefix(rec.Text, "queued as "+rec.ID) {
			t.Errorf("fault %d: text %q", fault, rec.Text)
		}
		m, err := f.spool.Get(rec.ID)
		if err != nil || len(m.Rcpts) != 1 || m.LastError == "" {
			t.Fatalf("fault %d: spool entry %+v %v", fault, m, err)
		}
	}
}

func TestRelayHoldsRefusedCredential(t *testing.T) {
	f := newFixture(t, "expired-password", 10*time.Second)
	for i := range 2 {
		rec, rerrs, err := f.deliver(t, "bob@example.net")
		if err != nil || rerrs[0] != nil || !rec.Queued {
			t.Fatalf("message %d: %+v %v %v, want queued", i, rec, rerrs, err)
		}
		want := "queued as " + rec.ID + `: the provider refused the password for alice@example.com; update it with "smtpshim account add alice@example.com"`
		if rec.Text != want {
			t.Fatalf("message %d: text\n%q, want\n%q", i, rec.Text, want)
		}
		if _, err := f.spool.Get(rec.ID); err != nil {
			t.Fatalf("message %d is not durable: %v", i, err)
		}
	}
	if n := f.sim.AuthFailures(); n != 1 {
		t.Fatalf("the refused password was tried %d times, want once", n)
	}
	if h := f.pool.Health(); !h.Held || h.Problem != upstream.ProblemPasswordRejected {
		t.Fatalf("health %+v", h)
	}
}

func TestRelayPausedSendsNothing(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	f.paused = true
	rec, rerrs, err := f.deliver(t, "bob@example.net")
	if err != nil || rerrs[0] != nil || !rec.Queued {
		t.Fatalf("%+v %v %v, want queued", rec, rerrs, err)
	}
	if want := "queued as " + rec.ID + " (smtpshim is paused)"; rec.Text != want {
		t.Fatalf("text %q, want %q", rec.Text, want)
	}
	if n := f.sim.Connections(); n != 0 {
		t.Fatalf("%d connections to the provider while paused", n)
	}
}

// A pause that comes while a client is between MAIL FROM and its message
// holds that message too: its body never goes upstream, on a new
// connection (MAIL FROM sent at Start) or a pooled one (sent ahead).
func TestRelayPauseDuringTransactionSendsNothing(t *testing.T) {
	for _, warm := range []bool{false, true} {
		f := newFixture(t, pass, 10*time.Second)
		if warm {
			if _, _, err := f.deliver(t, "bob@example.net"); err != nil {
				t.Fatal(err)
			}
		}
		before := len(f.sim.Messages())
		d, err := f.relay.Start(f.acct, user, relay.StartOptions{Client: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddRcpt("bob@example.net"); err != nil {
			t.Fatal(err)
		}
		f.paused = true
		rec, err := d.Body(bytes.NewReader(msg))
		if err != nil || !rec.Queued {
			t.Fatalf("warm pool %v: %+v %v, want queued", warm, rec, err)
		}
		if want := "queued as " + rec.ID + " (smtpshim is paused)"; rec.Text != want {
			t.Fatalf("warm pool %v: text %q, want %q", warm, rec.Text, want)
		}
		if n := len(f.sim.Messages()); n != before {
			t.Fatalf("warm pool %v: the provider got a message after the pause", warm)
		}
		if m, ok := f.queue.Get(rec.ID); !ok || len(m.Rcpts) != 1 || m.Rcpts[0] != "bob@example.net" {
			t.Fatalf("warm pool %v: queued entry %+v %v", warm, m, ok)
		}
	}
}

// An account whose ca_file cannot be used is refused at once (454), and
// the client, which may be any allowed machine on the LAN, hears that
// the ca_file is the problem, never where it is on this computer.
func TestRelayUnusableCAFileNamesNoPath(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	dir := t.TempDir()
	notPEM := dir + "/not-a-certificate.pem"
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{dir + "/private-ca/missing.pem", dir, notPEM} {
		f.acct.CAFile = ca
		_, err := f.relay.Start(f.acct, user, relay.StartOptions{Client: "test"})
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 454 || !strings.Contains(se.Message, "ca_file") {
			t.Fatalf("ca_file %s: %v, want 454 naming ca_file", ca, err)
		}
		if strings.Contains(se.Message, dir) {
			t.Fatalf("the client heard a local path: %q", se.Message)
		}
	}
}

// lockedKeychain is a credential whose store cannot answer.
type lockedKeychain struct{}

func (lockedKeychain) Mechanisms() []string { return upstream.PasswordMechanisms }
func (lockedKeychain) Client(context.Context, string) (sasl.Client, error) {
	return nil, fmt.Errorf("%w: the login keyring is locked", secrets.ErrUnavailable)
}
func (lockedKeychain) Refused() {}

// While the account's credential cannot be read (a locked keychain found
// at start), a client's message is queued with that reason: "the keychain
// is locked" is never told as "the provider could not be reached".
func TestRelayQueuedWhileKeychainLockedSaysSo(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	f.pool = upstream.NewPool(f.acct, upstream.Options{
		Authenticator: func(*config.Account) (upstream.Authenticator, error) { return lockedKeychain{}, nil },
	}, nil)
	t.Cleanup(f.pool.Close)
	if err := f.pool.CheckCredential(context.Background()); err == nil {
		t.Fatal("CheckCredential of a locked keychain succeeded")
	}
	rec, rerrs, err := f.deliver(t, "bob@example.net")
	if err != nil || rerrs[0] != nil || !rec.Queued {
		t.Fatalf("%+v %v %v, want queued", rec, rerrs, err)
	}
	if strings.Contains(rec.Text, "could not be reached") || !strings.Contains(rec.Text, "password") {
		t.Fatalf("queued text %q, want the credential named, not the provider", rec.Text)
	}
	if m, _ := f.queue.Get(rec.ID); strings.Contains(m.LastError, "unreachable") {
		t.Fatalf("queued entry's last error %q calls a locked keychain an unreachable server", m.LastError)
	}
	if n := f.sim.Connections(); n != 0 {
		t.Fatalf("%d connections to the provider", n)
	}
}

func TestRelayQueuesWhenProviderIsSlow(t *testing.T) {
	f := newFixture(t, pass, 200*time.Millisecond)
	f.sim.SetDataDelay(time.Second)
	rec, _, err := f.deliver(t, "bob@example.net")
	if err != nil || !rec.Queued {
		t.Fatalf("%+v %v, want queued after sync_wait", rec, err)
	}
	// The late answer settles the queue entry: delivered, so it goes.
	deadline := time.Now().Add(10 * time.Second)
	for f.queue.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the late answer did not settle the queue entry")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(f.sim.Messages()); n != 1 {
		t.Fatalf("the provider got %d messages", n)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n = 0
		return copy(p, "Subject: cut\r\n"), nil
	}
	return 0, io.ErrUnexpectedEOF
}

func TestRelayIncompleteBodyDeliversNothing(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	d, err := f.relay.Start(f.acct, user, relay.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddRcpt("bob@example.net"); err != nil {
		t.Fatal(err)
	}
	_, err = d.Body(&failingReader{n: 1})
	var re *relay.ReadError
	if !errors.As(err, &re) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Body with a failing reader: %v, want a ReadError", err)
	}
	if n := len(f.sim.Messages()); n != 0 {
		t.Fatalf("the provider got %d messages", n)
	}
	if l, _ := f.spool.List(); len(l) != 0 {
		t.Fatalf("%d spool entries", len(l))
	}
}

// TestRelayCloseEndsBackgroundWork: Close cuts a late answer that never
// comes and returns; the message stays queued.
func TestRelayCloseEndsBackgroundWork(t *testing.T) {
	f := newFixture(t, pass, 100*time.Millisecond)
	f.sim.SetFault(upstreamsim.Stall)
	rec, _, err := f.deliver(t, "bob@example.net")
	if err != nil || !rec.Queued {
		t.Fatalf("%+v %v", rec, err)
	}
	if f.relay.InFlight() == 0 {
		t.Fatal("no late answer in flight")
	}
	done := make(chan struct{})
	go func() { f.relay.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if f.relay.InFlight() != 0 {
		t.Fatal("work in flight after Close")
	}
	if _, err := f.spool.Get(rec.ID); err != nil {
		t.Fatalf("the message is not kept: %v", err)
	}
}

// On a warm connection to a provider that offers PIPELINING, MAIL FROM
// goes out with the first RCPT TO. The provider's verdicts still reach
// the client where they belong: a refused recipient at its RCPT, a
// sender deferred at MAIL queues the message.
func TestWarmPipelinedStart(t *testing.T) {
	f := newFixture(t, pass, 10*time.Second)
	if _, _, err := f.deliver(t, "bob@example.net"); err != nil {
		t.Fatal(err)
	}
	if !f.pool.Warm() || !f.pool.Pipelining() {
		t.Fatalf("after a delivery: warm %v, pipelining %v; want both", f.pool.Warm(), f.pool.Pipelining())
	}

	f.sim.SetFault(upstreamsim.RejectSomeRcpt)
	rec, rerrs, err := f.deliver(t, "reject-1@example.net", "carol@example.net")
	var se *smtp.SMTPError
	if err != nil || !errors.As(rerrs[0], &se) || se.Code != 550 || rerrs[1] != nil {
		t.Fatalf("refused first recipient: %v, %v; want the provider's 550, then nil", err, rerrs)
	}
	msgs := f.sim.Messages()
	if rec.Queued || len(msgs) != 2 || strings.Join(msgs[1].To, ",") != "carol@example.net" || msgs[1].From != user {
		t.Fatalf("receipt %+v; the provider got %+v", rec, msgs[len(msgs)-1])
	}

	f.sim.SetFault(upstreamsim.TempFail) // 451 to MAIL FROM
	rec, rerrs, err = f.deliver(t, "dave@example.net")
	if err != nil || rerrs[0] != nil || !rec.Queued {
		t.Fatalf("sender deferred: %+v, %v, %v; want queued", rec, rerrs, err)
	}
	if n := f.sim.Connections(); n != 1 {
		t.Fatalf("the provider saw %d connections, want the one pooled connection", n)
	}
}
